import Foundation
import PlexusCore
import PlexusTestSupport
import Testing

@Suite("Engine: VIs across two processes", .requiresIOUring)
struct CrossProcessTests {
    @Test("frames sent from this process on fabrics A and B are echoed back by a second process, intact")
    func echoAcrossProcesses() throws {
        let exe = try #require(plexusExecutable, "the plexus executable was not built next to the tests (run swift build first)")
        let child = Process()
        child.executableURL = URL(fileURLWithPath: exe)
        child.arguments = ["bench-peer", "--mode", "plexus", "--role", "echo", "--fabric", "both", "--node", "22", "--cpu", "1"]
        let toChild = Pipe(), fromChild = Pipe()
        child.standardInput = toChild
        child.standardOutput = fromChild
        try child.run()
        defer { if child.isRunning { child.terminate() } }
        let lines = LineSource(fromChild.fileHandleForReading)
        let ready = try #require(lines.next(), "the peer process said nothing")
        #expect(ready.hasPrefix("READY "))
        let addrs = try JSONSerialization.jsonObject(with: Data(ready.dropFirst(6).utf8)) as! [String: String]
        let peerA = try #require(FabricAddress(addrs["a"]!)), peerB = try #require(FabricAddress(addrs["b"]!))

        let seen = Observed()
        let me = try EngineThread.start(.loopback(node: 21)) { RecordingDriver(seen) }
        defer { me.stopAndWait() }
        toChild.fileHandleForWriting.write(Data(("PEER {\"a\":\"\(me.info.ports[0].address)\",\"b\":\"\(me.info.ports[1].address)\"}\n").utf8))
        try me.control.establishAndWait(VI(.a, 1), peer: peerA, remoteVI: 1)
        try me.control.establishAndWait(VI(.b, 1), peer: peerB, remoteVI: 1)
        try me.runAndWait { e in
            e.postReceives(1000, on: VI(.a, 1))
            e.postReceives(1000, on: VI(.b, 1))
        }
        #expect(lines.next()?.hasPrefix("GO") == true)
        let sizes = [1, 64, 1000, 9000, 16896]
        var expected: [VI: [[UInt8]]] = [:]
        for i in 0..<40 {
            let vi = VI(i % 2 == 0 ? .a : .b, 1)
            let p = pattern(i, size: sizes[i % sizes.count])
            expected[vi, default: []].append(p)
            try send(me, vi, p)
        }
        #expect(waitUntil(seconds: 10) { seen.read { $0.received.count } == 40 })
        let got = seen.read { $0.received }
        for vi in [VI(.a, 1), VI(.b, 1)] {
            #expect(got.filter { $0.vi == vi }.map(\.bytes) == expected[vi]!, "echoes on \(vi)")
        }
        toChild.fileHandleForWriting.write(Data("STOP\n".utf8))
        let result = try #require(lines.next())
        #expect(result.hasPrefix("RESULT "))
        child.waitUntilExit()
        #expect(child.terminationStatus == 0)
    }
}

/// Lines from a pipe, read as they arrive.
final class LineSource {
    let handle: FileHandle
    var buffer = Data()
    init(_ handle: FileHandle) { self.handle = handle }
    func next() -> String? {
        while true {
            if let nl = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[buffer.startIndex..<nl], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...nl)
                return line
            }
            let chunk = handle.availableData
            if chunk.isEmpty { return nil }
            buffer.append(chunk)
        }
    }
}
