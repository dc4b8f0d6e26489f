import PlexusCore

// MARK: - Services: several upper layers on one engine
//
// A node hosts several services (the virtual LAN, the address-table distributor, storage, …)
// over one engine, its two fabric ports and one RCLAN layer. Each RVI belongs to the service
// that opened it, which alone gets its messages and events; each attached device belongs to the
// service that attached it; every service gets the layer-wide calls (start, each turn, stop).
// Routing costs one stored reference per RVI: nothing is looked up per message.

extension RCLAN {
    /// Hosts `service` beside the others: it gets ``RVIDelegate/layerDidStart(_:)`` (at once
    /// when the engine already runs), every ``RVIDelegate/layerTurn(_:)`` and
    /// ``RVIDelegate/layerWillStop(_:)``, and the messages and events of the RVIs it opens with
    /// ``open(_:policy:service:)``. Hosting a service twice does nothing.
    public func host(_ service: any RVIDelegate) {
        guard !services.contains(where: { $0 === service }) else { return }
        services.append(service)
        if started { service.layerDidStart(self) }
    }

    /// Stops hosting `service`: its RVIs are closed (their pending messages fail with
    /// ``RVIFailure/closed``), its devices detached, and it gets ``RVIDelegate/layerWillStop(_:)``.
    /// The layer's ``delegate`` cannot be removed.
    public func remove(_ service: any RVIDelegate) {
        guard service !== delegate, let i = services.firstIndex(where: { $0 === service }) else { return }
        for case let c? in connections where c.service === service { close(c.rvi) }
        blockIOClaims.removeAll { $0.service === service }
        for (i, owner) in deviceOwners.enumerated() where owner?.service === service {
            engine?.detachDevice(owner!.device)
            deviceOwners[i] = nil
        }
        services.remove(at: i)
        service.layerWillStop(self)
    }

    /// The first hosted service of type `T`.
    public func service<T: RVIDelegate>(_ type: T.Type) -> T? {
        for s in services { if let t = s as? T { return t } }
        return nil
    }

    /// The service that owns `rvi`, if it is open.
    public func service(of rvi: RVI) -> (any RVIDelegate)? { live(rvi)?.service }

    /// The open RVIs that `service` owns.
    public func rvis(of service: any RVIDelegate) -> [RVI] {
        connections.compactMap { c in c.flatMap { $0.service === service ? $0.rvi : nil } }
    }

    /// Attaches a device (``Engine/attachDevice(fd:)``) whose packets go to `service`'s
    /// ``RVIDelegate/deviceRead(_:from:layer:)``.
    public func attachDevice(fd: Int32, for service: any RVIDelegate) throws(PlexusError) -> DeviceHandle {
        guard let engine else { throw PlexusError(.engineStopped, "the engine has not started") }
        guard services.contains(where: { $0 === service }) else {
            throw PlexusError(.configuration, "attachDevice: \(type(of: service)) is not a service of this layer")
        }
        let handle = try engine.attachDevice(fd: fd)
        let i = Int(handle.id)
        if deviceOwners.count <= i { deviceOwners.append(contentsOf: repeatElement(nil, count: i + 1 - deviceOwners.count)) }
        deviceOwners[i] = (handle, service)
        return handle
    }
}

extension RCLAN {
    /// Detaches a device attached with ``attachDevice(fd:for:)``.
    public func detachDevice(_ device: DeviceHandle) {
        let i = Int(device.id)
        if i < deviceOwners.count { deviceOwners[i] = nil }
        engine?.detachDevice(device)
    }
}

// MARK: - Block I/O completions

extension RCLAN {
    /// Claims `count` block I/O tokens for `service` (they also name its descriptor watches,
    /// ``PlexusCore/Engine/watch(fd:events:token:)``): completions of the engine's block I/O
    /// (``PlexusCore/EngineDriver/blockIOCompleted(token:result:engine:)``) whose token falls in
    /// the returned range go to its ``RVIDelegate/blockIOCompleted(token:result:layer:)``;
    /// tokens nobody claimed go to ``delegate``. Claims are made at setup (they allocate); a
    /// completion costs a scan of the few claims, nothing more.
    public func claimBlockIOTokens(_ count: UInt32, for service: any RVIDelegate) throws(PlexusError) -> Range<UInt32> {
        let base = blockIOClaims.last?.tokens.upperBound ?? 1
        guard count > 0, UInt32.max - base >= count else {
            throw PlexusError(.resourceExhausted, "claimBlockIOTokens: \(count) more tokens do not fit")
        }
        let range = base..<(base + count)
        blockIOClaims.append((range, service))
        return range
    }

    public func blockIOCompleted(token: UInt32, result: Int32, engine: Engine) {
        for claim in blockIOClaims where claim.tokens.contains(token) {
            claim.service.blockIOCompleted(token: token, result: result, layer: self)
            return
        }
        delegate.blockIOCompleted(token: token, result: result, layer: self)
    }

    /// A watched descriptor is ready: to the service that claimed the token (as block I/O).
    public func fdReady(token: UInt32, events: Int32, engine: Engine) {
        for claim in blockIOClaims where claim.tokens.contains(token) {
            claim.service.fdReady(token: token, events: events, layer: self)
            return
        }
        delegate.fdReady(token: token, events: events, layer: self)
    }
}
