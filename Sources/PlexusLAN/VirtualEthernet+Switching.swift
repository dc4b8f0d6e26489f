import PlexusCore
import PlexusRCLAN

extension VirtualEthernet {
    /// Sends one Ethernet frame from this node's NIC `nic` (the in-process backend).
    /// - Throws: ``LANRefusal`` for a NIC this node does not have or a frame of a bad size,
    ///   ``RVISendError`` when neither a direct RVI nor a server could take it.
    public func transmit(_ frame: UnsafeRawBufferPointer, from nic: MACAddress, layer: RCLAN) throws {
        try transmit(frame, from: nic, checksum: nil, layer: layer)
    }

    func transmit(_ frame: UnsafeRawBufferPointer, from nic: MACAddress, checksum: LANMessage.PartialChecksum?,
                  layer: RCLAN) throws {
        guard let vlan = nics[nic] else { throw LANRefusal.notMember }
        guard frame.count >= LANMessage.ethernetHeader, frame.count <= LANMessage.maxFrame else { throw LANRefusal.runt }
        let destination = MACAddress(at: frame.baseAddress!)
        if destination.isMulticast { snoop(frame, nic: nic, layer: layer) }
        let n = LANMessage.encode(vlan: vlan, relayed: false, checksum: checksum, frame: frame, into: scratch)
        let message = UnsafeRawBufferPointer(rebasing: scratch[0..<n])
        let arp = ARPPacket.isARP(frame)  // ARP goes through the ARP server, replies too
        if watchFirstFrame && !arp && frame[12] == 0x08 && frame[13] == 0x00 {
            watchFirstFrame = false
            pendingReports.append(.firstPacketServed)
            reportedSteps.append(.firstPacketServed)
        }
        if !arp, let rvi = directPath(to: destination, layer: layer) {
            do {
                _ = try layer.send(message.bytes, on: rvi)
                sentDirect += 1
                if listeners[vlan]?.isEmpty == false { cloneToListeners(scratch, count: n, vlan: vlan, destination: destination, layer: layer) }
                return
            } catch {}
        }
        guard let s = serverPath(for: destination, from: nic, layer: layer, arp: arp) else { throw RVISendError.noSuchRVI }
        _ = try layer.send(message.bytes, on: servers[s])
        sentToServer[s] += 1
        if arp && servers.count > 1 {
            scratch[1] |= LANMessage.tableOnly
            for (i, other) in servers.enumerated() where i != s && !unusable.contains(other) {
                _ = try? layer.send(message.bytes, on: other)
            }
        }
    }

    /// The direct RVI for unicast to `destination`, if there is one that can take a message now.
    @inline(__always)
    func directPath(to destination: MACAddress, layer: RCLAN) -> RVI? {
        guard !destination.isGroup, let rvi = direct[destination], !unusable.contains(rvi), layer.canSend(on: rvi) else { return nil }
        return rvi
    }

    /// The server a frame goes to instead; counts a relay of last resort (unicast that had a
    /// direct RVI). ARP is not a fallback: it always goes through a server.
    func serverPath(for destination: MACAddress, from nic: MACAddress, layer: RCLAN, arp: Bool = false) -> Int? {
        guard let s = chooseServer(destination, nic, layer: layer) else { return nil }
        if !arp && !destination.isGroup && direct[destination] != nil { relayedFallbacks += 1 }
        return s
    }

    /// The server for a frame: by a hash of its MAC pair among the usable ones, so a flow keeps
    /// to one server (and its order) while both are up.
    func chooseServer(_ destination: MACAddress, _ source: MACAddress, layer: RCLAN) -> Int? {
        guard !servers.isEmpty else { return nil }
        var h = destination.rawValue &* 0x9E37_79B9_7F4A_7C15 ^ source.rawValue
        h ^= h >> 29
        let first = Int(h % UInt64(servers.count))
        for k in 0..<servers.count {
            let i = (first + k) % servers.count
            if !unusable.contains(servers[i]) && layer.canSend(on: servers[i]) { return i }
        }
        return first  // none usable: queue on the hashed one (it fails or recovers)
    }

    public func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        message.withUnsafeBytes { m in
            if m.first == ControlMessage.kind, servers.contains(rvi) {
                switch ControlMessage(parsing: m) {
                case .configuration(let c)?: apply(c, layer: layer)
                case .listener(_, let vlan, let mac, let on)?:
                    if on { listeners[vlan, default: []].insert(mac) } else { listeners[vlan]?.remove(mac) }
                case .refused(_, let reason)?:
                    if configuration == nil { registration = .refused(reason) } else { events.append("refused by a control node: \(reason)") }
                case .standby?:
                    if registration == .pending { registration = .standby }
                    if registration == .fenced {
                        // An administrator returned this node to the pool: it waits as a spare.
                        registration = .standby
                        configuration = nil
                        tookOver = false
                        events.append("returned to the free pool: waits as a spare")
                    }
                case .moved(let spare, let failed, let peer)?:
                    moved(to: spare, from: failed, peer: peer, layer: layer)
                case .fenced?:
                    fence(layer: layer)
                default: refused += 1
                }
                return
            }
            guard let p = LANMessage.parse(m) else {
                refused += 1
                return
            }
            let frame = UnsafeRawBufferPointer(rebasing: m[LANMessage.headerSize...])
            if p.destination.isGroup || p.relayed && servers.contains(rvi) {
                // From a server: it has switched by its table; a group frame goes to this node's
                // NIC on that VLAN.
                guard let nic = nics.first(where: { $0.value == p.vlan })?.key else {
                    refused += 1
                    return
                }
                if ARPPacket.isARP(frame), let a = ARPPacket(frame: frame) { learn(a) }
                delivered += 1
                hand(nic, frame, checksum: p.checksum, layer: layer)  // a group frame, a relayed one, or a promiscuous copy
                return
            }
            // A promiscuous copy: only for this node's NIC on that VLAN, and only while it listens.
            if p.promiscuousCopy {
                guard let nic = nics.first(where: { $0.value == p.vlan })?.key, promiscuousNICs.contains(nic) else {
                    refused += 1
                    return
                }
                delivered += 1
                hand(nic, frame, checksum: p.checksum, layer: layer)
                return
            }
            // A direct path: only for one of this node's NICs, on its own VLAN.
            guard nics[p.destination] == p.vlan else {
                refused += 1
                return
            }
            delivered += 1
            hand(p.destination, frame, checksum: p.checksum, layer: layer)
        }
    }

    func learn(_ a: ARPPacket) {
        if arpLearned[a.senderIP] != a.senderMAC { arpLearned[a.senderIP] = a.senderMAC }
    }

    /// The RVI that reaches `ip` (learned by ARP): the direct one to its node, or nil.
    public func rvi(reaching ip: IPv4Address) -> RVI? { arpLearned[ip].flatMap { direct[$0] } }

    /// Frames the layer will not deliver: counted as lost in a failover (the virtual LAN, like
    /// Ethernet, does not send them again; TCP above it does). Frames of a stopping engine are
    /// not counted.
    public func sendFailed(on rvi: RVI, messages: Range<UInt64>, reason: RVIFailure, layer: RCLAN) {
        guard !rerouting, reason != .stopped else { return }
        lostInFailover += UInt64(messages.count)
    }

    public func event(_ event: RVIEvent, on rvi: RVI, layer: RCLAN) {
        switch event {
        case .unusable:
            unusable.insert(rvi)
            reroute(from: rvi, layer: layer)
        case .usable, .legUp: unusable.remove(rvi)
        case .peerRestarted, .reset:
            // Either end started a new epoch on a management RVI: a control node that restarted
            // knows nothing of this node, and one that saw this end start over (this driver
            // took back what was in flight there, or gave up on it) took the node out of its
            // standby pool. The node says again who it is and what it listens to; the control
            // node's answer (standby, or the same configuration) changes nothing it has.
            if servers.contains(rvi) {
                registerAgain(on: rvi, layer: layer)
                resendMemberships(to: rvi, layer: layer)
            }
        default: break
        }
    }

    /// "Load Balancing and Failover": when a control node (or a direct path) stops answering,
    /// what it had not acknowledged goes through a server that still answers; nothing is lost.
    func reroute(from rvi: RVI, layer: RCLAN) {
        guard servers.contains(where: { $0 != rvi && !unusable.contains($0) }) else { return }
        // Nothing waits on it: nothing to take back, and no reason to start the RVI over (a new
        // epoch makes the control node take this node for restarted).
        guard layer.unacknowledgedMessages(on: rvi) > 0 else { return }
        rerouting = true
        defer { rerouting = false }
        let (_, unreadable) = layer.reclaimUnacknowledged(on: rvi) { message in
            message.withUnsafeBytes { m in
                // A registration is not moved: the other control node has its own.
                if m.first == ControlMessage.kind { return }
                guard let p = LANMessage.parse(m), let s = chooseServer(p.destination, p.source, layer: layer) else {
                    lostInFailover += 1
                    return
                }
                do {
                    _ = try layer.send(m.bytes, on: servers[s])
                    sentToServer[s] += 1
                    rerouted += 1
                } catch {
                    lostInFailover += 1
                }
            }
        }
        lostInFailover += UInt64(unreadable)
    }
}
