import PlexusCore
import PlexusLAN

/// Node `n` on loopback on ports found free by a probe engine, so that others can be told where
/// it is before it starts (a control node's plan names it, processing nodes register with it).
func loopbackOnFreePorts(node n: Int) throws -> EngineConfiguration {
    let probe = try EngineThread.start(.loopback(node: UInt8(n)))
    var c = EngineConfiguration.loopback(node: UInt8(n))
    c.fabricA = FabricAddress(probe.info.ports[0].address)!
    c.fabricB = FabricAddress(probe.info.ports[1].address)!
    probe.stopAndWait()
    return c
}

/// Where node `node`, running on `thread`, is on the fabrics.
func nodeAddress(_ thread: EngineThread, node: NodeNumber) -> NodeAddress {
    NodeAddress(node: node, fabricA: FabricAddress(thread.info.ports[0].address)!,
                fabricB: FabricAddress(thread.info.ports[1].address)!)
}
