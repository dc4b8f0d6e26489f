import Foundation
import PlexusCore
import PlexusRCLAN
import PlexusTestSupport
import Synchronization
import Testing

/// The bytes of write `i` of a seeded stream: its length (1 … ``RCLAN/maxRDMAWrite``) and
/// contents.
private struct WriteShape {
    let seed: UInt64
    static let slots = 16

    func length(_ i: UInt64) -> Int {
        var g = SplitMix64(seed: seed ^ (i &* 0x9E37_79B9))
        return 1 + Int(g.next() % UInt64(RCLAN.maxRDMAWrite))
    }

    func offset(_ i: UInt64) -> UInt64 { (i % UInt64(Self.slots)) * UInt64(RCLAN.maxRDMAWrite) }

    func fill(_ i: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let n = length(i)
        var g = SplitMix64(seed: seed &+ i)
        var k = 0
        while k < n {
            var word = g.next()
            let take = min(8, n - k)
            withUnsafeBytes(of: &word) { w in
                (buffer.baseAddress! + k).copyMemory(from: w.baseAddress!, byteCount: take)
            }
            k += take
        }
        return n
    }
}

/// Node 1's service: posts `target` RDMA WRITEs into node 2's region, each followed by a
/// message naming it. Engine-thread state; the test reads `report`.
private final class RDMAWriter: RVIDelegate, @unchecked Sendable {
    let shape: WriteShape
    var rvi: RVI?
    var region = RegionKey(rawValue: 0)
    var target: UInt64 = 0
    var next: UInt64 = 0
    var messageOwed = false
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: RCLAN.maxRDMAWrite, alignment: 8)
    struct Report { var posted: UInt64 = 0; var acked: UInt64 = 0; var failed = 0; var refused: [(RDMAError, RDMARefuser)] = [] }
    let report = Mutex(Report())

    init(seed: UInt64) { shape = WriteShape(seed: seed) }
    deinit { scratch.deallocate() }

    func layerTurn(_ layer: RCLAN) {
        guard let rvi else { return }
        while next < target || messageOwed {
            if messageOwed {
                var m = [UInt8](repeating: 0, count: 8)
                m.withUnsafeMutableBytes { $0.storeBytes(of: (next - 1).bigEndian, as: UInt64.self) }
                do { try layer.send(m, on: rvi) } catch { return }
                messageOwed = false
                continue
            }
            let n = shape.fill(next, into: scratch)
            do {
                try layer.rdmaWrite(UnsafeRawBufferPointer(rebasing: scratch[..<n]).bytes, on: rvi, region: region,
                                    offset: shape.offset(next))
            } catch {
                return
            }
            next += 1
            messageOwed = true
            report.withLock { $0.posted = next }
        }
    }

    func acknowledged(on rvi: RVI, through: UInt64, layer: RCLAN) { report.withLock { $0.acked = through } }
    func sendFailed(on rvi: RVI, messages: Range<UInt64>, reason: RVIFailure, layer: RCLAN) {
        report.withLock { $0.failed += messages.count }
    }
    func rdmaWriteRefused(on rvi: RVI, region: RegionKey, offset: UInt64, length: Int, error: RDMAError,
                          by refuser: RDMARefuser, layer: RCLAN) {
        report.withLock { $0.refused.append((error, refuser)) }
    }
}

/// Node 2's service: on each message naming write `i`, checks that write `i`'s bytes are in its
/// region (a write lands before the message posted after it is delivered).
private final class RDMATarget: RVIDelegate, @unchecked Sendable {
    let shape: WriteShape
    var region = RegionKey(rawValue: 0)
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: RCLAN.maxRDMAWrite, alignment: 8)
    struct Report { var checked: UInt64 = 0; var wrong: [UInt64] = []; var outOfOrder = 0; var landed: UInt64 = 0; var refused = 0 }
    let report = Mutex(Report())

    init(seed: UInt64) { shape = WriteShape(seed: seed) }
    deinit { scratch.deallocate() }

    func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        let i = UInt64(bigEndian: message.unsafeLoadUnaligned(as: UInt64.self))
        let n = shape.fill(i, into: scratch)
        let at = Int(shape.offset(i))
        let same = (try? layer.engine.withRegion(region) { r in
            memcmp(r.baseAddress! + at, scratch.baseAddress!, n) == 0
        }) ?? false
        report.withLock { r in
            if i != r.checked { r.outOfOrder += 1 }
            if !same && r.wrong.count < 10 { r.wrong.append(i) }
            r.checked = i + 1
        }
    }

    func rdmaWriteLanded(on rvi: RVI, region: RegionKey, offset: UInt64, length: Int, immediate: UInt32?,
                         layer: RCLAN) {
        report.withLock { $0.landed += 1 }
    }

    func rdmaWriteRefused(on rvi: RVI, region: RegionKey, offset: UInt64, length: Int, error: RDMAError,
                          by refuser: RDMARefuser, layer: RCLAN) {
        report.withLock { $0.refused += 1 }
    }
}

@Suite("RDMA WRITE over redundant VIs", .serialized, .requiresIOUring)
struct RVIRDMATests {
    private static func pair(seed: UInt64, configure: (inout EngineConfiguration) -> Void = { _ in })
        throws -> (EngineThread, EngineThread, RDMAWriter, RDMATarget)
    {
        var c1 = EngineConfiguration.loopback(node: 1), c2 = EngineConfiguration.loopback(node: 2)
        configure(&c1)
        configure(&c2)
        let writer = RDMAWriter(seed: seed), target = RDMATarget(seed: seed)
        let one = try EngineThread.start(c1) { RCLAN(delegate: writer) }
        let two = try EngineThread.start(c2) { RCLAN(delegate: target) }
        let toTwo = RVIPath(localA: 1, localB: 1, peerA: RVIPair.address(two, .a), peerB: RVIPair.address(two, .b),
                            remoteA: 1, remoteB: 1)
        let toOne = RVIPath(localA: 1, localB: 1, peerA: RVIPair.address(one, .a), peerB: RVIPair.address(one, .b),
                            remoteA: 1, remoteB: 1)
        let rvi = try one.runAndWait { e in try RCLAN.on(e)!.open(toTwo) }
        let key = try two.runAndWait { e in
            let layer = RCLAN.on(e)!
            let r = try layer.open(toOne)
            return try layer.registerRegion(bytes: WriteShape.slots * RCLAN.maxRDMAWrite, writers: [r])
        }
        target.region = key
        try one.runAndWait { _ in
            writer.region = key
            writer.rvi = rvi
        }
        return (one, two, writer, target)
    }

    @Test("writes land in order with the messages around them, through loss and a dead fabric, none lost or refused")
    func writesThroughFaults() throws {
        let count: UInt64 = 4_000
        let seed: UInt64 = 0xD1A
        let (one, two, writer, target) = try Self.pair(seed: seed)
        defer {
            _ = one.stopAndWait()
            _ = two.stopAndWait()
        }
        for t in [one, two] {
            try t.control.setFaultsAndWait(FaultPlan(seed: 5, dropPercent: 2, reorderPercent: 2), on: .a)
            try t.control.setFaultsAndWait(FaultPlan(seed: 6, dropPercent: 2), on: .b)
        }
        try one.runAndWait { _ in writer.target = count }
        #expect(waitUntil(seconds: 30) { target.report.withLock { $0.checked } >= count / 3 })
        // Fabric A dies under the stream, then comes back.
        for t in [one, two] { try t.control.setFaultsAndWait(FaultPlan(down: true), on: .a) }
        #expect(waitUntil(seconds: 30) { target.report.withLock { $0.checked } >= 2 * count / 3 })
        for t in [one, two] { try t.control.setFaultsAndWait(nil, on: .a) }
        let done = waitUntil(seconds: 60) {
            target.report.withLock { $0.checked } == count && writer.report.withLock { $0.acked } == 2 * count
        }
        let w = writer.report.withLock { $0 }, r = target.report.withLock { $0 }
        let s1 = try one.runAndWait { e in RCLAN.on(e)!.statistics(RVI(id: 0))! }
        let s2 = try two.runAndWait { e in RCLAN.on(e)!.statistics(RVI(id: 0))! }
        print("RDMA over an RVI: seed \(seed), \(count) writes of 1 to \(RCLAN.maxRDMAWrite) bytes, each followed by a message, "
              + "2 % loss on both fabrics and fabric A down for a third of the run; \(r.checked) checked in place at their "
              + "message, \(r.wrong.count) wrong, \(r.landed) landed, \(s1.retransmissions) retransmissions, "
              + "\(s2.rdmaBytesLanded) bytes landed")
        #expect(done)
        #expect(r.checked == count && r.wrong.isEmpty && r.outOfOrder == 0)
        #expect(r.landed == count && r.refused == 0 && w.refused.isEmpty && w.failed == 0)
        #expect(s1.rdmaWritesOut == count && s2.rdmaWritesLanded == count && s2.rdmaWritesRefused == 0)
        #expect(s1.rdmaBytesOut == s2.rdmaBytesLanded)
        #expect(s1.retransmissions > 0, "the faults should have cost retransmissions")
    }

    @Test("writes travel in segments over a 1500-byte path MTU and land whole")
    func writesInSegments() throws {
        let count: UInt64 = 1_000
        let (one, two, writer, target) = try Self.pair(seed: 77) { $0.pathMTU = 1500 }
        defer {
            _ = one.stopAndWait()
            _ = two.stopAndWait()
        }
        try one.runAndWait { _ in writer.target = count }
        let done = waitUntil(seconds: 60) { target.report.withLock { $0.checked } == count }
        let r = target.report.withLock { $0 }
        #expect(done)
        #expect(r.wrong.isEmpty && r.outOfOrder == 0 && r.landed == count)
    }

    @Test("a write with a bad key, past the region's end or into a region without write permission lands nothing; both ends hear of it, in order")
    func refusals() throws {
        let (one, two, writer, target) = try Self.pair(seed: 9)
        defer {
            _ = one.stopAndWait()
            _ = two.stopAndWait()
        }
        let size = WriteShape.slots * RCLAN.maxRDMAWrite
        let readOnly = try two.runAndWait { e in
            try RCLAN.on(e)!.registerRegion(bytes: 4096, writers: [RVI(id: 0)], permissions: [])
        }
        let badKey = RegionKey(rawValue: target.region.rawValue ^ 0x0010_0000)
        let bytes = [UInt8](repeating: 0xAB, count: 200)
        let good = [UInt8](repeating: 0x5C, count: 300)
        try one.runAndWait { e in
            let layer = RCLAN.on(e)!
            let rvi = RVI(id: 0)
            try layer.rdmaWrite(bytes.span.bytes, on: rvi, region: badKey, offset: 0)
            try layer.rdmaWrite(bytes.span.bytes, on: rvi, region: target.region, offset: UInt64(size - 100))
            try layer.rdmaWrite(bytes.span.bytes, on: rvi, region: readOnly, offset: 0)
            try layer.rdmaWrite(good.span.bytes, on: rvi, region: target.region, offset: 1000)
            #expect(throws: RVISendError.tooLarge) {
                try layer.rdmaWrite([UInt8](repeating: 0, count: RCLAN.maxRDMAWrite + 1).span.bytes, on: rvi,
                                    region: target.region, offset: 0)
            }
            #expect(throws: RVISendError.offsetOverflow) {
                try layer.rdmaWrite(bytes.span.bytes, on: rvi, region: target.region, offset: UInt64.max - 10)
            }
        }
        let heard = waitUntil(seconds: 10) {
            writer.report.withLock { $0.refused.count } == 3 && target.report.withLock { $0.landed } == 1
        }
        #expect(heard)
        let w = writer.report.withLock { $0 }, r = target.report.withLock { $0 }
        #expect(w.refused.map(\.0) == [.badKey, .outOfBounds, .noPermission])
        #expect(w.refused.allSatisfy { $0.1 == .peer })
        #expect(r.refused == 3 && r.landed == 1)
        let (landed, tail, locked) = try two.runAndWait { e in
            let layer = RCLAN.on(e)!
            let landed = try e.withRegion(target.region) { Array($0[1000..<1300]) }
            let tail = try e.withRegion(target.region) { Array($0[(size - 100)...]) }
            let locked = try e.withRegion(readOnly) { Array($0) }
            _ = layer
            return (landed, tail, locked)
        }
        #expect(landed == good)
        #expect(tail.allSatisfy { $0 == 0 } && locked.allSatisfy { $0 == 0 }, "a refused write landed bytes")
        let s2 = try two.runAndWait { e in RCLAN.on(e)!.statistics(RVI(id: 0))! }
        let s1 = try one.runAndWait { e in RCLAN.on(e)!.statistics(RVI(id: 0))! }
        #expect(s2.rdmaWritesRefused == 3 && s2.rdmaWritesLanded == 1 && s1.rdmaRefusalsReceived == 3)
        #expect(s2.malformedDropped == 0 && s1.malformedDropped == 0)
    }

    @Test("the trailer round-trips, and malformed trailers are refused")
    func trailer() {
        var buf = [UInt8](repeating: 0, count: 10 + RDMATrailer.size)
        let t = RDMATrailer(kind: .write, region: RegionKey(rawValue: 0x1234_5678), offset: 1 << 40, immediate: 7,
                            length: 10)
        buf.withUnsafeMutableBytes { t.store(into: $0, at: 10) }
        #expect(RDMATrailer(parsing: buf.span.bytes) == t)
        var refusal = [UInt8](repeating: 0, count: RDMATrailer.size)
        let r = RDMATrailer(kind: .refusal, region: RegionKey(rawValue: 9), offset: 4, error: .outOfBounds, length: 200)
        refusal.withUnsafeMutableBytes { r.store(into: $0, at: 0) }
        #expect(RDMATrailer(parsing: refusal.span.bytes) == r)
        let cases: [(String, ([UInt8]) -> [UInt8])] = [
            ("shorter than a trailer", { Array($0.prefix(RDMATrailer.size - 1)) }),
            ("unknown kind", { var b = $0; b[b.count - 16] = 3; return b }),
            ("unknown flag", { var b = $0; b[b.count - 15] |= 2; return b }),
            ("reserved bytes", { var b = $0; b[b.count - 14] = 1; return b }),
            ("immediate data without the immediate flag", { var b = $0; b[b.count - 15] = 0; return b }),
            ("trailing reserved word", { var b = $0; b[b.count - 1] = 1; return b }),
            ("a length that is not the bytes before the trailer", { var b = $0; b[b.count - 5] = 11; return b }),
            ("an error code on a write", { var b = $0; b[b.count - 9] = 1; return b }),
        ]
        for (name, damage) in cases {
            #expect(RDMATrailer(parsing: damage(buf).span.bytes) == nil, "\(name)")
        }
        let refusalCases: [(String, ([UInt8]) -> [UInt8])] = [
            ("bytes before a refusal's trailer", { [0] + $0 }),
            ("an unknown error code", { var b = $0; b[b.count - 9] = 99; return b }),
            ("an immediate on a refusal", { var b = $0; b[b.count - 15] = 1; return b }),
        ]
        for (name, damage) in refusalCases {
            #expect(RDMATrailer(parsing: damage(refusal).span.bytes) == nil, "\(name)")
        }
    }
}
