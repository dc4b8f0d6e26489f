import Foundation
import PlexusCore
import PlexusTestSupport
import PlexusRCLAN
import Testing

@Suite("Redundant VIs", .serialized, .requiresIOUring)
struct RVITests {
    @Test("messages of 1 to 16896 bytes arrive exactly once and in order, both ways, over both legs")
    func bothWays() throws {
        let pair = try RVIPair(seed: 11)
        try pair.send(20_000, from: pair.one)
        try pair.send(20_000, from: pair.two)
        let done = waitUntil(seconds: 60) {
            pair.streamTwo.read().delivered == 20_000 && pair.streamOne.read().delivered == 20_000
                && pair.streamOne.read().ackedThrough == 20_000 && pair.streamTwo.read().ackedThrough == 20_000
        }
        let r1 = pair.streamOne.read(), r2 = pair.streamTwo.read()
        let s1 = try pair.statistics(pair.one)
        _ = pair.stop()
        print("RVI both ways: seed 11, 2 × 20000 messages checked; delivered \(r2.delivered) and \(r1.delivered), "
              + "corrupt \(r1.corrupt + r2.corrupt), out of order \(r1.outOfOrder + r2.outOfOrder), duplicated "
              + "\(r1.duplicated + r2.duplicated); frames out \(s1.framesOut) for \(s1.messagesOut) messages")
        #expect(done)
        for r in [r1, r2] {
            #expect(r.delivered == 20_000)
            #expect(r.corrupt == 0 && r.outOfOrder == 0 && r.duplicated == 0, "\(r.firstError ?? "")")
            #expect(r.failed.isEmpty)
        }
        // Both legs carried data, and coalescing put several messages in a frame.
        #expect(s1.legs[0].framesOut > 100 && s1.legs[1].framesOut > 100)
        #expect(s1.framesOut < s1.messagesOut)
    }
}

/// A seed and a message count for the stress tests: `PLEXUS_STRESS_SEED` and
/// `PLEXUS_STRESS_MESSAGES` override the short CI defaults (`make stress` runs the long version).
func stressParameters(defaultCount: UInt64) -> (seed: UInt64, count: UInt64) {
    let env = ProcessInfo.processInfo.environment
    let seed = env["PLEXUS_STRESS_SEED"].flatMap { UInt64($0) } ?? 20_261_123
    let count = env["PLEXUS_STRESS_MESSAGES"].flatMap { UInt64($0) } ?? defaultCount
    return (seed, count)
}


@Suite("Redundant VIs under faults", .serialized, .requiresIOUring)
struct RVIFaultTests {
    @Test("stress: leg A loses 5 %, leg B 1 %, both reorder and duplicate, legs flap; nothing lost or doubled")
    func stress() throws {
        let (seed, count) = stressParameters(defaultCount: 100_000)
        let pair = try RVIPair(seed: seed)
        let planA = FaultPlan(seed: seed, dropPercent: 5, duplicatePercent: 1, reorderPercent: 2)
        let planB = FaultPlan(seed: seed &+ 1, dropPercent: 1, duplicatePercent: 1, reorderPercent: 2)
        for t in [pair.one, pair.two] {
            try pair.faults(t, .a, planA)
            try pair.faults(t, .b, planB)
        }
        try pair.send(count, from: pair.one)
        try pair.send(count, from: pair.two)
        // Flap the legs in a seeded pattern while the streams run: one leg at a time goes down
        // for 5–30 ms, then both are up for 20–60 ms.
        var g = SplitMix64(seed: seed)
        var flaps = 0
        let finished = { pair.streamOne.read().delivered == count && pair.streamTwo.read().delivered == count }
        let deadline = nowNanos() + 300_000_000_000
        while !finished() && nowNanos() < deadline {
            let leg: Fabric = g.next() % 2 == 0 ? .a : .b
            var down = leg == .a ? planA : planB
            down.down = true
            for t in [pair.one, pair.two] { try pair.faults(t, leg, down) }
            _ = waitUntil(seconds: Double(5 + g.next() % 26) / 1000, finished)
            for t in [pair.one, pair.two] { try pair.faults(t, leg, leg == .a ? planA : planB) }
            flaps += 1
            _ = waitUntil(seconds: Double(20 + g.next() % 41) / 1000, finished)
        }
        let done = waitUntil(seconds: 60 + Double(count) / 10_000) {
            finished() && pair.streamOne.read().ackedThrough == count && pair.streamTwo.read().ackedThrough == count
        }
        let r1 = pair.streamOne.read(), r2 = pair.streamTwo.read()
        let s1 = try pair.statistics(pair.one), s2 = try pair.statistics(pair.two)
        let (rep1, rep2) = pair.stop()
        print("""
            RVI stress: seed \(seed), \(2 * count) messages checked (1–16896 B), \(flaps) flaps; \
            lost \(2 * count - r1.delivered - r2.delivered), duplicated \(r1.duplicated + r2.duplicated), \
            out of order \(r1.outOfOrder + r2.outOfOrder), corrupt \(r1.corrupt + r2.corrupt); \
            retransmissions \(s1.retransmissions + s2.retransmissions), duplicates dropped by the RVIs \
            \(s1.duplicatesDropped + s2.duplicatesDropped); fault layer dropped \
            \(rep1.portA.faultDropped + rep2.portA.faultDropped) on A and \(rep1.portB.faultDropped + rep2.portB.faultDropped) on B
            """)
        #expect(done)
        expectClean(r1, count, "node 1 received")
        expectClean(r2, count, "node 2 received")
        #expect(s1.retransmissions + s2.retransmissions > 0)
        // The fault layer acted on both legs. (Which leg dropped more is not asserted: the seeded
        // flaps take a leg down for a time that depends on the machine, and a down leg drops all.)
        #expect(rep1.portA.faultDropped + rep2.portA.faultDropped > 0 && rep1.portB.faultDropped + rep2.portB.faultDropped > 0)
        #expect(rep1.portA.faultDuplicated + rep2.portB.faultDuplicated > 0)
        #expect(rep1.portA.faultReordered + rep2.portB.faultReordered > 0)
        #expect(rep1.leakedFrames == 0 && rep2.leakedFrames == 0)
    }

    @Test("a leg killed for good in mid-stream: traffic moves to the other with nothing lost")
    func legKilled() throws {
        let (seed, count) = stressParameters(defaultCount: 40_000)
        let pair = try RVIPair(seed: seed &+ 7)
        try pair.send(count, from: pair.one)
        #expect(waitUntil(seconds: 10 + Double(count) / 20_000) { pair.streamTwo.read().delivered >= count / 4 })
        let killedAt = nowNanos()
        for t in [pair.one, pair.two] { try pair.faults(t, .a, FaultPlan(down: true)) }
        let done = waitUntil(seconds: 60 + Double(count) / 10_000) {
            pair.streamTwo.read().delivered == count && pair.streamOne.read().ackedThrough == count
        }
        let r2 = pair.streamTwo.read(), r1 = pair.streamOne.read()
        let s1 = try pair.statistics(pair.one), s2 = try pair.statistics(pair.two)
        _ = pair.stop()
        print("leg histories: node 1 \(s1.legs.map { "\($0.fabric): \($0.history.map { "\($0.state)@\(Int($0.atMilliseconds))" })" }), "
              + "node 2 \(s2.legs.map { "\($0.fabric): \($0.history.map { "\($0.state)@\(Int($0.atMilliseconds))" })" })")
        let downAt = r1.events.first { if case .legDown(.a) = $0.event { true } else { false } }
        print("RVI leg killed: seed \(seed &+ 7), \(count) messages checked, lost \(count - r2.delivered), "
              + "duplicated \(r2.duplicated); longest delivery gap \(r2.longestGapMs) ms; events \(r1.events)")
        #expect(done)
        expectClean(r2, count, "node 2 received")
        #expect(downAt != nil)
        #expect(s1.legs[0].state == .down)
        #expect(s1.legs[1].state == .up)
        print("leg A killed \(Double(killedAt &- pair.streamOne.startedAt) / 1e6) ms after start")
    }

    @Test("a peer restarted in mid-stream: a new epoch, the sender told of what did not arrive, nothing doubled")
    func peerRestart() throws {
        let (seed, count) = stressParameters(defaultCount: 30_000)
        let pair = try RVIPair(seed: seed &+ 3, minimumSize: 8)
        try pair.send(count, from: pair.one)
        #expect(waitUntil(seconds: 10 + Double(count) / 20_000) { pair.streamTwo.read().delivered >= count / 3 })
        let before = pair.streamTwo
        try pair.restartTwo()
        let after = pair.streamTwo
        let done = waitUntil(seconds: 60 + Double(count) / 10_000) {
            let r1 = pair.streamOne.read()
            return r1.posted == count && r1.ackedThrough == count
        }
        let r1 = pair.streamOne.read(), old = before.read(), new = after.read()
        _ = pair.stop()
        let restarted = r1.events.contains { if case .peerRestarted = $0.event { true } else { false } }
        print("RVI peer restart: seed \(seed &+ 3), \(count) messages; delivered \(old.delivered) before the restart "
              + "and \(new.delivered) after, \(r1.failedCount) reported failed to the sender \(r1.failed), "
              + "duplicated \(old.duplicated + new.duplicated), out of order \(old.outOfOrder + new.outOfOrder)")
        #expect(done)
        #expect(restarted)
        // Every message was delivered once, or its sender was told; none twice, none out of order.
        #expect(old.duplicated + new.duplicated == 0 && old.outOfOrder + new.outOfOrder == 0)
        #expect(old.corrupt + new.corrupt == 0)
        #expect(old.delivered + new.delivered + r1.failedCount >= count)
        #expect(old.delivered + new.delivered <= count)
        if let firstFailed = r1.failed.first?.lowerBound {
            #expect(firstFailed <= old.delivered + 1)
        }
    }

    @Test("credits: a receiver with an 8-frame window is never overrun; the sender waits")
    func credits() throws {
        var layer = RCLANConfiguration()
        layer.receiveWindow = 8
        let pair = try RVIPair(seed: 5, layer: layer)
        try pair.send(20_000, from: pair.one)
        let done = waitUntil(seconds: 60) { pair.streamTwo.read().delivered == 20_000 }
        let s1 = try pair.statistics(pair.one), s2 = try pair.statistics(pair.two)
        let r2 = pair.streamTwo.read()
        _ = pair.stop()
        print("RVI credits: 20000 messages, credit stalls \(s1.creditStalls), beyond-window drops \(s2.beyondWindowDropped)")
        #expect(done)
        expectClean(r2, 20_000, "node 2 received")
        #expect(s1.creditStalls > 0)
        #expect(s2.beyondWindowDropped == 0)
    }

    @Test("small messages posted in one turn travel together")
    func coalescing() throws {
        let pair = try RVIPair(seed: 9, minimumSize: 64, maximumSize: 64)
        try pair.send(2_000, from: pair.one)
        let done = waitUntil { pair.streamTwo.read().delivered == 2_000 }
        let s1 = try pair.statistics(pair.one)
        let r2 = pair.streamTwo.read()
        _ = pair.stop()
        #expect(done)
        expectClean(r2, 2_000, "node 2 received")
        // 66 bytes per record: 256 messages fit a 16896-byte frame, so 2000 need 8 frames.
        print("RVI coalescing: 2000 × 64 B in \(s1.framesOut - s1.retransmissions) data frames")
        #expect(s1.framesOut - s1.retransmissions <= 8)
    }
}

@Suite("RVI legs, epochs and bad input", .serialized, .requiresIOUring)
struct RVILegTests {
    func firstEvent(_ r: StreamReport, after ms: Double, _ match: (RVIEvent) -> Bool) -> Double? {
        r.events.first { $0.ms >= ms && match($0.event) }?.ms
    }

    @Test("an idle leg that stops answering is down within milliseconds; it rejoins only after the hold-down")
    func heartbeats() throws {
        let pair = try RVIPair(seed: 1)
        // Let both legs be heard first.
        #expect(waitUntil { (try? pair.statistics(pair.one).legs.allSatisfy { $0.framesIn > 3 }) ?? false })
        let cut = Double(nowNanos() - pair.streamOne.startedAt) / 1e6
        for t in [pair.one, pair.two] { try pair.faults(t, .a, FaultPlan(down: true)) }
        #expect(waitUntil { pair.streamOne.read().events.contains { $0.event == .legDown(.a) } })
        let down = firstEvent(pair.streamOne.read(), after: cut) { $0 == .legDown(.a) } ?? .infinity
        let restored = Double(nowNanos() - pair.streamOne.startedAt) / 1e6
        for t in [pair.one, pair.two] { try pair.faults(t, .a, nil) }
        #expect(waitUntil { pair.streamOne.read().events.contains { $0.event == .legUp(.a) } })
        let up = firstEvent(pair.streamOne.read(), after: restored) { $0 == .legUp(.a) } ?? .infinity
        let s = try pair.statistics(pair.one)
        _ = pair.stop()
        print("RVI heartbeats: leg A down \(down - cut) ms after the cut, up \(up - restored) ms after it came back; "
              + "RTT A \(s.legs[0].rttMicroseconds ?? -1) µs, B \(s.legs[1].rttMicroseconds ?? -1) µs")
        // Default: 5 missed 1 ms heartbeats; allow for a loaded CI machine.
        #expect(down - cut < 100)
        #expect(up - restored >= 50)  // the hold-down
        #expect(s.legs[0].history.map(\.state).contains(.recovering))
        #expect(s.legs[1].rttMicroseconds != nil)
    }

    @Test("a leg losing far more than the threshold is demoted, and nothing is lost")
    func demotion() throws {
        // Silence is judged over 20 heartbeats, not 5: this test is about demotion by measured
        // loss. With 5, a debug build's slow receiver makes the healthy leg look silent too, and
        // both legs flap (flap damping has its own test).
        var layer = RCLANConfiguration()
        layer.missedHeartbeats = 20
        let pair = try RVIPair(seed: 2, layer: layer)
        for t in [pair.one, pair.two] { try pair.faults(t, .a, FaultPlan(seed: 2, dropPercent: 35)) }
        // In steps of 1000, each waited for: this test is about loss, not about a receiver that a
        // debug build's checking of every byte leaves behind (whose late turns make legs look silent).
        var done = true
        for step in stride(from: 1_000, through: 20_000, by: 1_000) where done {
            try pair.send(UInt64(step), from: pair.one)
            done = waitUntil(seconds: 30) { pair.streamTwo.read().delivered == UInt64(step) }
        }
        let r1 = pair.streamOne.read(), r2 = pair.streamTwo.read()
        let s1 = try pair.statistics(pair.one)
        _ = pair.stop()
        print("RVI demotion: leg A lost \(s1.legs[0].lossPercent) % of its last window; "
              + "per leg frames out, retransmissions, lost, spurious: "
              + "\(s1.legs.map { "\($0.fabric) \($0.framesOut) \($0.retransmissions) \($0.lost) \($0.spuriousRetransmissions)" }); "
              + "leg histories \(s1.legs.map { "\($0.fabric): \($0.history.map { "\($0.state)@\(Int($0.atMilliseconds))" })" })")
        #expect(done)
        expectClean(r2, 20_000, "node 2 received")
        #expect(r1.events.contains { if case .legDemoted(.a, _) = $0.event { true } else { false } },
                "node 1's events: \(r1.events)")
        // The healthy leg pays nothing for the lossy one.
        #expect(!r1.events.contains { if case .legDemoted(.b, _) = $0.event { true } else { false } },
                "node 1's events: \(r1.events)")
    }

    @Test("a receiver that stops reading is overrun: the overruns are counted as overruns, no leg is demoted, nothing is lost")
    func overruns() throws {
        // A 256 KiB socket buffer (512 KiB granted): the receiver grants only what its sockets can
        // queue. Silence is judged over 20 heartbeats, as in `demotion`, so that the stalls below
        // (shorter than that) do not take legs down: this test is about what loss is charged.
        var layer = RCLANConfiguration()
        layer.missedHeartbeats = 20
        let pair = try RVIPair(seed: 6, layer: layer) { $0.socketBufferBytes = 256 << 10 }
        let queue = try pair.two.runAndWait { min($0.receiveQueueFrames(.a), $0.receiveQueueFrames(.b)) }
        // Another VI of node 1 that sends to node 2's fabric-A port (node 2 has no such VI and
        // drops what it reads): traffic that shares the port's socket with the RVI, as other VIs
        // and RVIs do.
        try pair.one.control.establishAndWait(VI(.a, 7), peer: RVIPair.address(pair.two, .a), remoteVI: 7)
        // Both ends hear each other first: node 1 counts node 2's overruns from its first report.
        for t in [pair.one, pair.two] {
            #expect(waitUntil { (try? pair.statistics(t).legs.allSatisfy { $0.framesIn > 3 }) ?? false })
        }
        let count: UInt64 = 30_000
        try pair.send(count, from: pair.one)
        // Again and again, each time after node 2 has caught up a little: stall node 2's engine
        // thread for 30 ms (it reads nothing meanwhile) and, once it is stalled, fill its fabric-A
        // socket from VI 7. The RVI's frames that arrive on leg A during the rest of the stall
        // find no room: the kernel drops them, and node 1 judges them lost on leg A.
        let two = pair.two
        var stalls = 0
        var done = false
        let deadline = nowNanos() + 90_000_000_000
        while !done && nowNanos() < deadline {
            let stalled = DispatchSemaphore(value: 0), resumed = DispatchSemaphore(value: 0)
            DispatchQueue.global().async {
                _ = try? two.runAndWait { _ in
                    stalled.signal()
                    usleep(30_000)
                }
                resumed.signal()
            }
            stalled.wait()
            try pair.one.runAndWait { e in
                for _ in 0..<2 * queue {
                    guard var f = e.takeFrame() else { break }
                    f.length = FrameLayout.maxPayload
                    try e.send(f, on: VI(.a, 7))
                }
            }
            resumed.wait()
            stalls += 1
            let before = pair.streamTwo.read().delivered
            _ = waitUntil(seconds: 10) {
                let now = pair.streamTwo.read().delivered
                return now >= before + 300 || now == count
            }
            done = pair.streamTwo.read().delivered == count
        }
        #expect(waitUntil { pair.streamOne.read().ackedThrough == count })
        // Node 2 learns of its last drops with the next datagram it reads (node 1's probes keep
        // coming), and node 1 of node 2's count with node 2's next control frame: wait until the
        // two agree, and node 2's RVI statistics with its ports.
        var received: UInt64 = 0
        let reported = waitUntil {
            guard let n2 = try? two.runAndWait({ e -> (UInt64, UInt64) in
                      (e.receiveOverruns(.a) + e.receiveOverruns(.b),
                       RCLAN.on(e)!.statistics(RVI(id: 0))!.legs.reduce(0) { $0 + $1.receiveOverruns })
                  }),
                  let n1 = try? pair.statistics(pair.one).legs.reduce(0, { $0 + $1.peerReceiveOverruns })
            else { return false }
            received = n2.0
            return n2.0 == n2.1 && n1 == n2.0
        }
        let s1 = try pair.statistics(pair.one), s2 = try pair.statistics(pair.two)
        let r1 = pair.streamOne.read(), r2 = pair.streamTwo.read()
        _ = pair.stop()
        print("RVI overruns: \(stalls) stalls of node 2; its sockets dropped \(received) datagrams "
              + "(A \(s2.legs[0].receiveOverruns), B \(s2.legs[1].receiveOverruns)); node 1 heard of "
              + "\(s1.legs.map(\.peerReceiveOverruns)), took back \(s1.legs.map(\.overruns)) losses as overruns, "
              + "charged \(s1.legs.map(\.lost)) as lost (spurious \(s1.legs.map(\.spuriousRetransmissions))), "
              + "last loss \(s1.legs.map(\.lossPercent)) %; credit \(s2.credit) (socket queue \(queue) frames), "
              + "credit stalls \(s1.creditStalls); leg histories "
              + "\(s1.legs.map { "\($0.fabric): \($0.history.map { "\($0.state)@\(Int($0.atMilliseconds))" })" })")
        #expect(done, "delivered \(r2.delivered) of \(count)")
        // Credits are sized to what the socket holds.
        #expect(s2.credit == min(layer.receiveWindow, queue) && s2.credit < layer.receiveWindow)
        // (a) The overruns are counted, at the receiver and at the sender, as overruns: the RVI's
        // frames dropped on leg A are taken back from leg A's loss.
        #expect(received > 0)
        #expect(reported, "node 1 heard of \(s1.legs.map(\.peerReceiveOverruns)), node 2's ports counted \(received), its RVI \(s2.legs.map(\.receiveOverruns))")
        #expect(s1.legs[0].overruns > 0)
        // (b) Neither leg was demoted, at either end.
        for (name, r, s) in [("node 1", r1, s1), ("node 2", r2, s2)] {
            #expect(!r.events.contains { if case .legDemoted = $0.event { true } else { false } }, "\(name): \(r.events)")
            #expect(s.legs.allSatisfy { !$0.history.contains { $0.state == .demoted } }, "\(name)")
        }
        // (c) Nothing lost: every message exactly once, in order.
        expectClean(r2, count, "node 2 received")
    }

    @Test("a leg that goes down three times within the demotion period comes back demoted, and serves it out")
    func flapping() throws {
        // Leg B must stay up throughout: a leg B that fell would lift leg A's demotion by design
        // (the only path left is used). At the default 5 ms a loaded machine's scheduling gaps
        // take leg B down now and then, so B is given 25 ms; the three flaps of A still fit in
        // one demotion period (each is a fall of 25 ms and a 50 ms hold-down).
        var layer = RCLANConfiguration()
        layer.missedHeartbeats = 25
        let pair = try RVIPair(seed: 4, layer: layer)
        #expect(waitUntil { (try? pair.statistics(pair.one).legs.allSatisfy { $0.framesIn > 3 }) ?? false })
        func isDemoted(_ e: RVIEvent) -> Bool { if case .legDemoted(.a, _) = e { true } else { false } }
        // Cut leg A and bring it back three times; wait for each fall and each return.
        for round in 1...3 {
            for t in [pair.one, pair.two] { try pair.faults(t, .a, FaultPlan(down: true)) }
            #expect(waitUntil { pair.streamOne.read().events.filter { $0.event == .legDown(.a) }.count >= round })
            for t in [pair.one, pair.two] { try pair.faults(t, .a, nil) }
            if round < 3 {
                #expect(waitUntil { pair.streamOne.read().events.filter { $0.event == .legUp(.a) }.count >= round })
            }
        }
        #expect(waitUntil { pair.streamOne.read().events.contains { isDemoted($0.event) } })
        let s = try pair.statistics(pair.one)
        // Data meanwhile goes on leg B, and all of it arrives.
        try pair.send(2_000, from: pair.one)
        #expect(waitUntil(seconds: 30) { pair.streamTwo.read().delivered == 2_000 })
        // After the demotion period (1 s) leg A is up again.
        #expect(waitUntil(seconds: 5) { pair.streamOne.read().events.filter { $0.event == .legUp(.a) }.count >= 3 })
        let r1 = pair.streamOne.read(), r2 = pair.streamTwo.read()
        _ = pair.stop()
        let a = r1.events.filter { $0.event == .legDown(.a) || $0.event == .legUp(.a) || isDemoted($0.event) }
        let b = r1.events.filter { $0.event == .legDown(.b) || $0.event == .legUp(.b) }
        print("RVI flapping: leg A \(a.map { "\($0.event)@\(Int($0.ms))" }); leg B \(b.map { "\($0.event)@\(Int($0.ms))" })")
        #expect(b.isEmpty, "leg B stayed up")
        // Down, up, down, up, down, then demoted (not up) on the third return, then up.
        let third = a.indices.filter { a[$0].event == .legDown(.a) }.dropFirst(2).first
        #expect(third.map { $0 + 1 < a.count && isDemoted(a[$0 + 1].event) } == true)
        #expect(s.legs[0].state == .demoted)
        if let third, let up = a[(third + 1)...].first(where: { $0.event == .legUp(.a) }) {
            #expect(up.ms - a[third + 1].ms >= 900, "leg A served out its demotion")
        }
        expectClean(r2, 2_000, "node 2 received")
    }

    @Test("both legs down: messages wait and arrive when a leg returns; past failAfter they fail and the epoch changes")
    func unusable() throws {
        var layer = RCLANConfiguration()
        layer.failAfter = .milliseconds(300)
        let pair = try RVIPair(seed: 3, layer: layer, minimumSize: 8)
        #expect(waitUntil { (try? pair.statistics(pair.one).legs.allSatisfy { $0.framesIn > 3 }) ?? false })
        for t in [pair.one, pair.two] {
            try pair.faults(t, .a, FaultPlan(down: true))
            try pair.faults(t, .b, FaultPlan(down: true))
        }
        try pair.send(100, from: pair.one)
        #expect(waitUntil { pair.streamOne.read().events.contains { $0.event == .unusable } })
        #expect(pair.streamTwo.read().delivered == 0)
        // Back within failAfter: everything arrives.
        for t in [pair.one, pair.two] { try pair.faults(t, .b, nil) }
        #expect(waitUntil { pair.streamTwo.read().delivered == 100 && pair.streamOne.read().ackedThrough == 100 })
        #expect(waitUntil { pair.streamOne.read().events.contains { $0.event == .usable } })
        // Down past failAfter: the sender is told, and a new epoch starts.
        for t in [pair.one, pair.two] { try pair.faults(t, .b, FaultPlan(down: true)) }
        try pair.send(150, from: pair.one)
        // The sender is told of the failed messages, then of the new epoch: wait for both.
        #expect(waitUntil {
            let r = pair.streamOne.read()
            return r.failedCount == 50 && r.events.contains { if case .reset = $0.event { true } else { false } }
        })
        let r1 = pair.streamOne.read()
        #expect(r1.failed == [101..<151])
        #expect(r1.events.contains { if case .reset = $0.event { true } else { false } })
        for t in [pair.one, pair.two] { try pair.faults(t, .b, nil) }
        #expect(waitUntil { pair.streamTwo.read().events.contains { if case .peerRestarted = $0.event { true } else { false } } })
        // Both ends may have given up (each on its own timer); wait until each knows the
        // other's current epoch before sending again, or a later restart would fail the new
        // messages too (correctly, but not what this test is about).
        #expect(waitUntil {
            guard let s1 = try? pair.statistics(pair.one), let s2 = try? pair.statistics(pair.two) else { return false }
            return s1.peerEpoch == s2.epoch && s2.peerEpoch == s1.epoch && s1.legs[1].state == .up && s2.legs[1].state == .up
        })
        try pair.send(200, from: pair.one)
        #expect(waitUntil { pair.streamOne.read().ackedThrough == 200 })
        let r2 = pair.streamTwo.read()
        _ = pair.stop()
        #expect(r2.delivered == 150 && r2.duplicated == 0 && r2.corrupt == 0)
    }

    @Test("malformed RVI frames are dropped and counted; the RVI and its peer carry on")
    func malformed() throws {
        let pair = try RVIPair(seed: 4)
        // A second RVI at node 1 (VIs 5) whose peer is a plain VI pair at node 2, which sends
        // it hand-made frames.
        let p = RVIPath(localA: 5, localB: 5, peerA: RVIPair.address(pair.two, .a), peerB: RVIPair.address(pair.two, .b),
                        remoteA: 5, remoteB: 5)
        let bad = try pair.one.runAndWait { e in try RCLAN.on(e)!.open(p).id }
        try pair.two.control.establishAndWait(VI(.a, 5), peer: RVIPair.address(pair.one, .a), remoteVI: 5)
        let cases: [(flags: FrameFlags, seq: UInt64, ack: UInt64, payload: [UInt8])] = [
            ([], 1, 1, [1, 2, 3]),                                            // not sequenced
            ([.sequenced, .control], 0, 1, [0, 0]),                           // control shorter than its header
            ([.sequenced, .control], 0, 1, [0, 17] + [UInt8](repeating: 0, count: 30)),  // too many SACK blocks
            ([.sequenced, .control], 0, 1, [0, 0] + [UInt8](repeating: 0, count: 22)),   // a 24-byte header (no overrun counts)
            ([.sequenced], 3, 99, [1]),                                       // acknowledges what was never sent
            ([.sequenced, .coalesced], 1, 1, [0, 200, 1, 2]),                 // a record running past the frame
        ]
        for c in cases {
            try pair.two.runAndWait { e in
                var f = e.takeFrame()!
                f.setPayload(c.payload)
                try e.send(f, on: VI(.a, 5), fields: ReliabilityFields(sequence: c.seq, acknowledgement: c.ack,
                                                                       epoch: 7, credit: 8, flags: c.flags),
                           returnOnCompletion: false)
            }
        }
        let ok = waitUntil { ((try? pair.one.runAndWait { e in RCLAN.on(e)!.statistics(RVI(id: bad))!.malformedDropped }) ?? 0) >= 6 }
        try pair.send(1_000, from: pair.one)
        try pair.send(1_000, from: pair.two)
        #expect(waitUntil { pair.streamTwo.read().delivered == 1_000 && pair.streamOne.read().delivered == 1_000 })
        let s = try pair.one.runAndWait { e in RCLAN.on(e)!.statistics(RVI(id: bad))! }
        _ = pair.stop()
        print("RVI malformed: \(s.malformedDropped) malformed frames dropped and counted")
        #expect(ok)
        #expect(s.malformedDropped >= 6)
    }
}
