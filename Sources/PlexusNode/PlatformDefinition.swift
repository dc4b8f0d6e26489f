import Foundation
import PlexusCore
import PlexusLAN
import PlexusRCLAN
import PlexusStorage

/// What an administrator defines: the control nodes, the processing nodes, and which nodes sit
/// on which VLAN (one virtual NIC per node and VLAN, "Virtual LAN Server" item 1).
public struct PlatformDefinition: Sendable, Hashable {
    /// Node numbers of the control nodes (one or two).
    public var controlNodes: [NodeNumber]
    public var processingNodes: [NodeNumber]
    /// Each VLAN's member nodes.
    public var vlans: [VLANID: [NodeNumber]]
    /// Nodes whose NIC on a VLAN may listen promiscuously.
    public var promiscuousAllowed: [VLANID: Set<NodeNumber>] = [:]
    /// The serial number of the control node that defines the MACs (the first).
    public var serial: UInt16 = 1
    /// The MTU of every virtual NIC.
    public var mtu: Int = TAP.maximumMTU
    /// Where node N sits on fabric A and on fabric B when it runs as a process of its own
    /// (`plexus control`, `plexus node`): `{node}` stands for N. The in-process platform
    /// ignores them (it binds whatever ports are free, or the namespace fabric's addresses).
    public var fabricA = "127.0.1.{node}:7000"
    public var fabricB = "127.0.2.{node}:7000"
    /// The largest datagram the fabrics carry; Plexus segments frames above it.
    public var pathMTU = 65536
    /// Processing nodes on no VLAN that wait in the free pool as spares (failover).
    public var spares: [NodeNumber] = []
    /// Each node's IPv4 addresses, per VLAN, and its workload (a shell command run in its
    /// network namespace): with its NICs, the node's personality, which a spare takes over.
    public var addresses: [NodeNumber: [AddressBinding]] = [:]
    public var workloads: [NodeNumber: String] = [:]
    /// The failover server, then the backup server (seed 002), each with the virtual nodes it
    /// hosts: processing nodes on no VLAN that wait like spares, in one process per server.
    public var failoverServers: [FailoverServer] = []
    /// Each processing node's storage map ("Storage Architecture"): the disks of its
    /// personality, by (target, LUN), served by the control nodes and moved with the
    /// personality at a failover. A platform with none has no storage.
    public var storage: [NodeNumber: [StorageMapping]] = [:]
    /// Where the control nodes discover storage for the pool an administrator allocates from
    /// (``StorageRediscovery``); nil: no discovery.
    public var discovery: StorageDiscoveryConfiguration?
    /// Which version of the definition this is (``LANPlan/revision``): the platform store's
    /// change counter when the definition comes from the store; 0 for a file.
    public var revision: UInt64 = 0

    public init(controlNodes: [NodeNumber], processingNodes: [NodeNumber], vlans: [VLANID: [NodeNumber]]) {
        self.controlNodes = controlNodes
        self.processingNodes = processingNodes
        self.vlans = vlans
    }

    public func validate() throws(PlexusError) {
        func bad(_ s: String) -> PlexusError { PlexusError(.configuration, s) }
        guard (1...2).contains(controlNodes.count) else { throw bad("one or two control nodes, not \(controlNodes.count)") }
        let all = controlNodes + processingNodes
        guard Set(all).count == all.count else { throw bad("a node number is used twice") }
        guard all.allSatisfy({ (1...VINumbering.maximumNode).contains($0) }) else {
            throw bad("node numbers are 1...\(VINumbering.maximumNode)")
        }
        for (v, members) in vlans {
            for m in members where !processingNodes.contains(m) { throw bad("\(v): node \(m) is not a processing node") }
        }
        guard (68...TAP.maximumMTU).contains(mtu) else { throw bad("mtu must be 68...\(TAP.maximumMTU)") }
        guard (FrameLayout.minimumPathMTU...65536).contains(pathMTU) else {
            throw bad("pathMTU must be \(FrameLayout.minimumPathMTU)...65536")
        }
        for (field, template) in [("fabricA", fabricA), ("fabricB", fabricB)] {
            guard template.contains("{node}") else { throw bad("\(field): \"\(template)\" must contain {node}") }
            for n in all where FabricAddress(template.replacingOccurrences(of: "{node}", with: "\(n)")) == nil {
                throw bad("\(field): \"\(template)\" gives no IPv4 address:port for node \(n)")
            }
        }
        guard fabricA != fabricB else { throw bad("fabricA and fabricB must differ") }
        for n in spares {
            guard processingNodes.contains(n) else { throw bad("spares: node \(n) is not a processing node") }
            guard !vlans.values.contains(where: { $0.contains(n) }) else { throw bad("spares: node \(n) is on a VLAN; a spare holds no personality") }
        }
        for (n, list) in addresses {
            for a in list {
                guard vlans[a.vlan]?.contains(n) == true else { throw bad("addresses: node \(n) has no NIC on \(a.vlan)") }
                guard isIPv4CIDR(a.cidr) else { throw bad("addresses: node \(n): \"\(a.cidr)\" is not a.b.c.d/len") }
            }
        }
        var hosted = Set<NodeNumber>()
        for server in failoverServers {
            guard !server.name.isEmpty, !server.virtualNodes.isEmpty else { throw bad("failoverServers: each has a name and virtual nodes") }
            for v in server.virtualNodes {
                guard processingNodes.contains(v) else { throw bad("failoverServers: virtual node \(v) of \(server.name) is not a processing node") }
                guard hosted.insert(v).inserted, !spares.contains(v) else {
                    throw bad("failoverServers: node \(v) is hosted twice, or is also a spare")
                }
                // A virtual node on a VLAN carries a personality it took over (a definition
                // from the platform store, after a failover).
            }
        }
        guard Set(failoverServers.map(\.name)).count == failoverServers.count else { throw bad("failoverServers: a name is used twice") }
        for (n, map) in storage {
            guard processingNodes.contains(n), !spares.contains(n) else {
                throw bad("storage: node \(n) is not a processing node with a personality")
            }
            var seen = Set<[UInt32]>()
            for m in map {
                guard seen.insert([m.target, m.lun]).inserted else { throw bad("storage: node \(n) maps target \(m.target) LUN \(m.lun) twice") }
                guard !m.path.isEmpty, m.path.utf8.count <= 4096 else { throw bad("storage: node \(n): a path of 1...4096 bytes") }
            }
        }
        for (n, w) in workloads {
            guard processingNodes.contains(n), !spares.contains(n) else { throw bad("workloads: node \(n) is not a processing node with a personality") }
            guard !w.isEmpty, w.utf8.count <= 4096 else { throw bad("workloads: node \(n): a command of 1...4096 bytes") }
        }
    }
}
