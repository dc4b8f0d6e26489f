import Foundation
import CPlexus
import PlexusCore
import PlexusRCLAN
import PlexusTestSupport
import Synchronization
import Testing

/// Records what the layer tells it about every RVI: messages delivered, events with their time.
final class PairRecorder: RVIDelegate, @unchecked Sendable {
    struct Seen: Sendable {
        var delivered: [UInt32: Int] = [:]
        var events: [(rvi: UInt32, at: UInt64, event: RVIEvent)] = []
        var failed = 0
    }

    let seen = Mutex(Seen())

    func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        seen.withLock { $0.delivered[rvi.id, default: 0] += 1 }
    }

    func event(_ event: RVIEvent, on rvi: RVI, layer: RCLAN) {
        let now = nowNanos()
        seen.withLock { $0.events.append((rvi.id, now, event)) }
    }

    func sendFailed(on rvi: RVI, messages: Range<UInt64>, reason: RVIFailure, layer: RCLAN) {
        seen.withLock { $0.failed += messages.count }
    }

    func delivered(_ rvi: UInt32) -> Int { seen.withLock { $0.delivered[rvi] ?? 0 } }

    /// When the first `.unusable` of `rvi` at or after `since` was reported.
    func unusable(_ rvi: UInt32, since: UInt64) -> UInt64? {
        seen.withLock { s in
            s.events.first { $0.rvi == rvi && $0.at >= since && $0.event == .unusable }?.at
        }
    }
}

/// Two engines on loopback joined by `count` RVIs (VI numbers 1 … count at both ends).
struct PairOfNodes {
    let one: EngineThread
    let two: EngineThread
    let recorderOne = PairRecorder()
    let recorderTwo = PairRecorder()
    let count: Int

    init(count: Int, liveness: RVILiveness, layer: RCLANConfiguration = RCLANConfiguration()) throws {
        self.count = count
        let r1 = recorderOne, r2 = recorderTwo
        one = try EngineThread.start(.loopback(node: 1)) { try! RCLAN(configuration: layer, delegate: r1) }
        two = try EngineThread.start(.loopback(node: 2)) { try! RCLAN(configuration: layer, delegate: r2) }
        for (me, peer) in [(one, two), (two, one)] {
            let a = RVIPair.address(peer, .a), b = RVIPair.address(peer, .b)
            try me.runAndWait { e in
                let layer = RCLAN.on(e)!
                for v in 1...UInt32(count) {
                    _ = try layer.open(RVIPath(localA: v, localB: v, peerA: a, peerB: b, remoteA: v, remoteB: v),
                                       liveness: liveness)
                }
            }
        }
    }

    /// Sends one small message on every RVI, from node one.
    func sendOnEach() throws {
        try one.runAndWait { e in
            let layer = RCLAN.on(e)!
            for rvi in layer.openRVIs { try layer.send([1, 2, 3, 4], on: rvi) }
        }
    }

    func totals(_ t: EngineThread) throws -> LivenessTotals {
        try t.runAndWait { RCLAN.on($0)!.livenessTotals }
    }

    /// Probes every RVI of `t` sent, one by one (each RVI's own count, both legs).
    func probesPerRVI(_ t: EngineThread) throws -> [UInt64] {
        try t.runAndWait { e in
            let layer = RCLAN.on(e)!
            return layer.openRVIs.map { layer.statistics($0)!.legs.reduce(0) { $0 + $1.heartbeatsOut } }
        }
    }

    func pair(_ t: EngineThread) throws -> PairStatistics {
        try t.runAndWait { e in RCLAN.on(e)!.pairStatistics(of: RVI(id: 0))! }
    }

    func stop() {
        _ = one.stopAndWait()
        _ = two.stopAndWait()
    }
}

@Suite("Idle RVIs and liveness per node pair", .serialized, .requiresIOUring)
struct PairLivenessTests {
    @Test("32 idle RVIs between two nodes share one probe per leg and interval, hold no windows, and a message on any of them still arrives")
    func idleRVIsShareTheirPair() throws {
        let nodes = try PairOfNodes(count: 32, liveness: .watched)
        defer { nodes.stop() }
        try nodes.sendOnEach()
        #expect(waitUntil(seconds: 10) { (1...32).allSatisfy { nodes.recorderTwo.delivered(UInt32($0 - 1)) == 1 } })
        // Idle for idleAfter (200 ms): every RVI gives its windows back, at both ends.
        #expect(waitUntil(seconds: 5) {
            ((try? nodes.totals(nodes.one).rvisWithWindows) ?? -1) == 0 && ((try? nodes.totals(nodes.two).rvisWithWindows) ?? -1) == 0
        })
        // Both ends' probes: usually one end probes and the other only echoes (an echo is a frame
        // sent on the leg, so that end's own probe is not due).
        let pair0 = try nodes.pair(nodes.one), rvis0 = try nodes.probesPerRVI(nodes.one)
        let peer0 = try nodes.pair(nodes.two), peerRVIs0 = try nodes.probesPerRVI(nodes.two)
        let started = nowNanos()
        usleep(500_000)  // the idle interval being measured, not a wait for a condition
        let pair1 = try nodes.pair(nodes.one), rvis1 = try nodes.probesPerRVI(nodes.one)
        let peer1 = try nodes.pair(nodes.two), peerRVIs1 = try nodes.probesPerRVI(nodes.two)
        let seconds = Double(nowNanos() - started) / 1e9
        let pairProbes = (pair1.probes.a - pair0.probes.a) + (pair1.probes.b - pair0.probes.b)
        let peerProbes = (peer1.probes.a - peer0.probes.a) + (peer1.probes.b - peer0.probes.b)
        let perRVI = zip(rvis1, rvis0).map { $0 - $1 }
        let peerPerRVI = zip(peerRVIs1, peerRVIs0).map { $0 - $1 }
        let probingRVIs = perRVI.filter { $0 > 0 }.count + peerPerRVI.filter { $0 > 0 }.count
        let t1 = try nodes.totals(nodes.one)
        print("pair liveness: 32 RVIs, idle \(String(format: "%.2f", seconds)) s: the two ends sent \(pairProbes) and \(peerProbes) probes "
              + "(\(String(format: "%.0f", Double(pairProbes + peerProbes) / seconds))/s over both legs), through \(probingRVIs) RVI(s); "
              + "pairs \(t1.pairs), RVIs with windows \(t1.rvisWithWindows), interval \(pair1.probeIntervalMilliseconds ?? -1) ms")
        #expect(pair1.rvis == 32 && pair1.watched && !pair1.active)
        #expect(pair1.probeIntervalMilliseconds == 5)
        #expect(t1.pairs == 1)
        // One probe per leg and 5 ms at most (the peer's echoes count as this end's silence
        // broken, so often fewer); 32 RVIs probing each at a heartbeat would be 64000/s.
        #expect(pairProbes <= UInt64(2 * seconds * 1000 / 5) + 4 && peerProbes <= UInt64(2 * seconds * 1000 / 5) + 4)
        #expect(pairProbes + peerProbes > 0)
        #expect(perRVI.reduce(0, +) == pairProbes && peerPerRVI.reduce(0, +) == peerProbes,
                "every probe goes through an RVI of the pair")
        #expect(probingRVIs <= 2, "at each end, one RVI of the pair carries its probes")
        // A message on an RVI that gave its windows back arrives, and the RVI took them again:
        // a spare one the layer kept, so waking it allocated nothing.
        #expect(t1.spareWindows == 32)
        let before = try nodes.one.runAndWait { RCLAN.on($0)!.statistics(RVI(id: 17))!.windowAllocations }
        try nodes.one.runAndWait { e in _ = try RCLAN.on(e)!.send([9, 9], on: RVI(id: 17)) }
        #expect(waitUntil(seconds: 5) { nodes.recorderTwo.delivered(17) == 2 })
        let after = try nodes.one.runAndWait { RCLAN.on($0)!.statistics(RVI(id: 17))!.windowAllocations }
        let t2 = try nodes.totals(nodes.one)
        #expect(after == before + 1)
        #expect(t2.windowsAllocated == t1.windowsAllocated && t2.windowsReused == t1.windowsReused + 1)
        #expect(nodes.recorderOne.seen.withLock { $0.failed } == 0)
    }

    @Test("an idle watched pair finds its peer silent within the failover detection budget")
    func watchedPairDetectsSilence() throws {
        let nodes = try PairOfNodes(count: 4, liveness: .watched)
        defer { nodes.stop() }
        try nodes.sendOnEach()
        #expect(waitUntil(seconds: 10) { (0..<4).allSatisfy { nodes.recorderTwo.delivered(UInt32($0)) == 1 } })
        #expect(waitUntil(seconds: 5) { ((try? nodes.pair(nodes.one).active) ?? true) == false })
        let cut = nowNanos()
        for f in [Fabric.a, .b] { try nodes.two.control.setFaultsAndWait(FaultPlan(down: true), on: f) }
        #expect(waitUntil(seconds: 5) { (0..<4).allSatisfy { nodes.recorderOne.unusable(UInt32($0), since: cut) != nil } })
        let detected = (0..<4).compactMap { nodes.recorderOne.unusable(UInt32($0), since: cut) }.map { Double($0 - cut) / 1e6 }
        print("pair liveness: peer silenced while idle; every RVI of the pair unusable after "
              + detected.map { String(format: "%.1f", $0) }.joined(separator: ", ") + " ms (4 × 5 missed probes of 5 ms: 100 ms)")
        #expect(detected.count == 4)
        // Not before both legs were silent for the dead-leg time, and within the budget.
        #expect(detected.allSatisfy { $0 >= 25 && $0 <= 250 })
    }

    @Test("an idle on-demand pair sends no probes (no keepalive by default), and is judged at heartbeat pace as soon as it carries a message")
    func onDemandPairIsJudgedWithTraffic() throws {
        let nodes = try PairOfNodes(count: 2, liveness: .onDemand)
        defer { nodes.stop() }
        try nodes.sendOnEach()
        #expect(waitUntil(seconds: 10) { nodes.recorderTwo.delivered(0) == 1 && nodes.recorderTwo.delivered(1) == 1 })
        #expect(waitUntil(seconds: 5) { ((try? nodes.pair(nodes.one).active) ?? true) == false })
        let p0 = try nodes.pair(nodes.one)
        usleep(500_000)  // the idle interval being measured
        let p1 = try nodes.pair(nodes.one)
        let idleProbes = (p1.probes.a - p0.probes.a) + (p1.probes.b - p0.probes.b)
        #expect(p1.probeIntervalMilliseconds == nil)
        #expect(idleProbes == 0, "an idle on-demand pair sends nothing")
        // The peer falls silent; nothing notices while idle. A message goes: within the
        // heartbeat-pace budget (4 × 5 ms of silence on both legs) the RVI is unusable.
        for f in [Fabric.a, .b] { try nodes.two.control.setFaultsAndWait(FaultPlan(down: true), on: f) }
        usleep(100_000)  // silence that an idle on-demand pair does not judge
        #expect(nodes.recorderOne.unusable(0, since: 0) == nil)
        let sent = nowNanos()
        try nodes.one.runAndWait { e in _ = try RCLAN.on(e)!.send([7], on: RVI(id: 0)) }
        #expect(waitUntil(seconds: 5) { nodes.recorderOne.unusable(0, since: sent) != nil })
        let ms = nodes.recorderOne.unusable(0, since: sent).map { Double($0 - sent) / 1e6 } ?? -1
        print(String(format: "pair liveness: on-demand pair idle, %d probes in 0.5 s; peer silenced, a message sent: unusable after %.1f ms", idleProbes, ms))
        #expect(ms >= 5 && ms <= 100)
        // The peer answers again: the message arrives, nothing lost.
        for f in [Fabric.a, .b] { try nodes.two.control.setFaultsAndWait(nil, on: f) }
        #expect(waitUntil(seconds: 10) { nodes.recorderTwo.delivered(0) == 2 })
        #expect(nodes.recorderOne.seen.withLock { $0.failed } == 0)
    }

    @Test("a pair that wakes from idle hundreds of times (a message every 7 ms) keeps ticking: nothing lost, the engine's timers never run out")
    func wakingManyTimes() throws {
        let nodes = try PairOfNodes(count: 1, liveness: .onDemand)
        defer { nodes.stop() }
        let rounds = 300
        for k in 0..<rounds {
            try nodes.one.runAndWait { e in _ = try RCLAN.on(e)!.send([UInt8(k & 0xFF)], on: RVI(id: 0)) }
            usleep(7_000)  // pacing the sender (the point of the test), not a wait for a condition
        }
        #expect(waitUntil(seconds: 10) { nodes.recorderTwo.delivered(0) == rounds })
        // Still ticking afterwards: the peer silenced and a message sent are judged.
        for f in [Fabric.a, .b] { try nodes.two.control.setFaultsAndWait(FaultPlan(down: true), on: f) }
        let sent = nowNanos()
        try nodes.one.runAndWait { e in _ = try RCLAN.on(e)!.send([1], on: RVI(id: 0)) }
        #expect(waitUntil(seconds: 5) { nodes.recorderOne.unusable(0, since: sent) != nil })
        print("pair liveness: \(rounds) messages 7 ms apart on an on-demand pair, delivered \(nodes.recorderTwo.delivered(0)); still judged afterwards")
    }
}

@Suite("What an RVI costs in memory", .serialized, .requiresIOUring)
struct RVIMemoryTests {
    /// Bytes the process has allocated with malloc now (glibc's count of bytes in use).
    static func allocatedBytes() -> Int { Int(plx_malloc_in_use()) }

    @Test("an idle RVI holds its identity only (a few KiB); one carrying traffic holds its windows besides")
    func idleRVIMemory() throws {
        let engine = try EngineThread.start(.loopback(node: 1)) { RCLAN(delegate: PairRecorder()) }
        defer { _ = engine.stopAndWait() }
        let peer = FabricAddress(ip: 0x7F00_0001, port: 9)  // nobody: the RVIs stay idle
        let count = 512  // each message holds a pool frame (1024) until the turn ends
        let (idle, withWindows, window) = try engine.runAndWait { e -> (Int, Int, Int) in
            let layer = RCLAN.on(e)!
            let before = Self.allocatedBytes()
            for v in 1...UInt32(count) {
                _ = try layer.open(RVIPath(localA: v, localB: v, peerA: peer, peerB: peer, remoteA: v, remoteB: v))
            }
            let opened = Self.allocatedBytes()
            // One message on each: every RVI allocates its send and receive windows.
            for rvi in layer.openRVIs { try layer.send([1], on: rvi) }
            let sent = Self.allocatedBytes()
            let w = layer.livenessTotals.rvisWithWindows
            for rvi in layer.openRVIs { layer.close(rvi) }
            return ((opened - before) / count, (sent - before) / count, w)
        }
        print("RVI memory: \(count) idle RVIs: \(idle) bytes each (malloc); with their windows (256 frames each way): \(withWindows) bytes each; \(window) held windows")
        #expect(window == count)
        #expect(idle > 0 && idle < 8 * 1024)
        #expect(withWindows > idle + 16 * 1024)
    }
}
