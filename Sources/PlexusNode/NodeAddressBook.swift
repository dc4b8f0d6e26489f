import PlexusCluster
import PlexusCore
import PlexusLAN
import PlexusRCLAN

/// The address book every node keeps: seed 003's cluster destination address table, held and
/// exchanged by a ``PlexusCluster/TableDistributor`` service on the node's own engine.
///
/// A node's own entry comes from its ports (or the addresses it is told it has), with any
/// alternate adapters; the distributor spreads it. Processing nodes exchange the table with both
/// control nodes, and the control nodes with each other (``PlexusLAN/VINumbering``), so every
/// node ends with every node's entry, and a processing node opens its direct RVIs to a peer at
/// the addresses of the peer's entry: every adapter on each fabric, primary first, and the
/// smallest MTU among them.
public struct NodeAdapters: Sendable, Hashable {
    /// The node's primary address on each fabric: nil, its port's own address (a port bound to
    /// every address of its host, `0.0.0.0`, needs it given).
    public var primaryA: FabricAddress?
    public var primaryB: FabricAddress?
    /// Its alternate adapters' addresses on each fabric, in the order peers try them.
    public var alternatesA: [FabricAddress]
    public var alternatesB: [FabricAddress]
    /// The MTU of the node's adapters (nil: the engine's path MTU).
    public var mtu: Int?
    /// The length of the prefix of the node's subnets (24: a /24 on each fabric).
    public var prefixLength: Int
    /// The router on the node's subnet on each fabric (IPv4, host order), through which nodes on
    /// other subnets reach it and it them; nil: none.
    public var gatewayA: UInt32?
    public var gatewayB: UInt32?
    /// Whether the node keeps a host route through a gateway to each peer adapter on another
    /// subnet (``RouteKeeper``). Needs `CAP_NET_ADMIN` in the node's network namespace.
    public var installRoutes: Bool

    public init(primaryA: FabricAddress? = nil, primaryB: FabricAddress? = nil, alternatesA: [FabricAddress] = [],
                alternatesB: [FabricAddress] = [], mtu: Int? = nil, prefixLength: Int = 24,
                gatewayA: UInt32? = nil, gatewayB: UInt32? = nil, installRoutes: Bool = false) {
        self.primaryA = primaryA
        self.primaryB = primaryB
        self.alternatesA = alternatesA
        self.alternatesB = alternatesB
        self.mtu = mtu
        self.prefixLength = prefixLength
        self.gatewayA = gatewayA
        self.gatewayB = gatewayB
        self.installRoutes = installRoutes
    }

    /// The subnet mask of ``prefixLength``.
    public var subnetMask: UInt32 { prefixLength <= 0 ? 0 : UInt32.max << UInt32(32 - min(prefixLength, 32)) }
}

enum NodeAddressBook {
    static func factory(node: NodeNumber) -> NodeServiceFactory {
        NodeServiceFactory("address-table distributor") { TableDistributor(node: node) }
    }

    /// Sets the node's own entry (on the engine thread): its primary addresses (given, or its
    /// ports'), then its alternates.
    /// - Returns: the node's route keeper, when `adapters` asks for routes.
    @discardableResult
    static func setOwnEntry(_ thread: EngineThread, node: NodeNumber, adapters: NodeAdapters, pathMTU: Int,
                            namespace: String?) throws -> RouteKeeper? {
        let info = thread.info
        guard let portA = FabricAddress(info.ports[0].address), let portB = FabricAddress(info.ports[1].address) else {
            throw PlexusError(.configuration, "node \(node)'s port addresses are not usable")
        }
        let a = [adapters.primaryA ?? portA] + adapters.alternatesA
        let b = [adapters.primaryB ?? portB] + adapters.alternatesB
        for address in a + b where address.ip == 0 {
            throw PlexusError(.configuration, "node \(node): a port bound to every address needs its addresses given (\(address))")
        }
        guard (0...32).contains(adapters.prefixLength) else {
            throw PlexusError(.configuration, "node \(node): a prefix length is 0...32, not \(adapters.prefixLength)")
        }
        let entry = NodeEntry.own(node: node, fabricA: a, fabricB: b, mtu: adapters.mtu ?? pathMTU,
                                  subnetMask: adapters.subnetMask, gatewayA: adapters.gatewayA, gatewayB: adapters.gatewayB)
        let keeper = adapters.installRoutes ? RouteKeeper(own: entry, namespace: namespace) : nil
        try thread.runAndWait { e in
            guard let d = RCLAN.on(e)?.service(TableDistributor.self) else {
                throw PlexusError(.engineStopped, "node \(node)'s address-table distributor is not running")
            }
            do { try d.setLocalEntry(entry) } catch { throw PlexusError(.configuration, "node \(node)'s own entry: \(error)") }
            if let keeper { d.onEntryTaken = { entry in keeper.learn(entry) } }
        }
        return keeper
    }

    /// Opens the address-table RVIs `paths` (on the engine thread) and makes each a neighbour of
    /// the node's distributor. A control node watches its neighbours while idle; a processing
    /// node opens them ``RVILiveness/onDemand`` (the control node's probes keep the pair heard).
    static func openNeighbours(_ layer: RCLAN, _ neighbours: [(node: NodeNumber, path: RVIPath)], pathMTU: Int,
                               liveness: RVILiveness = .watched) throws {
        guard let d = layer.service(TableDistributor.self) else {
            throw PlexusError(.engineStopped, "the address-table distributor is not running")
        }
        for n in neighbours {
            let rvi = try layer.open(n.path, service: d, liveness: liveness)
            d.addNeighbour(rvi)
            d.follow(rvi, node: n.node, localVI: n.path.localA, remoteVI: n.path.remoteA, pathMTU: pathMTU, layer: layer)
        }
    }

    /// Keeps `rvi` (opened by another service) at the addresses of `node`'s entry.
    static func follow(_ layer: RCLAN, _ rvi: RVI, node: NodeNumber, localVI: UInt32, remoteVI: UInt32, pathMTU: Int) {
        layer.service(TableDistributor.self)?.follow(rvi, node: node, localVI: localVI, remoteVI: remoteVI,
                                                     pathMTU: pathMTU, layer: layer)
    }

    /// The path of an address-table RVI toward `peer`.
    static func path(_ peer: NodeAddress, local: UInt32, remote: UInt32) -> RVIPath {
        RVIPath(localA: local, localB: local, peerA: peer.fabricA, peerB: peer.fabricB, remoteA: remote, remoteB: remote)
    }
}
