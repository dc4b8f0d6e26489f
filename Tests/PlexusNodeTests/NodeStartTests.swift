import Foundation
import PlexusCore
import PlexusLAN
import PlexusNode
import PlexusRCLAN
import PlexusTestSupport
import Testing

/// A service whose construction fails (a storage target whose SAN is missing, say).
private struct BrokenService: Error, CustomStringConvertible {
    var description: String { "its backing store is missing" }
}

@Suite("Starting control and processing nodes: one path, typed errors, nothing left behind", .serialized, .requiresIOUring)
struct NodeStartTests {
    /// A control node's plan with two processing nodes at the given addresses.
    private func plan(control: NodeAddress, nodes: [NodeAddress]) -> LANPlan {
        let v = VLANID(10)!
        let nics = nodes.enumerated().map { i, n in
            VirtualNICBinding(node: n.node, mac: MACAddress("02:00:01:00:00:\(String(format: "%02x", 0x20 + i))")!, vlan: v)
        }
        return LANPlan(controls: [control], nodes: nodes, nics: nics)
    }

    @Test("a control node and two processing nodes start through the node types, register, and a frame crosses the LAN")
    func startAndRegister() throws {
        let inbox = Inbox()
        var processing: [ProcessingNode] = []
        defer { for p in processing { p.stop() } }
        for n: NodeNumber in [52, 53] {
            processing.append(try ProcessingNode.start(node: n, engine: .loopback(node: UInt8(n.rawValue)), tap: false) { eth in
                if n == 53 { eth.onFrame = { nic, f in inbox.record(nic, f) } } else { eth.onFrame = { _, _ in } }
            })
        }
        // The control node binds fixed ports so that the nodes can be told where it is.
        let config = try loopbackOnFreePorts(node: 51)
        let controlAddress = NodeAddress(node: 51, fabricA: config.fabricA, fabricB: config.fabricB)
        let p = plan(control: controlAddress, nodes: processing.map { nodeAddress($0.thread, node: $0.node) })
        let control = try ControlNode.start(node: 51, index: 0, plan: p, engine: config)
        defer { control.stop() }
        for node in processing { try node.register(controls: [controlAddress]) }
        let configured = try waitUntil(seconds: 10) {
            try processing.allSatisfy { node in try node.ethernet { eth, _ in eth.registration == .configured } }
        }
        #expect(configured)
        let m52 = p.nics[0].mac
        let frame = ethernet(.broadcast, m52, Array("through the node types".utf8))
        try processing[0].ethernet { eth, layer in try frame.withUnsafeBytes { try eth.transmit($0, from: m52, layer: layer) } }
        #expect(waitUntil { inbox.count == 1 })
        #expect(try control.server { s, _ in s.registrations } >= 2)
    }

    @Test("each failed step is named: a bad layer configuration, a bad index, a port in use, a service that fails to build")
    func typedErrors() throws {
        var bad = RCLANConfiguration()
        bad.missedHeartbeats = 1
        #expect {
            try ProcessingNode.start(node: 54, engine: .loopback(node: 54), layer: bad, tap: false)
        } throws: { e in
            let e = e as! NodeStartError
            return e.step == .configuration && e.node == 54 && e.role == .processing && "\(e)".contains("missedHeartbeats")
        }
        let control = NodeAddress(node: 55, fabricA: FabricAddress("127.0.1.55:1")!, fabricB: FabricAddress("127.0.2.55:1")!)
        #expect {
            try ControlNode.start(node: 55, index: 2, plan: plan(control: control, nodes: []), engine: .loopback(node: 55))
        } throws: { e in (e as! NodeStartError).step == .configuration && "\(e)".contains("index") }

        // A port another engine holds: the engine cannot start.
        let holder = try EngineThread.start(.loopback(node: 56))
        defer { holder.stopAndWait() }
        var taken = EngineConfiguration.loopback(node: 57)
        taken.fabricA = FabricAddress(holder.info.ports[0].address)!
        #expect {
            try ProcessingNode.start(node: 57, engine: taken, tap: false)
        } throws: { e in (e as! NodeStartError).step == .engine }

        // A service that fails to build: the error names it, and the node's ports are free again.
        let broken = NodeServiceFactory("storage target") { throw BrokenService() }
        let probe = try EngineThread.start(.loopback(node: 58))
        var fixed = EngineConfiguration.loopback(node: 58)
        fixed.fabricA = FabricAddress(probe.info.ports[0].address)!
        fixed.fabricB = FabricAddress(probe.info.ports[1].address)!
        probe.stopAndWait()
        #expect {
            try ProcessingNode.start(node: 58, engine: fixed, tap: false, services: [broken])
        } throws: { e in
            let e = e as! NodeStartError
            return e.step == .service && e.service == "storage target" && "\(e)".contains("backing store is missing")
        }
        let again = try ProcessingNode.start(node: 58, engine: fixed, tap: false)
        again.stop()
    }
}

@Suite("A node that starts late is not a failed node", .serialized, .requiresIOUring)
struct LateStartTests {
    @Test("a processing node that comes up a second after its control node gets its personality; it is not failed over to the waiting spare")
    func lateNodeKeepsItsPersonality() throws {
        let late = try loopbackOnFreePorts(node: 82), controlConfig = try loopbackOnFreePorts(node: 81)
        let spare = try ProcessingNode.start(node: 83, engine: .loopback(node: 83), tap: false, configure: { $0.onFrame = { _, _ in } })
        defer { spare.stop() }
        let controlAddress = NodeAddress(node: 81, fabricA: controlConfig.fabricA, fabricB: controlConfig.fabricB)
        var plan = LANPlan(controls: [controlAddress],
                           nodes: [NodeAddress(node: 82, fabricA: late.fabricA, fabricB: late.fabricB), nodeAddress(spare.thread, node: 83)],
                           nics: [VirtualNICBinding(node: 82, mac: MACAddress("02:00:01:00:00:82")!, vlan: VLANID(10)!)])
        plan.spares = [83]
        let control = try ControlNode.start(node: 81, index: 0, plan: plan, engine: controlConfig)
        defer { control.stop() }
        try spare.register(controls: [controlAddress])
        #expect(try waitUntil(seconds: 10) { try spare.ethernet { eth, _ in eth.registration == .standby } })
        // Node 82 holds a personality and starts a second late (the scenario, not a wait for
        // a condition): long past the 20 ms + 30 ms that fail a node once heard.
        Thread.sleep(forTimeInterval: 1)
        let node = try ProcessingNode.start(node: 82, engine: late, tap: false, configure: { $0.onFrame = { _, _ in } })
        defer { node.stop() }
        try node.register(controls: [controlAddress])
        let configured = try waitUntil(seconds: 10) { try node.ethernet { eth, _ in eth.registration == .configured } }
        let failovers = try control.server { s, _ in s.failovers.count }
        let state = try node.ethernet { eth, _ in "\(eth.registration)" }
        #expect(configured, "node 82: \(state)")
        #expect(failovers == 0)
    }
}
