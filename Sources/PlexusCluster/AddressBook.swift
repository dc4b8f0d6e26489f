import PlexusCore
import PlexusRCLAN

// The cluster destination address table as every node's address book: a node's own entry is
// made from its ports (and any alternate adapters it has), and the path of an RVI to another
// node is read from that node's entry (seed 003: the primary address, the alternates tried
// when it does not answer, each adapter's MTU).

extension NodeEntry {
    /// A node's own entry: on each fabric its primary address, then its alternates, all with
    /// the same `mtu`, adapter type and mask.
    /// `gatewayA`/`gatewayB` (host order) are the routers on the node's subnets through which
    /// nodes on other subnets reach it (and it them).
    public static func own(node: NodeNumber, version: UInt64 = 1, fabricA: [FabricAddress], fabricB: [FabricAddress],
                           mtu: Int, adapterType: String = "udp", subnetMask: UInt32 = 0xFFFF_FF00,
                           gatewayA: UInt32? = nil, gatewayB: UInt32? = nil) -> NodeEntry {
        func adapters(_ f: Fabric, _ list: [FabricAddress], _ gateway: UInt32?) -> [AdapterEntry] {
            list.map { AdapterEntry(fabric: f, address: $0, adapterType: adapterType, mtu: mtu, subnetMask: subnetMask,
                                    gateway: gateway) }
        }
        return NodeEntry(node: node, version: version,
                         adapters: adapters(.a, fabricA, gatewayA) + adapters(.b, fabricB, gatewayB))
    }

    /// The host routes this node (its entry `self`) needs to reach `peer`'s adapters that are
    /// not on its own subnet on their fabric (seed 003: the gateway "which router … should be
    /// used" travels in the table): each through the peer adapter's gateway when that router is
    /// on this node's subnet, else through this node's own gateway on the fabric. Adapters on
    /// this node's subnet, unreachable ones, and ones with no usable gateway need none.
    public func routes(to peer: NodeEntry) -> [(destination: UInt32, gateway: UInt32)] {
        var out: [(destination: UInt32, gateway: UInt32)] = []
        for x in peer.adapters where x.status == .reachable {
            guard let mine = adapters.first(where: { $0.fabric == x.fabric }) else { continue }
            let mask = mine.subnetMask
            let subnet = mine.address.ip & mask
            if x.address.ip & mask == subnet { continue }
            let gateway = x.gateway.flatMap { $0 & mask == subnet ? $0 : nil } ?? mine.gateway
            guard let gateway, gateway & mask == subnet else { continue }
            out.append((x.address.ip, gateway))
        }
        return out
    }
}

extension AddressTable {
    /// The path of an RVI to `node` as its entry describes it: on each fabric, its reachable
    /// adapters there in order (the first the primary, up to three more as alternates), and the
    /// smallest of their MTUs when it is below `pathMTU`. Nil when the table has no entry for
    /// `node` or the entry has no reachable adapter on one of the fabrics.
    public func path(to node: NodeNumber, localVI: UInt32, remoteVI: UInt32, pathMTU: Int = 65536) -> RVIPath? {
        let reachable = destinations(of: node)
        let a = reachable.filter { $0.fabric == .a }.prefix(4)
        let b = reachable.filter { $0.fabric == .b }.prefix(4)
        guard let primaryA = a.first, let primaryB = b.first else { return nil }
        func mtu(_ list: ArraySlice<AdapterEntry>) -> Int? {
            let m = list.map(\.mtu).min() ?? pathMTU
            return m < pathMTU ? max(m, FrameLayout.smallestPeerMTU) : nil
        }
        return RVIPath(localA: localVI, localB: localVI, peerA: primaryA.address, peerB: primaryB.address,
                       remoteA: remoteVI, remoteB: remoteVI, alternatesA: a.dropFirst().map(\.address),
                       alternatesB: b.dropFirst().map(\.address), mtuA: mtu(a), mtuB: mtu(b))
    }
}
