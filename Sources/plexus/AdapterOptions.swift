import ArgumentParser
import PlexusCore
import PlexusNode

/// What a node says of itself in the address book (seed 003's cluster destination address
/// table), beyond the addresses the platform definition gives it: alternate adapters, the
/// routers of its subnets, and whether it sets routes to nodes on other subnets.
struct AdapterOptions: ParsableArguments {
    @Option(name: .customLong("alternate-a"),
            help: "An alternate address of this node on fabric A, a.b.c.d:port (repeatable, at most 3): peers move there when the primary (the definition's address) stops answering. With alternates, the fabric's port listens on every address of the host (0.0.0.0, the definition's port).")
    var alternatesA: [String] = []

    @Option(name: .customLong("alternate-b"), help: "An alternate address of this node on fabric B (as --alternate-a).")
    var alternatesB: [String] = []

    @Option(name: .customLong("gateway-a"), help: "The router on this node's fabric A subnet, a.b.c.d: nodes on other subnets reach it through there.")
    var gatewayA: String?

    @Option(name: .customLong("gateway-b"), help: "The router on this node's fabric B subnet, a.b.c.d.")
    var gatewayB: String?

    @Option(help: "The prefix length of this node's subnets on both fabrics.")
    var prefixLength: Int = 24

    @Flag(help: "Set a host route (ip route replace) through a gateway to each node on another subnet, as the address book says; needs CAP_NET_ADMIN.")
    var installRoutes = false

    func validate() throws {
        for a in alternatesA + alternatesB where FabricAddress(a) == nil {
            throw ValidationError("--alternate-a/--alternate-b: '\(a)' is not a.b.c.d:port")
        }
        guard alternatesA.count <= 3, alternatesB.count <= 3 else {
            throw ValidationError("at most 3 alternate addresses per fabric")
        }
        for g in [gatewayA, gatewayB].compactMap({ $0 }) where FabricAddress("\(g):0") == nil {
            throw ValidationError("--gateway-a/--gateway-b: '\(g)' is not an IPv4 address a.b.c.d")
        }
        guard (0...32).contains(prefixLength) else { throw ValidationError("--prefix-length is 0...32, not \(prefixLength)") }
    }

    /// The node's entry for an engine bound as `engine` says (the definition's addresses are
    /// the primaries); a fabric with alternates is bound to every address of the host instead.
    func apply(to engine: inout EngineConfiguration) -> NodeAdapters {
        let adapters = NodeAdapters(
            primaryA: engine.fabricA, primaryB: engine.fabricB,
            alternatesA: alternatesA.compactMap(FabricAddress.init), alternatesB: alternatesB.compactMap(FabricAddress.init),
            prefixLength: prefixLength, gatewayA: gatewayA.flatMap { FabricAddress("\($0):0")?.ip },
            gatewayB: gatewayB.flatMap { FabricAddress("\($0):0")?.ip }, installRoutes: installRoutes)
        if !alternatesA.isEmpty { engine.fabricA = FabricAddress(ip: 0, port: engine.fabricA.port) }
        if !alternatesB.isEmpty { engine.fabricB = FabricAddress(ip: 0, port: engine.fabricB.port) }
        return adapters
    }
}
