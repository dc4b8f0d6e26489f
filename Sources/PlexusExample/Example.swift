// An embedding example: a Swift program that imports the fabric core, starts two engines (each on
// its own OS thread), acts as their control plane, and exchanges frames and an RDMA WRITE, all
// from async code. Run it with `swift run plexus-example`.
import PlexusCore
import Synchronization

/// Runs on node B's engine thread: prints what arrives and answers each greeting.
final class Responder: EngineDriver {
    func received(_ frame: consuming InboundFrame, engine: Engine) {
        let vi = frame.vi
        let text = frame.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
        print("node B got \"\(text)\" on \(vi)")
        engine.postReceives(1, on: vi)
        // Reply in place: fill a pool frame and send it back on the same VI. No allocation.
        guard var reply = engine.takeFrame() else { return }
        reply.setPayload("ack: \(text)".utf8)
        try? engine.send(reply, on: vi)
    }

    func rdmaImmediate(_ immediate: UInt32, on vi: VI, region: RegionKey, offset: UInt64, length: Int,
                       engine: Engine) {
        let text = (try? engine.withRegion(region) { String(decoding: $0[0..<Int(offset) + length], as: UTF8.self) }) ?? "?"
        print("node B: RDMA WRITE landed (immediate \(immediate)); region now holds \"\(text)\"")
    }
}

/// Runs on node A's engine thread: counts replies so the async side can wait for them.
final class Listener: EngineDriver {
    let replies: Replies
    init(_ replies: Replies) { self.replies = replies }
    func received(_ frame: consuming InboundFrame, engine: Engine) {
        let text = frame.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
        print("node A got \"\(text)\" on \(frame.vi)")
        replies.count.add(1, ordering: .relaxed)
    }
}

final class Replies: Sendable {
    let count = Atomic<Int>(0)
}

@main
struct Example {
    static func main() async throws {
        let replies = Replies()
        let nodeA = try EngineThread.start(.loopback(node: 11)) { Listener(replies) }
        let nodeB = try EngineThread.start(.loopback(node: 12)) { Responder() }

        // Be the control plane: one VI per fabric between the two nodes.
        for fabric in Fabric.allCases {
            let i = Int(fabric.rawValue)
            try await nodeA.control.establish(VI(fabric, 1), peer: FabricAddress(nodeB.info.ports[i].address)!, remoteVI: 1)
            try await nodeB.control.establish(VI(fabric, 1), peer: FabricAddress(nodeA.info.ports[i].address)!, remoteVI: 1)
        }
        try await nodeA.run { e in for f in Fabric.allCases { e.postReceives(16, on: VI(f, 1)) } }
        try await nodeB.run { e in for f in Fabric.allCases { e.postReceives(16, on: VI(f, 1)) } }

        // Send a greeting on each fabric (the closure runs on node A's engine thread).
        try await nodeA.run { e in
            for f in Fabric.allCases {
                guard var frame = e.takeFrame() else { throw PlexusError(.resourceExhausted, "pool empty") }
                frame.setPayload("hello over fabric \(f)".utf8)
                try e.send(frame, on: VI(f, 1))
            }
        }

        // RDMA WRITE into a region node B registers for node A's VI on fabric A.
        let key = try await nodeB.control.registerRegion(bytes: 4096, writers: [VI(.a, 1)])
        try await nodeA.run { e in
            var frame = e.takeFrame()!
            frame.setPayload("written by node A".utf8)
            try e.rdmaWrite(frame, on: VI(.a, 1), region: key, offset: 0, immediate: 42)
        }

        // Wait (without blocking the cooperative pool) for both replies.
        var waited = 0
        while replies.count.load(ordering: .relaxed) < 2 && waited < 5000 {
            try await Task.sleep(for: .milliseconds(1))
            waited += 1
        }
        let counters = try await nodeB.run { ($0.counters(.a), $0.counters(.b)) }
        print("node B counters: fabric A in \(counters.0.framesIn) frames, fabric B in \(counters.1.framesIn) frames")
        await nodeA.stop()
        await nodeB.stop()
    }
}
