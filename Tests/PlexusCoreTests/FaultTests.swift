import Foundation
import PlexusCore
import PlexusTestSupport
import Testing

@Suite("Fault layer under the fabrics", .requiresIOUring)
struct FaultTests {
    /// Sends `n` numbered frames from node 1 to node 2 on `vi`, 64 at a time, letting each
    /// window settle (arrive, or be counted as dropped by the fault layer) before the next: the
    /// fabric core has no credits, so a starved receiver would otherwise lose frames in its socket.
    func stream(_ pair: Pair, _ vi: VI, count n: Int, size: Int = 200) throws {
        var i = 0
        while i < n {
            let from = i
            i = try pair.one.runAndWait { e -> Int in
                var k = from
                while k < n, k < from + 64, var f = e.takeFrame() {
                    f.setPayload(withUnsafeBytes(of: UInt32(k).littleEndian, Array.init) + pattern(k, size: size - 4))
                    try e.send(f, on: vi)
                    k += 1
                }
                return k
            }
            if i < n {
                let sent = i
                _ = waitUntil(seconds: 5) {
                    let lost = (try? pair.one.runAndWait { Int($0.counters(vi.fabric).faultDropped) }) ?? 0
                    let refused = (try? pair.two.runAndWait { Int($0.counters(vi.fabric).faultDropped) }) ?? 0
                    return pair.seen2.read { $0.received.count } + lost + refused >= sent
                }
            }
        }
    }

    func numbers(_ seen: Observed) -> [UInt32] {
        seen.read { $0.received.map { r in r.bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) } } }
    }

    @Test("plans parse, print, and refuse nonsense with a message naming the fault")
    func parsing() throws {
        let p = try FaultPlan(parsing: "drop=5%,dup=1,reorder=2,delay=1500us,seed=42,partition=127.0.1.2:7000+127.0.1.3:7001")
        #expect(p.dropPercent == 5 && p.duplicatePercent == 1 && p.reorderPercent == 2 && p.seed == 42)
        #expect(p.delay == .microseconds(1500))
        #expect(p.partitioned == [FabricAddress("127.0.1.2:7000")!, FabricAddress("127.0.1.3:7001")!])
        #expect(try FaultPlan(parsing: p.description) == p)
        #expect(try FaultPlan(parsing: "down").down)
        for bad in ["drop=150", "drop", "delay=5", "delay=20s", "seed=x", "partition=nope", "jitter=3"] {
            #expect { try FaultPlan(parsing: bad) } throws: { ($0 as? PlexusError)?.message.contains(bad.split(separator: "=").first!) == true }
        }
    }

    @Test("a seeded drop plan loses the same frames every run, and counts them")
    func seededDrops() throws {
        var runs: [[UInt32]] = []
        for _ in 0..<2 {
            let pair = try Pair()
            try pair.connect(.a, 1)
            try pair.one.control.setFaultsAndWait(FaultPlan(seed: 7, dropPercent: 30), on: .a)
            try stream(pair, VI(.a, 1), count: 1000)
            let dropped = try pair.one.runAndWait { $0.counters(.a).faultDropped }
            #expect(waitUntil { pair.seen2.read { $0.received.count } == 1000 - Int(dropped) })
            #expect(dropped > 200 && dropped < 400, "30 % of 1000, seeded")
            #expect(waitUntil { pair.seen1.read { $0.sent } == 1000 })  // to the sender a lost frame was sent
            runs.append(numbers(pair.seen2))
            let (r1, _) = pair.stop()
            #expect(r1.leakedFrames == 0)
        }
        #expect(runs[0] == runs[1], "the same seed loses the same frames")
        #expect(runs[0] == runs[0].sorted(), "dropping reorders nothing")
        print("fault drops: 1000 sent, \(1000 - runs[0].count) dropped, identical across 2 runs")
    }

    @Test("duplication delivers frames twice; reordering lets later frames overtake; delay holds frames back")
    func duplicateReorderDelay() throws {
        let pair = try Pair()
        try pair.connect(.b, 1)
        try pair.one.control.setFaultsAndWait(FaultPlan(seed: 3, duplicatePercent: 100), on: .b)
        try stream(pair, VI(.b, 1), count: 100)
        #expect(waitUntil { pair.seen2.read { $0.received.count } == 200 })
        #expect(Dictionary(grouping: numbers(pair.seen2), by: { $0 }).values.allSatisfy { $0.count == 2 })
        #expect(try pair.one.runAndWait { $0.counters(.b).faultDuplicated } == 100)

        pair.seen2.state.withLock { $0.received.removeAll() }
        try pair.one.control.setFaultsAndWait(FaultPlan(seed: 3, reorderPercent: 20), on: .b)
        try stream(pair, VI(.b, 1), count: 500)
        #expect(waitUntil { pair.seen2.read { $0.received.count } == 500 })
        let got = numbers(pair.seen2)
        #expect(Set(got) == Set(0..<500), "every frame arrives")
        #expect(got != Array(0..<500), "and some arrive out of order")

        pair.seen2.state.withLock { $0.received.removeAll() }
        try pair.one.control.setFaultsAndWait(FaultPlan(delay: .milliseconds(30)), on: .b)
        let t0 = Date()
        try stream(pair, VI(.b, 1), count: 1)
        #expect(waitUntil { pair.seen2.read { $0.received.count } == 1 })
        #expect(Date().timeIntervalSince(t0) >= 0.029)
        let (r1, _) = pair.stop()
        #expect(r1.leakedFrames == 0)
    }

    @Test("a leg taken down carries nothing either way until it comes back up; a partition cuts one peer only")
    func downAndPartition() throws {
        let pair = try Pair()
        try pair.connect(.a, 1)
        try pair.connect(.b, 1)
        // Down on node 2's side only: node 1's frames are refused on arrival.
        try pair.two.control.setFaultsAndWait(FaultPlan(down: true), on: .a)
        try stream(pair, VI(.a, 1), count: 50)
        try stream(pair, VI(.b, 1), count: 50)
        #expect(waitUntil { pair.seen2.read { $0.received.count } == 50 })
        #expect(waitUntil { (try? pair.two.runAndWait { $0.counters(.a).faultDropped }) == 50 })
        #expect(pair.seen2.read { $0.received.allSatisfy { $0.vi.fabric == .b } })
        try pair.two.control.setFaultsAndWait(nil, on: .a)
        try stream(pair, VI(.a, 1), count: 10)
        #expect(waitUntil { pair.seen2.read { $0.received.count } == 60 })

        // Partition node 1 from node 2 on fabric B, set at node 1: nothing leaves towards node 2.
        let peer = pair.address(pair.two, .b)
        try pair.one.control.setFaultsAndWait(FaultPlan(partitioned: [peer]), on: .b)
        try stream(pair, VI(.b, 1), count: 20)
        #expect(waitUntil { (try? pair.one.runAndWait { $0.counters(.b).faultDropped }) == 20 })
        #expect(pair.seen2.read { $0.received.count } == 60)
        _ = pair.stop()
    }
}
