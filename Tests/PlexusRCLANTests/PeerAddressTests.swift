import Foundation
import PlexusCore
import PlexusRCLAN
import PlexusTestSupport
import Testing

/// Two engines on loopback, node 1 listening on every local address of fabric A, so that node 2
/// can reach it at a primary address (127.0.1.1) and an alternate one (127.0.0.1, where node 1's
/// own frames come from).
private final class AlternatePair: @unchecked Sendable {
    let one: EngineThread, two: EngineThread
    let streamOne: MessageStream, streamTwo: MessageStream
    let primary: FabricAddress, alternate: FabricAddress

    init(seed: UInt64, mtuA: Int? = nil) throws {
        var c1 = EngineConfiguration.loopback(node: 1)
        c1.fabricA = FabricAddress(0, 0, 0, 0, port: 0)
        let c2 = EngineConfiguration.loopback(node: 2)
        let s1 = MessageShape(seed: seed), s2 = MessageShape(seed: seed &+ 1)
        let d1 = MessageStream(outgoing: s1, incoming: s2), d2 = MessageStream(outgoing: s2, incoming: s1)
        streamOne = d1
        streamTwo = d2
        one = try EngineThread.start(c1) { RCLAN(delegate: d1) }
        two = try EngineThread.start(c2) { RCLAN(delegate: d2) }
        let portA = FabricAddress(one.info.ports[0].address)!.port
        primary = FabricAddress(127, 0, 1, 1, port: portA)
        alternate = FabricAddress(127, 0, 0, 1, port: portA)
        let toTwo = RVIPath(localA: 1, localB: 1, peerA: RVIPair.address(two, .a), peerB: RVIPair.address(two, .b),
                            remoteA: 1, remoteB: 1, mtuA: mtuA)
        let toOne = RVIPath(localA: 1, localB: 1, peerA: primary, peerB: RVIPair.address(one, .b),
                            remoteA: 1, remoteB: 1, alternatesA: [alternate], mtuA: mtuA)
        try one.runAndWait { e in d1.rvi = try RCLAN.on(e)!.open(toTwo) }
        try two.runAndWait { e in d2.rvi = try RCLAN.on(e)!.open(toOne) }
    }

    func send(_ count: UInt64) throws {
        for (t, s) in [(one, streamOne), (two, streamTwo)] {
            try t.runAndWait { _ in s.target = count }
        }
    }

    func statisticsTwo() throws -> RVIStatistics {
        try two.runAndWait { e in RCLAN.on(e)!.statistics(RVI(id: 0))! }
    }

    func currentAddressTwo() throws -> FabricAddress? {
        try two.runAndWait { e in e.peerAddresses(VI(.a, 1))?.current }
    }

    func stop() {
        _ = one.stopAndWait()
        _ = two.stopAndWait()
    }
}

@Suite("A peer's primary and alternate addresses", .serialized, .requiresIOUring)
struct PeerAddressTests {
    @Test("a leg whose primary address stops answering moves to the alternate, and back when the primary answers; nothing lost")
    func primaryAndAlternate() throws {
        let count: UInt64 = 30_000
        let pair = try AlternatePair(seed: 303)
        defer { pair.stop() }
        try pair.send(count)
        #expect(waitUntil(seconds: 30) { pair.streamOne.read().delivered > count / 5 })
        #expect(waitUntil(seconds: 10) { (try? pair.currentAddressTwo()) == pair.primary })

        // The primary address stops answering: node 2's frames to it are lost on the way.
        print("partition at \(Double(nowNanos() - pair.streamTwo.startedAt) / 1e6) ms")
        try pair.two.control.setFaultsAndWait(FaultPlan(seed: 1, partitioned: [pair.primary]), on: .a)
        let moved = waitUntil(seconds: 10) { (try? pair.currentAddressTwo()) == pair.alternate }
        #expect(moved, "leg A did not move to the alternate address")
        // On the alternate, leg A is usable again (up, or demoted if it went down often under
        // this machine's load), and the frames it sends there arrive.
        let before = try pair.one.runAndWait { $0.counters(.a).framesIn }
        let usable = waitUntil(seconds: 10) {
            guard let s = try? pair.statisticsTwo().legs[0], let inA = try? pair.one.runAndWait({ $0.counters(.a).framesIn })
            else { return false }
            return (s.state == .up || s.state == .demoted) && inA > before + 100
                && (try? pair.currentAddressTwo()) == pair.alternate
        }
        #expect(usable, "leg A is not usable on the alternate address")

        // The primary answers again: the leg goes back to it.
        print("heal at \(Double(nowNanos() - pair.streamTwo.startedAt) / 1e6) ms")
        try pair.two.control.setFaultsAndWait(nil, on: .a)
        let back = waitUntil(seconds: 10) { (try? pair.currentAddressTwo()) == pair.primary }
        #expect(back, "leg A did not go back to the primary address")

        let done = waitUntil(seconds: 60) {
            pair.streamOne.read().delivered == count && pair.streamTwo.read().delivered == count
                && pair.streamTwo.read().ackedThrough == count
        }
        let r1 = pair.streamOne.read(), r2 = pair.streamTwo.read()
        let s = try pair.statisticsTwo()
        let changes = r2.events.filter { if case .peerAddressChanged = $0.event { true } else { false } }
        print("Primary and alternate: seed 303, 2 × \(count) messages checked; delivered \(r1.delivered) and "
              + "\(r2.delivered); leg A address changes \(s.legs[0].addressChanges): \(changes.map { "\(Int($0.ms)) ms: \($0.event)" })")
        #expect(done)
        expectClean(r1, count, "node 1 receiving")
        expectClean(r2, count, "node 2 receiving")
        #expect(s.legs[0].addressChanges >= 2)
        #expect(changes.contains { if case .peerAddressChanged(.a, 1) = $0.event { true } else { false } })
        #expect(changes.contains { if case .peerAddressChanged(.a, 0) = $0.event { true } else { false } })
    }

    @Test("the peer adapter's MTU bounds every datagram of its leg")
    func adapterMTU() throws {
        let count: UInt64 = 2_000
        let pair = try AlternatePair(seed: 304, mtuA: 1500)
        defer { pair.stop() }
        let before = try pair.two.runAndWait { $0.counters(.a) }
        try pair.send(count)
        let done = waitUntil(seconds: 60) {
            pair.streamOne.read().delivered == count && pair.streamTwo.read().delivered == count
        }
        let after = try pair.two.runAndWait { $0.counters(.a) }
        let afterB = try pair.two.runAndWait { $0.counters(.b) }
        let segments = after.segmentsOut - before.segmentsOut
        let bytesPerDatagram = Double(after.wireBytesOut - before.wireBytesOut) / Double(after.datagramsOut - before.datagramsOut)
        print("Adapter MTU 1500 on fabric A: \(count) messages each way; fabric A sent \(segments) segments, "
              + "\(after.datagramsOut - before.datagramsOut) datagrams, \(Int(bytesPerDatagram)) bytes each on average; "
              + "fabric B (path MTU 65536) \(afterB.segmentsOut) segments")
        #expect(done)
        expectClean(pair.streamOne.read(), count, "node 1 receiving")
        expectClean(pair.streamTwo.read(), count, "node 2 receiving")
        // Messages up to 16896 bytes travel as 1472-byte datagrams on A, whole on B.
        #expect(segments > 0)
        #expect(afterB.segmentsOut == 0)
        #expect(bytesPerDatagram <= 1472)
    }
}
