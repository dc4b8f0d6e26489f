import CPlexus
#if canImport(Glibc)
import Glibc
#endif
import Logging
import PlexusCore
import PlexusRCLAN

/// A processing node's virtual Ethernet driver ("Virtual Ethernet Driver"), one per node, with
/// two backends per virtual NIC: a Linux TAP device (``attachTAP(named:to:layer:)``), so the
/// kernel's IP stack, ARP and applications run over the virtual LAN, or the in-process frame API
/// (``transmit(_:from:layer:)`` in, ``onFrame`` out) for embedding.
///
/// Unicast to a MAC with a direct RVI goes straight to that node; broadcast, multicast, and
/// unicast without a usable direct RVI go to a virtual LAN server, which still delivers them
/// (relay of last resort). With two control nodes the driver balances between their servers
/// (a flow, by its MAC pair, always uses the same one, so frames stay in order) and uses the
/// other alone while one is not usable ("Load Balancing and Failover"). A frame arriving on a
/// direct RVI is accepted only for one of this node's NICs, on that NIC's VLAN.
public final class VirtualEthernet: RVIDelegate {
    public let node: UInt32
    /// This node's NICs: MAC → VLAN.
    public internal(set) var nics: [MACAddress: VLANID] = [:]
    /// The management RVIs to the control nodes' virtual LAN servers.
    public private(set) var servers: [RVI] = []
    /// Direct paths: a peer NIC's MAC → the RVI to its node.
    public internal(set) var direct: [MACAddress: RVI] = [:]
    var unusable: Set<RVI> = []
    /// Called with each frame for one of this node's NICs without a TAP device: the NIC's MAC and
    /// the frame. A frame whose sender left its checksum to offload arrives with that checksum
    /// incomplete (see ``LANMessage``): nothing inside the platform checks it.
    public var onFrame: (MACAddress, RawSpan) -> Void = { _, _ in }
    /// The node's address book: the path of the direct RVI to a peer node (its number, the VI
    /// here, the VI there), from the peer's entry in the distributed address table, or nil when
    /// the table has no entry for it yet (the configuration's address is used then).
    public var addressBook: ((_ node: UInt32, _ localVI: UInt32, _ remoteVI: UInt32) -> RVIPath?)?
    /// Direct RVIs opened with a path from ``addressBook``.
    public internal(set) var peersFromAddressBook = 0
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: FrameLayout.maxPayload, alignment: 8)
    public private(set) var sentDirect: UInt64 = 0
    public private(set) var sentToServer: [UInt64] = []
    public private(set) var relayedFallbacks: UInt64 = 0
    public private(set) var delivered: UInt64 = 0
    public private(set) var refused: UInt64 = 0
    /// Frames the node's own kernel or application sent that could not be sent (no usable path,
    /// or the RVI was full); TCP retransmits them.
    public private(set) var dropped: UInt64 = 0

    public init(node: UInt32) {
        self.node = node
        registrationErrors.logger[metadataKey: "node"] = "\(node)"
        events.logger[metadataKey: "node"] = "\(node)"
    }
    deinit { scratch.deallocate() }

    // MARK: Registration

    /// Where registration stands.
    public enum Registration: Sendable, Hashable {
        /// `standby`: a spare in the free pool, waiting for a personality; `fenced`: this
        /// node's personality moved to a spare, and its NICs are gone.
        case unregistered, pending, standby, configured, refused(String), fenced
    }
    /// The direct RVI to each peer node.
    public internal(set) var peerRVI: [UInt32: RVI] = [:]
    /// Whether this node took a personality over from the free pool (it reports its steps).
    public internal(set) var tookOver = false
    /// Failover steps to report to the servers on the next turn.
    var pendingReports: [FailoverStep] = []
    /// The steps reported since this node took its personality over: said again when the
    /// second control node's configuration arrives (it may have moved the personality after the
    /// first reports went out, and dropped them).
    var reportedSteps: [FailoverStep] = []
    /// Console bytes waiting to go to the servers, this run's incarnation, the pieces sent,
    /// how many ``events`` went to the console already, and a workload exit to report.
    var pendingConsole: [UInt8] = []
    let consoleIncarnation = nowNanos()
    var consoleSequence: UInt32 = 0
    var eventsOnConsole = 0
    var processExit: Int32?
    /// Console bytes the servers could not take (both management RVIs full or gone).
    public internal(set) var consoleDropped: UInt64 = 0
    var watchFirstFrame = false
    public internal(set) var registration = Registration.unregistered
    /// The configuration the control nodes sent (the first; both send the same).
    public internal(set) var configuration: NodeConfiguration?
    /// The revision at which the control nodes last released this node to the free pool: an
    /// older configuration, still on its way, is not taken.
    var releasedAt: UInt64 = 0
    /// NICs whose TAP device could not be created yet (the one it replaces is still closing),
    /// retried on the next turns.
    var tapsToCreate: [VirtualNICBinding] = []
    var tapRetryDeadline: ContinuousClock.Instant?
    /// The personality before a change whose TAP devices are still being created.
    var pendingReconfiguration: NodeConfiguration?
    /// Give each NIC a TAP device when configured (else the in-process backend).
    public var tapBackend = false
    /// The TAP interface of each NIC, by MAC (`pvl<VLAN>`), when ``tapBackend`` is on.
    public internal(set) var interfaces: [MACAddress: String] = [:]
    /// Configurations that did not match the first one (the control nodes disagreed).
    public private(set) var conflictingConfigurations: UInt64 = 0
    /// Registration answers that could not be used (the last 1000).
    public internal(set) var registrationErrors = BoundedLog(label: "plexus.ethernet")
    /// What happened that an operator wants to read: refusals from the control nodes,
    /// promiscuous-mode requests (the last 1000; also to swift-log as `plexus.ethernet`).
    public internal(set) var events = BoundedLog(label: "plexus.ethernet")
    /// Each NIC's multicast groups (by group MAC) and why it is in each: the IP groups the
    /// kernel reported (IGMP, MLD), or [] for ``join(_:nic:layer:)``.
    public internal(set) var memberships: [MACAddress: [MACAddress: Set<[UInt8]>]] = [:]
    /// NICs that asked to listen promiscuously.
    public internal(set) var promiscuousNICs: Set<MACAddress> = []
    /// Other nodes' NICs that listen promiscuously, per VLAN, as the servers announced them:
    /// a unicast frame sent direct is cloned to each ("Virtual Ethernet Driver": the sending
    /// driver keeps the list of promiscuous listeners on its VLAN).
    public internal(set) var listeners: [VLANID: Set<MACAddress>] = [:]
    /// Promiscuous copies sent, and not sent (no direct path to the listener at that moment).
    public internal(set) var promiscuousCopiesSent: UInt64 = 0
    public internal(set) var promiscuousCopiesSkipped: UInt64 = 0
    var lastFlagCheck: ContinuousClock.Instant?
    var lastRegister: ContinuousClock.Instant?

    /// Opens the management RVI to each control node (``VINumbering``) and registers with both;
    /// registration is repeated every 100 ms until a control node answers.
    public func register(controls: [NodeAddress], layer: RCLAN) throws(PlexusError) {
        for (k, c) in controls.enumerated() {
            let vi = VINumbering.managementAtNode(control: k)
            let remote = VINumbering.managementAtControl(node: node)
            addServer(try layer.open(RVIPath(localA: vi, localB: vi, peerA: c.fabricA, peerB: c.fabricB,
                                             remoteA: remote, remoteB: remote), service: self))
        }
        registration = .pending
        sendRegistrations(layer)
    }

    func sendRegistrations(_ layer: RCLAN) {
        lastRegister = .now
        let m = ControlMessage.register(node: node).encoded()
        for s in servers { _ = try? layer.send(m, on: s) }
    }

    /// Called on every turn of the node's engine, on its thread, after the driver's own work: an
    /// embedding program sends frames from here with ``transmit(_:from:layer:)`` (which must be
    /// called on the engine thread). In busy-poll mode a turn comes around continuously; in
    /// blocking mode only when something arrives or a timer fires.
    public var onTurn: ((VirtualEthernet, RCLAN) -> Void)?
    /// Called on the engine thread once the node is configured (its NICs exist): the embedding
    /// program brings up the personality's addresses and workload, then calls
    /// ``report(_:)`` with ``FailoverStep/workloadStarted``.
    public var onConfigured: ((NodeConfiguration) -> Void)?
    /// Called on the engine thread when the servers fence this node (its NICs are gone): the
    /// embedding program stops what is left of its workload.
    public var onFenced: (() -> Void)?
    /// Called on the engine thread when the control nodes change this node's personality while
    /// it runs (an administrator's change in the platform store): the old personality and the
    /// new one, whose NICs and peers are already in place, or nil when the node was released to
    /// the free pool (its NICs are gone). The embedding program adds and removes addresses and
    /// restarts the workload if it changed (``PersonalityManager`` does).
    public var onReconfigured: ((_ old: NodeConfiguration, _ new: NodeConfiguration?) -> Void)?

    public func layerTurn(_ layer: RCLAN) {
        defer { onTurn?(self, layer) }
        if !pendingReports.isEmpty { sendReports(layer) }
        if !servers.isEmpty && (!pendingConsole.isEmpty || events.total > eventsOnConsole || processExit != nil) {
            sendConsole(layer)
        }
        if registration == .pending, let last = lastRegister, last.duration(to: .now) > .milliseconds(100) {
            sendRegistrations(layer)
        }
        if !interfaces.isEmpty { watchPromiscuousFlags(layer: layer) }
        if !tapsToCreate.isEmpty { retryTAPs(layer: layer) }
    }

    func apply(_ c: NodeConfiguration, layer: RCLAN) {
        guard c.node == node, registration != .fenced, c.revision >= releasedAt else { return }
        if let have = configuration {
            if c.revision > have.revision {
                reconfigure(to: c, layer: layer)  // a change while it runs (Reconfiguration.swift)
            } else if c.revision == have.revision && !have.sameSetUp(as: c) {
                conflictingConfigurations += 1
            } else if c.revision == have.revision {
                // The second control node's copy: it may have adopted the revision after the
                // first node's requests and reports reached it. Said again; the servers ignore
                // what they have.
                if tookOver && !reportedSteps.isEmpty { pendingReports += reportedSteps }
                for nic in c.nics where nic.promiscuousAllowed && promiscuousNICs.contains(nic.mac) {
                    toServers(.promiscuous(node: node, nic: nic.mac, on: true), layer: layer)
                }
            }
            return
        }
        guard !c.nics.isEmpty else { return }  // a release, and this node holds nothing
        if registration == .standby {
            // A spare taking a failed node's personality over: it reports how far it got.
            tookOver = true
            reportedSteps = []
            events.append("took over a personality: " + c.nics.map { "\($0.mac) on \($0.vlan)" }.joined(separator: ", "))
        }
        configuration = c
        do {
            for nic in c.nics { try addNIC(nic, mtu: c.mtu, layer: layer) }
            for p in c.peers { try openPeer(p, layer: layer) }
            registration = .configured
            onConfigured?(c)
        } catch {
            registrationErrors.append("\(error)")
            registration = .refused("configuration failed: \(error)")
        }
    }

    public func addNIC(_ mac: MACAddress, vlan: VLANID) { nics[mac] = vlan }
    public func addServer(_ rvi: RVI) {
        servers.append(rvi)
        sentToServer.append(0)
    }
    public func addDirectPath(to mac: MACAddress, rvi: RVI) { direct[mac] = rvi }
    /// Frames sent to any server.
    public var sentToServers: UInt64 { sentToServer.reduce(0, +) }

    // MARK: TAP backend

    /// NICs with the TAP backend: the device each one reads and writes.
    public internal(set) var taps: [MACAddress: DeviceHandle] = [:]
    var nicOfTap: [DeviceHandle: MACAddress] = [:]
    public private(set) var tapWriteFailures: UInt64 = 0
    /// Frames from a TAP that were refused (a GSO packet, which checksum-only offload never makes).
    public private(set) var tapMalformed: UInt64 = 0

    /// Gives NIC `mac` a Linux TAP device: `name` is created in the engine thread's network
    /// namespace (so call this on the engine thread), with a virtio-net header and checksum
    /// offload. Every frame the kernel sends out of it goes onto the virtual LAN; every frame for
    /// the NIC is written to it. Configure the interface (MAC address, MTU ≤ ``TAP/maximumMTU``,
    /// IP addresses, up) with `ip`.
    /// - Returns: the interface's name.
    @discardableResult
    public func attachTAP(named name: String, to mac: MACAddress, layer: RCLAN) throws -> String {
        guard nics[mac] != nil else { throw LANRefusal.notMember }
        let (fd, actual) = try TAP.open(name)
        let handle = try layer.attachDevice(fd: fd, for: self)
        taps[mac] = handle
        nicOfTap[handle] = mac
        return actual
    }

    public func deviceRead(_ frame: consuming Frame, from device: DeviceHandle, layer: RCLAN) {
        guard let nic = nicOfTap[device], let vlan = nics[nic] else { return }
        // The packet: [virtio-net header][Ethernet frame]. ARP (rare) takes the copying path,
        // which also informs the other control node.
        let parsed: (checksum: LANMessage.PartialChecksum?, isARP: Bool)? = frame.withUnsafePayload { packet in
            guard let (checksum, ethernet) = TAP.parseVirtioHeader(packet) else { return nil }
            if ARPPacket.isARP(ethernet) {
                do { try transmit(ethernet, from: nic, checksum: checksum, layer: layer) } catch { dropped += 1 }
                return (checksum, true)
            }
            if MACAddress(at: ethernet.baseAddress!).isMulticast { snoop(ethernet, nic: nic, layer: layer) }
            return (checksum, false)
        }
        guard let parsed else {
            tapMalformed += 1
            return
        }
        if parsed.isARP { return }
        if watchFirstFrame && frame.withUnsafePayload({ p in
            p.count >= TAP.virtioHeaderSize + 14 && p[TAP.virtioHeaderSize + 12] == 0x08 && p[TAP.virtioHeaderSize + 13] == 0x00
        }) {
            watchFirstFrame = false
            pendingReports.append(.firstPacketServed)
            reportedSteps.append(.firstPacketServed)
        }
        // Everything else: the virtio-net header becomes the LAN header, and the frame itself
        // is the message (no copy).
        var f: Frame? = frame
        let destination = f!.withUnsafeMutablePayload { p in
            LANMessage.encodeHeader(vlan: vlan, relayed: false, checksum: parsed.checksum, into: p)
            return MACAddress(at: p.baseAddress! + LANMessage.headerSize)
        }
        if let rvi = directPath(to: destination, layer: layer) {
            if listeners[vlan]?.isEmpty == false {
                f!.withUnsafeMutablePayload { p in cloneToListeners(p, count: p.count, vlan: vlan, destination: destination, layer: layer) }
            }
            do {
                try layer.send(&f, on: rvi)
                sentDirect += 1
                return
            } catch {}
        }
        guard let s = serverPath(for: destination, from: nic, layer: layer) else {
            dropped += 1
            return
        }
        do {
            try layer.send(&f, on: servers[s])
            sentToServer[s] += 1
        } catch {
            dropped += 1
        }
    }

    /// Measure the longest pause between frames handed to this node's NICs (for failover
    /// benchmarks: one clock read per frame while on).
    public var watchGaps = false {
        didSet { lastHandNanos = 0; longestGapNanos = 0 }
    }
    public private(set) var longestGapNanos: UInt64 = 0
    var lastHandNanos: UInt64 = 0

    /// Hands a frame to NIC `nic`: to its TAP device if it has one, else to ``onFrame``.
    func hand(_ nic: MACAddress, _ frame: UnsafeRawBufferPointer, checksum: LANMessage.PartialChecksum?, layer: RCLAN) {
        if watchGaps {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            let t = UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
            if lastHandNanos != 0 { longestGapNanos = max(longestGapNanos, t &- lastHandNanos) }
            lastHandNanos = t
        }
        guard let tap = taps[nic] else {
            onFrame(nic, frame.bytes)
            return
        }
        guard var f = layer.engine.takeFrame() else {
            tapWriteFailures += 1
            return
        }
        f.withUnsafeMutablePayload { out in
            TAP.writeVirtioHeader(checksum, into: out)
            (out.baseAddress! + TAP.virtioHeaderSize).copyMemory(from: frame.baseAddress!, byteCount: frame.count)
        }
        f.length = TAP.virtioHeaderSize + frame.count
        do { try layer.engine.writeDevice(f, to: tap) } catch { tapWriteFailures += 1 }
    }

    // MARK: Switching

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

    /// What ARP taught this node: which MAC, and so which RVI, reaches each IPv4 address.
    public private(set) var arpLearned: [IPv4Address: MACAddress] = [:]

    func learn(_ a: ARPPacket) {
        if arpLearned[a.senderIP] != a.senderMAC { arpLearned[a.senderIP] = a.senderMAC }
    }

    /// The RVI that reaches `ip` (learned by ARP): the direct one to its node, or nil.
    public func rvi(reaching ip: IPv4Address) -> RVI? { arpLearned[ip].flatMap { direct[$0] } }

    /// Frames taken back from an RVI that stopped being usable and sent another way, and those
    /// that could not be (no other way, or in the kernel at that moment).
    public private(set) var rerouted: UInt64 = 0
    public private(set) var lostInFailover: UInt64 = 0

    public func event(_ event: RVIEvent, on rvi: RVI, layer: RCLAN) {
        switch event {
        case .unusable:
            unusable.insert(rvi)
            reroute(from: rvi, layer: layer)
        case .usable, .legUp: unusable.remove(rvi)
        case .peerRestarted:
            if servers.contains(rvi) { resendMemberships(to: rvi, layer: layer) }
        default: break
        }
    }

    /// "Load Balancing and Failover": when a control node (or a direct path) stops answering,
    /// what it had not acknowledged goes through a server that still answers; nothing is lost.
    func reroute(from rvi: RVI, layer: RCLAN) {
        guard servers.contains(where: { $0 != rvi && !unusable.contains($0) }) else { return }
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

extension VirtualEthernet {
    /// The least level of the driver's log lines (events and registration errors) that reach
    /// swift-log.
    public func setLogging(level: Logger.Level) {
        events.logger.logLevel = level
        registrationErrors.logger.logLevel = level
    }
}
