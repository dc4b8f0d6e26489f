import Foundation
import PlexusCore
import PlexusTestSupport
import Testing

/// Stops its own engine when the first frame arrives.
final class StopOnFirstFrame: EngineDriver {
    func received(_ frame: consuming InboundFrame, engine: Engine) { engine.stop() }
}

@Suite("Engine: shutdown, reassembly, ordering and rights (review findings)",
       .requiresIOUring)
struct RegressionTests {
    @Test("a driver that calls Engine.stop() ends its engine without anyone's help", arguments: PollMode.allCases)
    func driverStops(mode: PollMode) throws {
        var c1 = EngineConfiguration.loopback(node: 51), c2 = EngineConfiguration.loopback(node: 52)
        c1.pollMode = mode
        c2.pollMode = mode
        let a = try EngineThread.start(c1)
        let b = try EngineThread.start(c2) { StopOnFirstFrame() }
        try a.control.establishAndWait(VI(.a, 1), peer: FabricAddress(b.info.ports[0].address)!, remoteVI: 1)
        try b.control.establishAndWait(VI(.a, 1), peer: FabricAddress(a.info.ports[0].address)!, remoteVI: 1)
        try b.runAndWait { $0.postReceives(1, on: VI(.a, 1)) }
        try send(a, VI(.a, 1), [1])
        #expect(waitUntil(seconds: 5) { b.hasStopped })
        #expect(b.stopAndWait().leakedFrames == 0)
        a.stopAndWait()
    }

    /// A hand-made segment from a raw socket that node 2 accepts as its peer on VI A/5.
    func segment(_ offset: UInt32, of length: UInt32, _ bytes: [UInt8], id: UInt32 = 9) -> [UInt8] {
        FrameHeader(type: .data, flags: .segment, destinationVI: 5, sourceVI: 5, payloadLength: UInt32(bytes.count),
                    key: id, messageLength: length, segmentOffset: offset).bytes + bytes
    }

    @Test("a message still being reassembled at shutdown gives its frame back; duplicate segments are ignored")
    func reassemblyEdges() throws {
        let pair = try Pair()
        let raw = RawSocket(bindTo: "127.0.1.1")
        try pair.two.control.establishAndWait(VI(.a, 5), peer: raw.address, remoteVI: 5)
        try pair.two.runAndWait { $0.postReceives(10, on: VI(.a, 5)) }
        let to = pair.address(pair.two, .a)
        // Duplicates: segment 0 twice, then 1: delivered once, intact.
        raw.send(segment(0, of: 200, [UInt8](repeating: 1, count: 100)), to: to)
        raw.send(segment(0, of: 200, [UInt8](repeating: 1, count: 100)), to: to)
        raw.send(segment(100, of: 200, [UInt8](repeating: 2, count: 100)), to: to)
        #expect(waitUntil { pair.seen2.read { $0.received.count } == 1 })
        #expect(pair.seen2.read { $0.received[0].bytes } == [UInt8](repeating: 1, count: 100) + [UInt8](repeating: 2, count: 100))
        #expect(try pair.two.runAndWait { $0.counters(.a).duplicateSegments } == 1)
        // Segments of one message that disagree on its length: abandoned and counted.
        raw.send(segment(0, of: 300, [UInt8](repeating: 3, count: 100), id: 10), to: to)
        raw.send(segment(100, of: 999, [UInt8](repeating: 3, count: 100), id: 10), to: to)
        #expect(waitUntil { (try? pair.two.runAndWait { $0.counters(.a).malformedBadSegment }) == 1 })
        // A message left half-assembled when the engine stops.
        raw.send(segment(0, of: 5000, [UInt8](repeating: 4, count: 1000), id: 11), to: to)
        #expect(waitUntil { (try? pair.two.runAndWait { $0.counters(.a).segmentsIn }) == 6 })  // every segment above, duplicates included
        let (_, r2) = pair.stop()
        #expect(r2.leakedFrames == 0)
        #expect(r2.portA.reassemblyDropped >= 2)
    }

    @Test("frames of mixed sizes sent in one turn keep their order, segmented or not", arguments: PollMode.allCases)
    func orderWithinATurn(mode: PollMode) throws {
        let pair = try Pair {
            $0.pathMTU = 1500
            $0.pollMode = mode
        }
        try pair.connect(.a, 1)
        let sizes = [10, 5000, 20, 30, 16896, 40, 1400, 1500, 50]
        try pair.one.runAndWait { e in
            for (i, n) in sizes.enumerated() {
                var f = e.takeFrame()!
                f.setPayload(pattern(i, size: n))
                try e.send(f, on: VI(.a, 1))
            }
        }
        #expect(waitUntil { pair.seen2.read { $0.received.count } == sizes.count })
        #expect(pair.seen2.read { $0.received.map(\.bytes) } == sizes.enumerated().map { pattern($0.offset, size: $0.element) })
        _ = pair.stop()
    }

    @Test("the right to write into a region does not pass to a later establishment of the same VI")
    func regionRightsEndWithTheVI() throws {
        let pair = try Pair()
        try pair.connect(.a, 1)
        let key = try pair.two.control.registerRegionAndWait(bytes: 4096, writers: [VI(.a, 1)])
        try pair.two.control.teardownAndWait(VI(.a, 1))
        try pair.two.control.establishAndWait(VI(.a, 1), peer: pair.address(pair.one, .a), remoteVI: 1)
        try pair.one.runAndWait { e in
            var f = e.takeFrame()!
            f.setPayload([1, 2, 3])
            try e.rdmaWrite(f, on: VI(.a, 1), region: key, offset: 0)
        }
        #expect(waitUntil { pair.seen1.read { $0.refusals.map(\.error) } == [.wrongPeer] })
        _ = pair.stop()
    }

    @Test("RDMA offsets that overflow and empty gather lists are refused at the sender")
    func senderSideChecks() throws {
        let pair = try Pair()
        try pair.connect(.a, 1)
        let before = try pair.one.runAndWait { $0.pool.available }
        #expect(throws: SendError.offsetOverflow) {
            try pair.one.runAndWait { e in
                var f = e.takeFrame()!
                f.length = 100
                try e.rdmaWrite(f, on: VI(.a, 1), region: RegionKey(rawValue: 1), offset: .max - 10)
            }
        }
        #expect(throws: SendError.emptyGather) {
            try pair.one.runAndWait { e in
                try e.rdmaWrite(e.makeGatherList(), on: VI(.a, 1), region: RegionKey(rawValue: 1), offset: 0, immediate: 1)
            }
        }
        #expect(try pair.one.runAndWait { $0.pool.available } == before, "refused frames went back to the pool")
        _ = pair.stop()
    }
}

/// Sends one frame, gets it back from the kernel, and sends the very same frame again (a
/// retransmission without a copy), `times` times in all, with a new sequence number each time.
final class Resender: EngineDriver {
    let times: Int
    var sent = 0
    let vi: VI
    let done: Observed
    init(vi: VI, times: Int, done: Observed) {
        self.vi = vi
        self.times = times
        self.done = done
    }
    func start(_ engine: Engine) throws {
        var f = engine.takeFrame()!
        f.setPayload(pattern(42, size: 3000))
        try again(f, engine)
    }
    func again(_ frame: consuming Frame, _ engine: Engine) throws {
        sent += 1
        try engine.send(frame, on: vi, fields: ReliabilityFields(sequence: UInt64(sent), acknowledgement: 99, epoch: 7),
                        returnOnCompletion: true)
    }
    func sendCompleted(returning frame: consuming Frame, on vi: VI, result: SendCompletion, engine: Engine) {
        #expect(result == .sent)
        #expect(frame.length == 3000)
        if sent < times { try? again(frame, engine) } else { done.state.withLock { $0.sent = sent } }
    }
}

@Suite("Engine: frames handed back for retransmission", .requiresIOUring)
struct RetransmissionTests {
    @Test("a frame sent with returnOnCompletion comes back intact and can be sent again; header fields travel",
          arguments: PollMode.allCases)
    func resendTheSameFrame(mode: PollMode) throws {
        let done = Observed(), seen = Observed()
        var c1 = EngineConfiguration.loopback(node: 61), c2 = EngineConfiguration.loopback(node: 62)
        c1.pollMode = mode
        c2.pollMode = mode
        let a = try EngineThread.start(c1) { Resender(vi: VI(.b, 3), times: 4, done: done) }
        let b = try EngineThread.start(c2) { RecordingDriver(seen) }
        try a.control.establishAndWait(VI(.b, 3), peer: FabricAddress(b.info.ports[1].address)!, remoteVI: 3)
        try b.control.establishAndWait(VI(.b, 3), peer: FabricAddress(a.info.ports[1].address)!, remoteVI: 3)
        try b.runAndWait { $0.postReceives(10, on: VI(.b, 3)) }
        try a.runAndWait { e in try (e.installedDriver as! Resender).start(e) }
        #expect(waitUntil { seen.read { $0.received.count } == 4 })
        #expect(seen.read { $0.received.allSatisfy { $0.bytes == pattern(42, size: 3000) } })
        #expect(waitUntil { done.read { $0.sent } == 4 })
        // The fields arrive with each copy; the frame is back in the pool once the driver drops it.
        #expect(seen.read { $0.fields } == (1...4).map { ReliabilityFields(sequence: UInt64($0), acknowledgement: 99, epoch: 7) })
        #expect(try a.runAndWait { $0.pool.outstanding } == 0)
        a.stopAndWait()
        b.stopAndWait()
    }
}
