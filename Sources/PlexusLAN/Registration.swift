import CPlexus
import PlexusCore
import PlexusRCLAN

/// How the control nodes number the VIs of the paths they create ("Network Architecture": the
/// control nodes set up every path; a processing node never picks one).
///
/// - A processing node's management RVI to control node *k* (0 or 1) is VI `1 + k` at the node
///   and VI `16 + node` at the control node: a node finds its control nodes without being told.
/// - The direct RVI between processing nodes *i* and *j* is VI `4096 + j` at *i* and
///   `4096 + i` at *j*; the control node sends these numbers in the configuration.
public enum VINumbering {
    public static func managementAtNode(control k: Int) -> UInt32 { UInt32(1 + k) }
    public static func managementAtControl(node: UInt32) -> UInt32 { 16 + node }
    public static func direct(toward peer: UInt32) -> UInt32 { 4096 + peer }
    /// The largest node number these rules allow with the engine's default 16384 VIs.
    public static let maximumNode: UInt32 = 12287
}

/// A node's place on the fabrics, as the control nodes know it.
public struct NodeAddress: Sendable, Hashable {
    public var node: UInt32
    public var fabricA: FabricAddress
    public var fabricB: FabricAddress
    public init(node: UInt32, fabricA: FabricAddress, fabricB: FabricAddress) {
        self.node = node
        self.fabricA = fabricA
        self.fabricB = fabricB
    }
}

/// What a processing node receives when it registers: its virtual NICs and how to reach the other
/// members of its VLANs ("Virtual LAN Server" item 2: the data-link configuration).
public struct NodeConfiguration: Sendable, Hashable {
    public struct Peer: Sendable, Hashable {
        public var address: NodeAddress
        /// The direct RVI's VI number at this node and at the peer.
        public var localVI: UInt32
        public var remoteVI: UInt32
        /// The peer's NICs on VLANs this node shares with it.
        public var macs: [MACAddress]
    }
    public var node: UInt32
    /// The MTU of the node's virtual NICs.
    public var mtu: Int
    public var nics: [VirtualNICBinding]
    public var peers: [Peer]
    /// The IPv4 addresses the node's NICs carry (part of its personality: a spare that takes
    /// the personality over puts the same addresses on the same MACs).
    public var addresses: [AddressBinding] = []
    /// The command the node runs in its network namespace, if any (its workload).
    public var workload: String?
    /// The revision of the plan this configuration comes from (``LANPlan/revision``). A
    /// configured node takes a configuration of a higher revision as a change to apply while
    /// it runs (NICs, peers, addresses, workload: ``VirtualEthernet``'s reconfiguration); one
    /// with no NICs releases it to the free pool.
    public var revision: UInt64 = 0

    public init(node: UInt32, mtu: Int, nics: [VirtualNICBinding], peers: [Peer],
                addresses: [AddressBinding] = [], workload: String? = nil, revision: UInt64 = 0) {
        self.node = node
        self.mtu = mtu
        self.nics = nics
        self.peers = peers
        self.addresses = addresses
        self.workload = workload
        self.revision = revision
    }

    /// Whether `other` asks for the same thing, whatever its revision.
    public func sameSetUp(as other: NodeConfiguration) -> Bool {
        var a = self, b = other
        a.revision = 0
        b.revision = 0
        return a == b
    }
}

/// An IPv4 address (`a.b.c.d/len`) on a node's NIC on a VLAN.
public struct AddressBinding: Sendable, Hashable {
    public var vlan: VLANID
    public var cidr: String
    public init(vlan: VLANID, cidr: String) {
        self.vlan = vlan
        self.cidr = cidr
    }
}

/// A failover server of seed 002: one process hosting virtual nodes, each able to carry a
/// personality (and so resume a failed workload process with its MACs, addresses and storage).
public struct FailoverServer: Sendable, Hashable {
    public var name: String
    /// The node numbers of its virtual nodes (processing nodes on no VLAN, hosted by it).
    public var virtualNodes: [UInt32]
    public init(name: String, virtualNodes: [UInt32]) {
        self.name = name
        self.virtualNodes = virtualNodes
    }
}

/// Why a personality moved.
public enum FailoverCause: Sendable, Hashable, CustomStringConvertible {
    /// The node's management RVI stayed silent on both fabrics (the processor, or the server
    /// hosting a virtual node, died or was cut off).
    case silent
    /// The node reported that its workload process ended by itself (exit status, or 128 +
    /// signal number).
    case processFailed(status: Int32)

    public var description: String {
        switch self {
        case .silent: "silent on both fabrics"
        case .processFailed(let s): s > 128 ? "its workload process was killed by signal \(s - 128)" : "its workload process exited with status \(s)"
        }
    }
}

/// The steps of a failover, in order ("Cluster Management Logic"), each stamped when it
/// happened: a failover's timeline.
public enum FailoverStep: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// The node's management RVI lost both legs and stayed silent for the confirmation time.
    case detected = 1
    /// A spare from the free pool was chosen.
    case spareChosen = 2
    /// The server's table moved the NICs (MACs, VLANs, IP bindings) to the spare, and the spare
    /// was sent its new configuration.
    case personalityMoved = 3
    /// Every peer sharing a VLAN was told to reach the MACs at the spare.
    case peersUpdated = 4
    /// The spare's NICs are up with the personality's addresses and its workload was started
    /// (reported by the spare).
    case workloadStarted = 5
    /// The spare sent its first IPv4 frame after its workload started (reported by the spare;
    /// its kernel may send it for the workload, a TCP reset before the service listens).
    case firstPacketServed = 6

    public var description: String {
        switch self {
        case .detected: "detected"
        case .spareChosen: "spare chosen"
        case .personalityMoved: "personality moved"
        case .peersUpdated: "peers updated"
        case .workloadStarted: "workload started"
        case .firstPacketServed: "first packet served"
        }
    }
}

/// The control messages on a management RVI: LAN message kind 2.
///
/// | message | bytes |
/// |---|---|
/// | register | 2, 1, node (u32) |
/// | configuration | 2, 2, node (u32), MTU (u16), NIC count (u16), per NIC: MAC (6), VLAN (u16), promiscuous allowed (u8); peer count (u16), per peer: node (u32), fabric A IPv4 (u32) and port (u16), fabric B likewise, local VI (u32), remote VI (u32), MAC count (u16), MACs (6 each) |
/// | refused | 2, 3, node (u32), reason length (u8), reason (UTF-8) |
/// | join | 2, 4, node (u32), NIC MAC (6), group MAC (6) |
/// | leave | 2, 5, node (u32), NIC MAC (6), group MAC (6) |
/// | promiscuous | 2, 6, node (u32), NIC MAC (6), on (u8: 0 or 1) |
/// | listener | 2, 7, node (u32), VLAN (u16), NIC MAC (6), on (u8): from a server, node's NIC listens promiscuously (or stopped) |
/// | standby | 2, 8, node (u32): from a server, the node is a spare in the free pool and waits |
/// | moved | 2, 9, spare (u32), failed (u32), then one peer entry as in configuration: the failed node's MACs are now reached at the spare |
/// | fenced | 2, 10, node (u32): from a server, the node's personality moved away; it must not use its NICs |
/// | milestone | 2, 11, node (u32), step (u8, a ``FailoverStep``): from a spare, how far its take-over got |
/// | process failed | 2, 12, node (u32), status (i32): from a node, its workload process ended by itself (exit status, or 128 + signal) |
/// | console | 2, 13, node (u32), incarnation (u64), sequence (u32), length (u16), bytes: from a node, the next piece of its console (workload output and node log) |
///
/// The configuration message ends with the personality's addresses and workload: address
/// count (u16), per address: VLAN (u16), length (u8), `a.b.c.d/len` (UTF-8); workload length
/// (u16, 0: none), workload (UTF-8); then the plan's revision (u64). A configuration with no
/// NICs, of a higher revision than the node's, releases the node to the free pool.
///
/// All integers big-endian. A message that does not parse is counted and dropped.
public enum ControlMessage: Sendable, Hashable {
    case register(node: UInt32)
    case configuration(NodeConfiguration)
    case refused(node: UInt32, reason: String)
    case join(node: UInt32, nic: MACAddress, group: MACAddress)
    case leave(node: UInt32, nic: MACAddress, group: MACAddress)
    case promiscuous(node: UInt32, nic: MACAddress, on: Bool)
    case listener(node: UInt32, vlan: VLANID, mac: MACAddress, on: Bool)
    case standby(node: UInt32)
    case moved(spare: UInt32, failed: UInt32, peer: NodeConfiguration.Peer)
    case fenced(node: UInt32)
    case milestone(node: UInt32, step: FailoverStep)
    case processFailed(node: UInt32, status: Int32)
    /// A piece of a node's console. `incarnation` tells one run of the node from the next (its
    /// start time); `sequence` counts the pieces of that run from 1, so a control node that
    /// keeps the console writes each piece once however many times it is offered.
    case console(node: UInt32, incarnation: UInt64, sequence: UInt32, text: [UInt8])

    public static let kind: UInt8 = 2
    /// The UTF-8 of `text`, cut to at most `limit` bytes at a character boundary (a cut inside
    /// a character would make the message invalid UTF-8, which the parser refuses).
    static func utf8Prefix(_ text: String, _ limit: Int) -> [UInt8] {
        var out: [UInt8] = []
        for c in text {
            guard out.count + c.utf8.count <= limit else { break }
            out += c.utf8
        }
        return out
    }

    /// The most console bytes one message carries.
    public static let maximumConsolePiece = 8192

    public func encoded() -> [UInt8] {
        var w = [UInt8]()
        func u16(_ v: Int) { w += [UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
        func u32(_ v: UInt32) { w += [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
        func address(_ a: FabricAddress) {
            u32(a.ip)
            u16(Int(a.port))
        }
        func peer(_ p: NodeConfiguration.Peer) {
            u32(p.address.node)
            address(p.address.fabricA)
            address(p.address.fabricB)
            u32(p.localVI)
            u32(p.remoteVI)
            u16(p.macs.count)
            for m in p.macs { w += m.bytes }
        }
        w.append(Self.kind)
        switch self {
        case .register(let node):
            w.append(1)
            u32(node)
        case .configuration(let c):
            w.append(2)
            u32(c.node)
            u16(c.mtu)
            u16(c.nics.count)
            for n in c.nics {
                w += n.mac.bytes
                u16(Int(n.vlan.rawValue))
                w.append(n.promiscuousAllowed ? 1 : 0)
            }
            u16(c.peers.count)
            for p in c.peers { peer(p) }
            u16(c.addresses.count)
            for a in c.addresses {
                u16(Int(a.vlan.rawValue))
                let t = Self.utf8Prefix(a.cidr, 255)
                w.append(UInt8(t.count))
                w += t
            }
            let workload = Self.utf8Prefix(c.workload ?? "", 4096)
            u16(workload.count)
            w += workload
            u32(UInt32(truncatingIfNeeded: c.revision >> 32))
            u32(UInt32(truncatingIfNeeded: c.revision))
        case .refused(let node, let reason):
            w.append(3)
            u32(node)
            let r = Self.utf8Prefix(reason, 255)
            w.append(UInt8(r.count))
            w += r
        case .join(let node, let nic, let group), .leave(let node, let nic, let group):
            if case .join = self { w.append(4) } else { w.append(5) }
            u32(node)
            w += nic.bytes + group.bytes
        case .promiscuous(let node, let nic, let on):
            w.append(6)
            u32(node)
            w += nic.bytes
            w.append(on ? 1 : 0)
        case .listener(let node, let vlan, let mac, let on):
            w.append(7)
            u32(node)
            u16(Int(vlan.rawValue))
            w += mac.bytes
            w.append(on ? 1 : 0)
        case .standby(let node):
            w.append(8)
            u32(node)
        case .moved(let spare, let failed, let p):
            w.append(9)
            u32(spare)
            u32(failed)
            peer(p)
        case .fenced(let node):
            w.append(10)
            u32(node)
        case .milestone(let node, let step):
            w.append(11)
            u32(node)
            w.append(step.rawValue)
        case .processFailed(let node, let status):
            w.append(12)
            u32(node)
            u32(UInt32(bitPattern: status))
        case .console(let node, let incarnation, let sequence, let text):
            w.append(13)
            u32(node)
            u32(UInt32(truncatingIfNeeded: incarnation >> 32))
            u32(UInt32(truncatingIfNeeded: incarnation))
            u32(sequence)
            let t = text.prefix(Self.maximumConsolePiece)
            u16(t.count)
            w += t
        }
        return w
    }

    public init?(parsing m: UnsafeRawBufferPointer) {
        var i = 0
        func need(_ n: Int) -> Bool { i + n <= m.count }
        func u8() -> UInt8? { guard need(1) else { return nil }; defer { i += 1 }; return m[i] }
        func u16() -> Int? { guard need(2) else { return nil }; defer { i += 2 }; return Int(m[i]) << 8 | Int(m[i + 1]) }
        func u32() -> UInt32? {
            guard need(4) else { return nil }
            defer { i += 4 }
            return UInt32(m[i]) << 24 | UInt32(m[i + 1]) << 16 | UInt32(m[i + 2]) << 8 | UInt32(m[i + 3])
        }
        func mac() -> MACAddress? { guard need(6) else { return nil }; defer { i += 6 }; return MACAddress(at: m.baseAddress! + i) }
        func address() -> FabricAddress? {
            guard let ip = u32(), let port = u16() else { return nil }
            return FabricAddress(ip: ip, port: UInt16(port))
        }
        func peer() -> NodeConfiguration.Peer? {
            guard let n = u32(), let a = address(), let b = address(), let local = u32(), let remote = u32(),
                  let macCount = u16() else { return nil }
            var macs: [MACAddress] = []
            for _ in 0..<macCount {
                guard let x = mac() else { return nil }
                macs.append(x)
            }
            return .init(address: NodeAddress(node: n, fabricA: a, fabricB: b), localVI: local, remoteVI: remote, macs: macs)
        }
        func text(_ n: Int) -> String? {
            guard need(n) else { return nil }
            defer { i += n }
            return String(validating: UnsafeRawBufferPointer(rebasing: m[i..<(i + n)]), as: UTF8.self)
        }
        guard u8() == Self.kind, let op = u8(), let node = u32() else { return nil }
        switch op {
        case 1:
            guard i == m.count else { return nil }
            self = .register(node: node)
        case 2:
            guard let mtu = u16(), let nicCount = u16() else { return nil }
            var nics: [VirtualNICBinding] = []
            for _ in 0..<nicCount {
                guard let mac = mac(), let v = u16(), let vlan = VLANID(v), let p = u8(), p <= 1 else { return nil }
                nics.append(VirtualNICBinding(node: node, mac: mac, vlan: vlan, promiscuousAllowed: p == 1))
            }
            guard let peerCount = u16() else { return nil }
            var peers: [NodeConfiguration.Peer] = []
            for _ in 0..<peerCount {
                guard let p = peer() else { return nil }
                peers.append(p)
            }
            guard let addressCount = u16() else { return nil }
            var addresses: [AddressBinding] = []
            for _ in 0..<addressCount {
                guard let v = u16(), let vlan = VLANID(v), let n = u8(), let cidr = text(Int(n)), isIPv4CIDR(cidr) else { return nil }
                addresses.append(AddressBinding(vlan: vlan, cidr: cidr))
            }
            guard let workloadLength = u16(), let workload = text(workloadLength),
                  let high = u32(), let low = u32() else { return nil }
            guard i == m.count, (68...TAP.maximumMTU).contains(mtu) else { return nil }
            self = .configuration(NodeConfiguration(node: node, mtu: mtu, nics: nics, peers: peers, addresses: addresses,
                                                    workload: workload.isEmpty ? nil : workload,
                                                    revision: UInt64(high) << 32 | UInt64(low)))
        case 3:
            guard let n = u8(), need(Int(n)), i + Int(n) == m.count else { return nil }
            // A reason that is not UTF-8 is refused like any malformed message (never repaired:
            // what a node shows is what the control node said).
            guard let reason = text(Int(n)) else { return nil }
            self = .refused(node: node, reason: reason)
        case 4, 5:
            guard let nic = mac(), let group = mac(), i == m.count else { return nil }
            self = op == 4 ? .join(node: node, nic: nic, group: group) : .leave(node: node, nic: nic, group: group)
        case 6:
            guard let nic = mac(), let on = u8(), on <= 1, i == m.count else { return nil }
            self = .promiscuous(node: node, nic: nic, on: on == 1)
        case 7:
            guard let v = u16(), let vlan = VLANID(v), let mac = mac(), let on = u8(), on <= 1, i == m.count else { return nil }
            self = .listener(node: node, vlan: vlan, mac: mac, on: on == 1)
        case 8:
            guard i == m.count else { return nil }
            self = .standby(node: node)
        case 9:
            guard let failed = u32(), let p = peer(), i == m.count else { return nil }
            self = .moved(spare: node, failed: failed, peer: p)
        case 10:
            guard i == m.count else { return nil }
            self = .fenced(node: node)
        case 11:
            guard let raw = u8(), let step = FailoverStep(rawValue: raw), i == m.count else { return nil }
            self = .milestone(node: node, step: step)
        case 12:
            guard let status = u32(), i == m.count else { return nil }
            self = .processFailed(node: node, status: Int32(bitPattern: status))
        case 13:
            guard let high = u32(), let low = u32(), let sequence = u32(), let n = u16(), n <= Self.maximumConsolePiece,
                  need(n), i + n == m.count else { return nil }
            self = .console(node: node, incarnation: UInt64(high) << 32 | UInt64(low), sequence: sequence,
                            text: Array(UnsafeRawBufferPointer(rebasing: m[i..<(i + n)])))
        default:
            return nil
        }
    }
}

/// The administrator's definition of the virtual LANs, resolved (MACs allocated, addresses
/// known): what both control nodes hold, so both answer every registration the same way and
/// both servers switch by the same table ("Load Balancing and Failover": both control nodes run
/// the virtual LAN server for every VLAN and agree on its state).
public struct LANPlan: Sendable, Hashable {
    public var controls: [NodeAddress]
    public var nodes: [NodeAddress]
    public var nics: [VirtualNICBinding]
    public var mtu: Int
    /// The free pool: processing nodes with no personality that wait as spares ("Cluster
    /// Management Logic"). A node on no VLAN that is not a spare is refused.
    public var spares: [UInt32] = []
    /// Each node's IPv4 addresses, and its workload: the rest of its personality.
    public var addresses: [UInt32: [AddressBinding]] = [:]
    public var workloads: [UInt32: String] = [:]
    /// The failover server, then the backup server (seed 002): each hosts virtual nodes that
    /// wait like spares. A failed workload process resumes on a virtual node of the first server
    /// that has one free and answering; a processor that fails with the free pool empty does
    /// too; the personality of a virtual node whose server fails goes to the next server's.
    public var failoverServers: [FailoverServer] = []
    /// Which version of the administrator's definition this is: it only grows (the platform
    /// store's change counter, when the plan comes from the store). A running control node
    /// adopts a plan of a higher revision (``VirtualLANServer/adopt(_:layer:)``); a failover does
    /// not change it (both control nodes move the personality alike, by the same rule).
    public var revision: UInt64 = 0

    public init(controls: [NodeAddress], nodes: [NodeAddress], nics: [VirtualNICBinding], mtu: Int = TAP.maximumMTU) {
        self.controls = controls
        self.nodes = nodes
        self.nics = nics
        self.mtu = mtu
    }

    /// The configuration node `node` gets when it registers, or why it is refused.
    public func configuration(for node: UInt32) -> Result<NodeConfiguration, LANRefusal> {
        let mine = nics.filter { $0.node == node }
        guard !mine.isEmpty, nodes.contains(where: { $0.node == node }) else { return .failure(.notMember) }
        let c = peers(of: node, mine)
        return .success(NodeConfiguration(node: node, mtu: mtu, nics: mine, peers: c, addresses: addresses[node] ?? [],
                                          workload: workloads[node], revision: revision))
    }

    /// The peer entries of node `node` (whose NICs are `mine`).
    func peers(of node: UInt32, _ mine: [VirtualNICBinding]) -> [NodeConfiguration.Peer] {
        let vlans = Set(mine.map(\.vlan))
        var peers: [NodeConfiguration.Peer] = []
        for other in nodes where other.node != node {
            let macs = nics.filter { $0.node == other.node && vlans.contains($0.vlan) }.map(\.mac)
            guard !macs.isEmpty else { continue }
            peers.append(.init(address: other, localVI: VINumbering.direct(toward: other.node),
                               remoteVI: VINumbering.direct(toward: node), macs: macs))
        }
        return peers
    }

    /// Moves node `failed`'s whole personality (its NICs with their MACs, its addresses and its
    /// workload) to `spare`, which leaves the free pool. Returns the NICs moved.
    public mutating func move(_ failed: UInt32, to spare: UInt32) -> [VirtualNICBinding] {
        var moved: [VirtualNICBinding] = []
        for i in nics.indices where nics[i].node == failed {
            nics[i].node = spare
            moved.append(nics[i])
        }
        addresses[spare] = addresses.removeValue(forKey: failed)
        workloads[spare] = workloads.removeValue(forKey: failed)
        spares.removeAll { $0 == spare }  // a virtual node stays its server's: it is busy while it holds NICs
        return moved
    }

    /// The failover server hosting virtual node `node` (its index in ``failoverServers``).
    public func server(hosting node: UInt32) -> Int? {
        failoverServers.firstIndex { $0.virtualNodes.contains(node) }
    }

    /// Whether `node` waits for a personality: a spare of the free pool or a virtual node of
    /// a failover server, holding none now.
    public func waitsAsSpare(_ node: UInt32) -> Bool {
        (spares.contains(node) || server(hosting: node) != nil) && !nics.contains { $0.node == node }
    }

    /// Where `failed`'s personality may go, best first ("Cluster Management Logic", seed 002):
    /// - a failed workload process: a virtual node of the failover server, then of the backup
    ///   server, then the free pool;
    /// - a failed virtual node (its server died): a virtual node of another server, then the
    ///   free pool;
    /// - a failed processor: the free pool, then the servers' virtual nodes.
    public func candidates(for failed: UInt32, cause: FailoverCause) -> [UInt32] {
        let own = server(hosting: failed)
        let virtual = failoverServers.indices.filter { $0 != own }.flatMap { failoverServers[$0].virtualNodes }
        let pool = spares
        switch cause {
        case .processFailed: return virtual + pool
        case .silent: return own != nil ? virtual + pool : pool + virtual
        }
    }

    /// The server's table for this plan.
    public func table() throws(PlexusError) -> VirtualLANTable {
        var t = VirtualLANTable()
        for n in nics { try t.attach(n) }
        return t
    }
}

extension TAP {
    /// Sets a TAP interface's MAC address and MTU and brings it up, in the calling thread's
    /// network namespace (the engine thread's, from a driver callback).
    public static func configure(_ name: String, mac: MACAddress, mtu: Int) throws(PlexusError) {
        let rc = mac.bytes.withUnsafeBufferPointer { m in name.withCString { plx_if_configure($0, m.baseAddress!, Int32(mtu)) } }
        guard rc == 0 else { throw PlexusError(.system, "cannot configure \(name) (MAC \(mac), MTU \(mtu))", errno: rc) }
    }
}
