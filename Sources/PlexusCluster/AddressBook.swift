import PlexusCore
import PlexusRCLAN

// The cluster destination address table as every node's address book: a node's own entry is
// made from its ports (and any alternate adapters it has), and the path of an RVI to another
// node is read from that node's entry (seed 003: the primary address, the alternates tried
// when it does not answer, each adapter's MTU).

extension NodeEntry {
    /// A node's own entry: on each fabric its primary address, then its alternates, all with
    /// the same `mtu`, adapter type and mask.
    public static func own(node: UInt32, version: UInt64 = 1, fabricA: [FabricAddress], fabricB: [FabricAddress],
                           mtu: Int, adapterType: String = "udp", subnetMask: UInt32 = 0xFFFF_FF00) -> NodeEntry {
        func adapters(_ f: Fabric, _ list: [FabricAddress]) -> [AdapterEntry] {
            list.map { AdapterEntry(fabric: f, address: $0, adapterType: adapterType, mtu: mtu, subnetMask: subnetMask) }
        }
        return NodeEntry(node: node, version: version, adapters: adapters(.a, fabricA) + adapters(.b, fabricB))
    }
}

extension AddressTable {
    /// The path of an RVI to `node` as its entry describes it: on each fabric, its reachable
    /// adapters there in order (the first the primary, up to three more as alternates), and the
    /// smallest of their MTUs when it is below `pathMTU`. Nil when the table has no entry for
    /// `node` or the entry has no reachable adapter on one of the fabrics.
    public func path(to node: UInt32, localVI: UInt32, remoteVI: UInt32, pathMTU: Int = 65536) -> RVIPath? {
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
