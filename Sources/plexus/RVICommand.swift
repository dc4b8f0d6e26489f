import ArgumentParser
import Foundation
import PlexusCore
import PlexusRCLAN
import Synchronization

/// Both ends of `plexus rvi`: node 1 posts numbered messages, node 2 checks they arrive exactly
/// once and in order; both keep the events they were told.
final class RVIShowDelegate: RVIDelegate, @unchecked Sendable {
    // Engine-thread state.
    var rvi: RVI?
    var target: UInt64 = 0
    var posted: UInt64 = 0
    var expected: UInt64 = 1
    let size: Int
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: FrameLayout.maxPayload, alignment: 8)
    // Read from the main thread.
    struct Seen: Sendable {
        var delivered: UInt64 = 0
        var acked: UInt64 = 0
        var outOfOrder: UInt64 = 0
        var failed: UInt64 = 0
        var events: [String] = []
    }
    let seen = Mutex(Seen())
    var started = nowNanos()

    init(size: Int) {
        self.size = size
        scratch.initializeMemory(as: UInt8.self, repeating: 0x42)
    }
    deinit { scratch.deallocate() }

    func layerTurn(_ layer: RCLAN) {
        guard let rvi else { return }
        while posted < target {
            let n = posted + 1
            if size >= 8 { scratch.storeBytes(of: n.littleEndian, as: UInt64.self) }
            do { _ = try layer.send(UnsafeRawBufferPointer(rebasing: scratch[0..<size]).bytes, on: rvi) } catch { break }
            posted = n
        }
    }

    func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        var bad = false
        if message.byteCount >= 8 {
            let n = UInt64(littleEndian: message.unsafeLoadUnaligned(as: UInt64.self))
            bad = n != expected
            expected = n + 1
        }
        seen.withLock {
            $0.delivered += 1
            if bad { $0.outOfOrder += 1 }
        }
    }

    func acknowledged(on rvi: RVI, through: UInt64, layer: RCLAN) { seen.withLock { $0.acked = through } }

    func sendFailed(on rvi: RVI, messages: Range<UInt64>, reason: RVIFailure, layer: RCLAN) {
        seen.withLock {
            $0.failed += UInt64(messages.count)
            $0.events.append(String(format: "%8.1f ms  messages %llu..<%llu failed: %@", Double(nowNanos() - started) / 1e6,
                                    messages.lowerBound, messages.upperBound, reason.rawValue))
        }
    }

    func event(_ event: RVIEvent, on rvi: RVI, layer: RCLAN) {
        let line = String(format: "%8.1f ms  %@", Double(nowNanos() - started) / 1e6, event.description)
        seen.withLock { $0.events.append(line) }
    }
}

struct RVIShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rvi",
        abstract: "Run a redundant VI between two nodes, optionally under faults, and print its counters per leg.",
        discussion: """
            Node 1 and node 2 run in this process on loopback, each with the RCLAN layer. One RVI \
            joins them: a VI on fabric A and a VI on fabric B. Node 1 sends --messages numbered \
            messages; node 2 checks that each arrives exactly once and in order. --fault injects \
            faults under both nodes' port on a fabric (as `plexus demo` does for one node); \
            --kill-leg fails a fabric for good halfway through. Then the RVI's statistics are \
            printed for both ends: frames and bytes each way per leg, retransmissions, duplicates \
            dropped, credit stalls, RTT, loss, and each leg's state with the time of every change.
            """)

    @Option(help: "Messages node 1 sends.")
    var messages: Int = 200_000
    @Option(help: "Bytes per message (1...16896).")
    var size: Int = 1024
    @Option(help: "Load balancing: alternate, fewest-bytes, active-standby[:a|:b].")
    var policy: String = "alternate"
    @Option(name: .customLong("fault"), parsing: .singleValue,
            help: "Faults under both nodes' port on a fabric (repeatable): FABRIC:PLAN, e.g. a:drop=5,seed=7.")
    var faults: [String] = []
    @Option(help: "Fail this fabric (a or b) for good halfway through.")
    var killLeg: Fabric?
    @Flag(help: "Print the statistics of both ends as one JSON object on the last line.")
    var json = false

    func validate() throws {
        guard (1...100_000_000).contains(messages) else { throw ValidationError("--messages must be in 1...100000000") }
        guard (1...FrameLayout.maxPayload).contains(size) else { throw ValidationError("--size must be in 1...16896") }
        do { _ = try LoadBalancing(parsing: policy) } catch { throw ValidationError("--policy: \(error)") }
        try validateFaults(faults)
    }

    func run() throws {
        let r = try RVIShowcase(messages: UInt64(messages), size: size, policy: try LoadBalancing(parsing: policy),
                                faults: faults.compactMap(FaultOption.init(argument:)), killLeg: killLeg).run()
        print("plexus rvi: node 1 \(r.addresses.0) → node 2 \(r.addresses.1)")
        print("  \(messages) messages of \(size) bytes, policy \(policy)"
              + (faults.isEmpty ? "" : ", faults \(faults.joined(separator: " "))")
              + (killLeg.map { ", fabric \($0) killed halfway" } ?? ""))
        print(r.summary)
        for (name, st, events) in [("node 1 (sender)", r.sender, r.senderEvents), ("node 2 (receiver)", r.receiver, r.receiverEvents)] {
            print("\n\(name): RVI \(st.rvi), epoch \(st.epoch), peer epoch \(st.peerEpoch), policy \(st.policy)")
            print("  messages out \(st.messagesOut) (\(st.messageBytesOut) B), in \(st.messagesIn) (\(st.messageBytesIn) B); "
                  + "frames out \(st.framesOut), in \(st.framesIn)")
            print("  retransmissions \(st.retransmissions), duplicates dropped \(st.duplicatesDropped), stale \(st.staleDropped), "
                  + "credit \(st.credit), credit stalls \(st.creditStalls), window-full refusals \(st.windowFullRefusals), acks out \(st.acksOut), "
                  + "malformed \(st.malformedDropped)")
            // overrun: frames lost on the leg that the peer's socket dropped for want of room (taken
            // back, not loss); peer ovf / rx ovf: overruns of the peer's and this end's socket.
            print("  leg  state       since ms   frames out/in     bytes out/in            retx    lost  spurious  overrun  peer ovf    rx ovf  loss %   RTT µs  heartbeats")
            for l in st.legs {
                print(String(format: "  %-3@  %-10@ %9.1f  %8llu/%-8llu %10llu/%-10llu %7llu %7llu %9llu %8llu %9llu %9llu %6.2f %8@  %llu",
                             l.fabric as NSString, l.state.rawValue as NSString, l.stateSinceMilliseconds, l.framesOut, l.framesIn,
                             l.bytesOut, l.bytesIn, l.retransmissions, l.lost, l.spuriousRetransmissions, l.overruns,
                             l.peerReceiveOverruns, l.receiveOverruns, l.lossPercent,
                             (l.rttMicroseconds.map { String(format: "%.1f", $0) } ?? "-") as NSString, l.heartbeatsOut))
                if !l.history.isEmpty {
                    print("       changes: " + l.history.map { String(format: "%@ at %.1f ms", $0.state.rawValue, $0.atMilliseconds) }
                        .joined(separator: ", "))
                }
            }
            if !events.isEmpty {
                print("  events:")
                for e in events { print("    " + e) }
            }
        }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            let object: [String: RVIStatistics] = ["node1": r.sender, "node2": r.receiver]
            print(String(decoding: try enc.encode(object), as: UTF8.self))
        }
        if !r.clean { throw CLIError("the RVI did not deliver every message exactly once, in order") }
    }
}

/// Two nodes in this process with an RVI between them, a stream of numbered messages, faults if
/// asked: what `plexus rvi` prints and step 4 of `plexus demo` summarises.
struct RVIShowcase {
    var messages: UInt64
    var size: Int
    var policy: LoadBalancing
    var faults: [FaultOption]
    var killLeg: Fabric?

    struct Result {
        var addresses: (String, String)
        var delivered: UInt64
        var outOfOrder: UInt64
        var failed: UInt64
        var seconds: Double
        var sender: RVIStatistics
        var receiver: RVIStatistics
        var senderEvents: [String]
        var receiverEvents: [String]
        var clean: Bool
        var summary: String {
            String(format: "delivered %llu messages in %.2f s (%.0f messages/s), out of order %llu, failed at the sender %llu",
                   delivered, seconds, Double(delivered) / seconds, outOfOrder, failed)
        }
    }

    func run() throws -> Result {
        let d1 = RVIShowDelegate(size: size), d2 = RVIShowDelegate(size: size)
        let one = try EngineThread.start(.loopback(node: 1)) { RCLAN(delegate: d1) }
        let two = try EngineThread.start(.loopback(node: 2)) { RCLAN(delegate: d2) }
        defer {
            one.stopAndWait()
            two.stopAndWait()
        }
        func address(_ t: EngineThread, _ f: Fabric) -> FabricAddress { FabricAddress(t.info.ports[Int(f.rawValue)].address)! }
        let policy = self.policy
        for (me, peer) in [(one, two), (two, one)] {
            let path = RVIPath(localA: 1, localB: 1, peerA: address(peer, .a), peerB: address(peer, .b), remoteA: 1, remoteB: 1)
            try me.runAndWait { e in
                let layer = RCLAN.on(e)!
                let d = layer.delegate as! RVIShowDelegate
                d.rvi = try layer.open(path, policy: policy)
                d.started = nowNanos()
            }
        }
        for f in faults {
            try one.control.setFaultsAndWait(f.plan, on: f.fabric)
            try two.control.setFaultsAndWait(f.plan, on: f.fabric)
        }
        let total = messages
        let start = nowNanos()
        try one.runAndWait { e in (RCLAN.on(e)!.delegate as! RVIShowDelegate).target = total }
        var killed = false
        let deadline = nowNanos() + 300_000_000_000
        while nowNanos() < deadline {
            let s2 = d2.seen.withLock { $0 }, s1 = d1.seen.withLock { $0 }
            if let leg = killLeg, !killed, s2.delivered >= total / 2 {
                for t in [one, two] { try t.control.setFaultsAndWait(FaultPlan(down: true), on: leg) }
                killed = true
            }
            if s2.delivered == total && s1.acked + s1.failed >= total { break }
            usleep(2000)
        }
        let seconds = Double(nowNanos() - start) / 1e9
        let stats1 = try one.runAndWait { RCLAN.on($0)!.statistics(RVI(id: 0))! }
        let stats2 = try two.runAndWait { RCLAN.on($0)!.statistics(RVI(id: 0))! }
        let s1 = d1.seen.withLock { $0 }, s2 = d2.seen.withLock { $0 }
        return Result(
            addresses: ("\(address(one, .a)) / \(address(one, .b))", "\(address(two, .a)) / \(address(two, .b))"),
            delivered: s2.delivered, outOfOrder: s2.outOfOrder, failed: s1.failed, seconds: seconds,
            sender: stats1, receiver: stats2, senderEvents: s1.events, receiverEvents: s2.events,
            clean: s2.delivered == total && s2.outOfOrder == 0)
    }
}
