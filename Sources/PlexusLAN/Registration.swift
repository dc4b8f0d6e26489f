import CPlexus
import PlexusCore
import PlexusRCLAN

/// How the control nodes number the VIs of the paths they create ("Network Architecture": the
/// control nodes set up every path; a processing node never picks one).
///
/// - A processing node's management RVI to control node *k* (0 or 1) is VI `1 + k` at the node
///   and VI `16 + node` at the control node: a node finds its control nodes without being told.
/// - Its address-table RVI to control node *k* (seed 003's table, distributed) is VI `3 + k` at
///   the node and VI `8192 + node` at the control node; the two control nodes exchange the
///   table over VI `5` at both.
/// - The direct RVI between processing nodes *i* and *j* is VI `4096 + j` at *i* and
///   `4096 + i` at *j*; the control node sends these numbers in the configuration.
/// - The two storage RVIs of a processing node to control node *k* ("Virtual Storage": one for
///   CMD and STAT, one for BUF, TRAN and the data) are VIs `6 + 2k` and `7 + 2k` at the node,
///   and `12288 + node` and `4096 + node` at the control node (a control node has no direct
///   RVIs, so the direct range is free there).
public enum VINumbering {
    public static func managementAtNode(control k: Int) -> UInt32 { UInt32(1 + k) }
    public static func managementAtControl(node: NodeNumber) -> UInt32 { 16 + node.rawValue }
    public static func addressTableAtNode(control k: Int) -> UInt32 { UInt32(3 + k) }
    public static func addressTableAtControl(node: NodeNumber) -> UInt32 { 8192 + node.rawValue }
    public static let addressTableBetweenControls: UInt32 = 5
    public static func direct(toward peer: NodeNumber) -> UInt32 { 4096 + peer.rawValue }
    public static func storageCommandAtNode(control k: Int) -> UInt32 { UInt32(6 + 2 * k) }
    public static func storageDataAtNode(control k: Int) -> UInt32 { UInt32(7 + 2 * k) }
    public static func storageCommandAtControl(node: NodeNumber) -> UInt32 { 12288 + node.rawValue }
    public static func storageDataAtControl(node: NodeNumber) -> UInt32 { 4096 + node.rawValue }
    /// The largest node number these rules allow with the engine's default 16384 VIs (the
    /// storage command VIs of a control node, `12288 + node`, stay below 16384; management VIs,
    /// `16 + node`, below 4096 + 16).
    public static let maximumNode: NodeNumber = 4095
}

/// A node's place on the fabrics, as the control nodes know it.
public struct NodeAddress: Sendable, Hashable {
    public var node: NodeNumber
    public var fabricA: FabricAddress
    public var fabricB: FabricAddress
    public init(node: NodeNumber, fabricA: FabricAddress, fabricB: FabricAddress) {
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
    public var node: NodeNumber
    /// The MTU of the node's virtual NICs.
    public var mtu: Int
    /// The personality the node holds: its NICs, their addresses, its workload. A
    /// configuration with no NICs gives the node none.
    public var personality: ProcessorPersonality
    public var peers: [Peer]
    /// The revision of the plan this configuration comes from (``LANPlan/revision``). A
    /// configured node takes a configuration of a higher revision as a change to apply while
    /// it runs (NICs, peers, addresses, workload: ``VirtualEthernet``'s reconfiguration); one
    /// with no NICs releases it to the free pool.
    public var revision: UInt64 = 0

    public init(node: NodeNumber, mtu: Int, personality: ProcessorPersonality, peers: [Peer], revision: UInt64 = 0) {
        self.node = node
        self.mtu = mtu
        self.personality = personality
        self.peers = peers
        self.revision = revision
    }

    /// A configuration whose personality is `nics`, `addresses` and `workload`.
    public init(node: NodeNumber, mtu: Int, nics: [VirtualNICBinding], peers: [Peer],
                addresses: [AddressBinding] = [], workload: String? = nil, revision: UInt64 = 0) {
        self.init(node: node, mtu: mtu, personality: ProcessorPersonality(nics: nics, addresses: addresses, workload: workload),
                  peers: peers, revision: revision)
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
    public var virtualNodes: [NodeNumber]
    public init(name: String, virtualNodes: [NodeNumber]) {
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

/// The administrator's definition of the virtual LANs, resolved (MACs allocated, addresses
/// known): what both control nodes hold, so both answer every registration the same way and
/// both servers switch by the same table ("Load Balancing and Failover": both control nodes run
/// the virtual LAN server for every VLAN and agree on its state).
public struct LANPlan: Sendable, Hashable {
    public var controls: [NodeAddress]
    public var nodes: [NodeAddress]
    /// Each node's personality: its NICs (MACs on VLANs), their addresses, its workload. A node
    /// holds a personality when it has NICs.
    public var personalities: [NodeNumber: ProcessorPersonality] = [:]
    public var mtu: Int
    /// The free pool: processing nodes with no personality that wait as spares ("Cluster
    /// Management Logic"). A node on no VLAN that is not a spare is refused.
    public var spares: [NodeNumber] = []
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

    /// A plan whose personalities are `nics`, each held by the node it names (addresses and
    /// workloads come after, in ``personalities``).
    public init(controls: [NodeAddress], nodes: [NodeAddress], nics: [VirtualNICBinding], mtu: Int = TAP.maximumMTU) {
        self.controls = controls
        self.nodes = nodes
        self.mtu = mtu
        for n in nics { personalities[n.node, default: ProcessorPersonality()].nics.append(n) }
    }

    /// Every NIC of the plan: by node number, each node's in its personality's order.
    public var nics: [VirtualNICBinding] {
        personalities.keys.sorted().flatMap { personalities[$0]!.nics }
    }

    /// Whether `node` holds a personality (has NICs). Allocates nothing.
    public func holdsPersonality(_ node: NodeNumber) -> Bool { personalities[node]?.hasNICs ?? false }

    /// The configuration node `node` gets when it registers, or why it is refused.
    public func configuration(for node: NodeNumber) -> Result<NodeConfiguration, LANRefusal> {
        guard let mine = personalities[node], mine.hasNICs, nodes.contains(where: { $0.node == node }) else {
            return .failure(.notMember)
        }
        return .success(NodeConfiguration(node: node, mtu: mtu, personality: mine, peers: peers(of: node, mine.nics), revision: revision))
    }

    /// The peer entries of node `node` (whose NICs are `mine`).
    func peers(of node: NodeNumber, _ mine: [VirtualNICBinding]) -> [NodeConfiguration.Peer] {
        let vlans = Set(mine.map(\.vlan))
        var peers: [NodeConfiguration.Peer] = []
        for other in nodes where other.node != node {
            let macs = (personalities[other.node]?.nics ?? []).filter { vlans.contains($0.vlan) }.map(\.mac)
            guard !macs.isEmpty else { continue }
            peers.append(.init(address: other, localVI: VINumbering.direct(toward: other.node),
                               remoteVI: VINumbering.direct(toward: node), macs: macs))
        }
        return peers
    }

    /// Moves node `failed`'s whole personality (its NICs with their MACs, its addresses and its
    /// workload) to `spare`, which leaves the free pool. Returns the personality moved, as
    /// `spare` holds it.
    public mutating func move(_ failed: NodeNumber, to spare: NodeNumber) -> ProcessorPersonality {
        let moved = (personalities.removeValue(forKey: failed) ?? ProcessorPersonality()).held(by: spare)
        personalities[spare] = moved
        spares.removeAll { $0 == spare }  // a virtual node stays its server's: it is busy while it holds NICs
        return moved
    }

    /// The failover server hosting virtual node `node` (its index in ``failoverServers``).
    public func server(hosting node: NodeNumber) -> Int? {
        failoverServers.firstIndex { $0.virtualNodes.contains(node) }
    }

    /// Whether `node` waits for a personality: a spare of the free pool or a virtual node of
    /// a failover server, holding none now.
    public func waitsAsSpare(_ node: NodeNumber) -> Bool {
        (spares.contains(node) || server(hosting: node) != nil) && !holdsPersonality(node)
    }

    /// Where `failed`'s personality may go, best first ("Cluster Management Logic", seed 002):
    /// - a failed workload process: a virtual node of the failover server, then of the backup
    ///   server, then the free pool;
    /// - a failed virtual node (its server died): a virtual node of another server, then the
    ///   free pool;
    /// - a failed processor: the free pool, then the servers' virtual nodes.
    public func candidates(for failed: NodeNumber, cause: FailoverCause) -> [NodeNumber] {
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
        for p in personalities.values {
            for n in p.nics { try t.attach(n) }
        }
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
