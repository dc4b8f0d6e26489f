// Two in-process engines on loopback, wired for a steady stream of frames from node 1 to node 2.
//
// The measured thread never talks to an engine through its job inbox (that path allocates a
// closure and a semaphore per call, and is control plane, not data path). It only moves two
// atomics: it raises `requested`, node 1's driver sends until its own count reaches it, node 2's
// driver bumps `delivered` for every frame it is handed, and the measured thread waits for
// `delivered` to catch up. So whatever the malloc interposer counts while a benchmark iteration
// runs (it counts every thread of the process) is the frame path's, both engines included.

import Benchmark
import PlexusCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// State shared by the two drivers and the measuring thread. Nothing here allocates after `init`.
final class StreamState: Sendable {
    /// Payload bytes of every frame sent.
    let payloadBytes: Int
    /// Most frames in flight end to end (sent and not yet delivered). Keeps the receiving
    /// socket from overflowing, so no frame is ever lost and a wait always terminates. Set once
    /// the receiver has started (its granted socket buffer sizes it), before the sender starts.
    let window = Atomic<Int>(0)
    /// Frames the measuring thread has asked for, in total (only grows).
    let requested = Atomic<Int>(0)
    /// Frames node 1 has handed to the kernel, in total (published once per engine turn).
    let sent = Atomic<Int>(0)
    /// Frames node 2 has been handed by its engine, in total.
    let delivered = Atomic<Int>(0)
    /// Frames that arrived with a payload length other than `payloadBytes`.
    let badFrames = Atomic<Int>(0)
    /// `Engine.send` calls that threw.
    let sendFailures = Atomic<Int>(0)

    init(payloadBytes: Int) {
        self.payloadBytes = payloadBytes
    }
}

/// Node 1's driver: streams frames round-robin over every VI while `requested` is ahead.
final class StreamingSender: EngineDriver {
    let state: StreamState
    let vis: [VI]
    let window: Int
    var next = 0
    var sent = 0
    var sequence: UInt64 = 0

    /// When set (a blocking sender), a ring timer wakes the engine this often so it notices a
    /// raised `requested` without being woken through its inbox (which allocates).
    let tick: Duration?

    init(state: StreamState, vis: [VI], tick: Duration? = nil) {
        self.state = state
        self.vis = vis
        self.tick = tick
        self.window = state.window.load(ordering: .acquiring)
        precondition(window > 0, "the sender started before the window was set")
    }

    func engineDidStart(_ engine: Engine) {
        if let tick { engine.schedule(after: tick, token: 1) }
    }

    func timerFired(token: UInt32, engine: Engine) {
        if let tick { engine.schedule(after: tick, token: 1) }
    }

    func engineTurn(_ engine: Engine) {
        let requested = state.requested.load(ordering: .acquiring)
        guard sent < requested else { return }
        let delivered = state.delivered.load(ordering: .acquiring)
        var budget = min(requested - sent, window - (sent - delivered))
        while budget > 0 {
            guard let taken = engine.takeFrame() else { break }  // pool empty: wait for completions
            var frame = taken
            frame.length = state.payloadBytes
            sequence &+= 1
            let seq = sequence
            frame.withUnsafeMutablePayload { $0.storeBytes(of: seq, as: UInt64.self) }
            let vi = vis[next]
            next = next + 1 == vis.count ? 0 : next + 1
            do {
                try engine.send(frame, on: vi)
            } catch {
                state.sendFailures.add(1, ordering: .relaxed)
                break
            }
            sent += 1
            budget -= 1
        }
        state.sent.store(sent, ordering: .releasing)
    }
}

/// Node 2's driver: counts every frame, drops it (its receive buffer goes back to the ring) and
/// posts one more receive on its VI.
final class CountingReceiver: EngineDriver {
    let state: StreamState
    /// The canary: copy every payload into a fresh array (exactly one allocation per frame, on
    /// the receiver's engine thread), to prove the interposer counts the engine threads.
    let copyPayload: Bool

    init(state: StreamState, copyPayload: Bool) {
        self.state = state
        self.copyPayload = copyPayload
    }

    func received(_ frame: consuming InboundFrame, engine: Engine) {
        let vi = frame.vi
        if frame.count != state.payloadBytes { state.badFrames.add(1, ordering: .relaxed) }
        if copyPayload { blackHole(frame.copyBytes()) }
        _ = consume frame
        engine.postReceives(1, on: vi)
        state.delivered.add(1, ordering: .releasing)
    }
}

/// Node 1 (sender, busy-polling) and node 2 (receiver, blocking), `visPerFabric` VIs on each
/// fabric between them; or, with `swapModes`, the other two paths: a blocking sender (its sends
/// grouped into UDP GSO sendmsgs on the ring, woken by a ring timer) and a busy-polling receiver
/// (reading its sockets directly with recvmsg/recvmmsg).
final class LoopbackPair: Sendable {
    let state: StreamState
    let sender: EngineThread
    let receiver: EngineThread
    let vis: [VI]

    /// How long `deliver` waits for the frames it asked for before it fails the run.
    static let timeout: Duration = .seconds(10)

    init(payloadBytes: Int, visPerFabric: Int = 1024, copyPayloadOnReceive: Bool = false,
         swapModes: Bool = false) throws {
        let vis = (1...UInt32(visPerFabric)).flatMap { [VI(.a, $0), VI(.b, $0)] }
        self.vis = vis

        // The receiver first: its granted socket buffer sizes the window.
        let state = StreamState(payloadBytes: payloadBytes)
        self.state = state
        var rc = EngineConfiguration.loopback(node: 2)
        rc.name = "bench-rx"
        rc.pollMode = swapModes ? .busyPoll : .blocking
        let receiver = try EngineThread.start(rc, driver: {
            CountingReceiver(state: state, copyPayload: copyPayloadOnReceive)
        })
        self.receiver = receiver
        // Linux reports SO_RCVBUF doubled and charges each datagram its buffer's true size
        // (payload rounded up, plus about 1 KiB of overhead). Keep at most a quarter of it in
        // flight, and never more than 256 frames (the sender's pool holds 1024).
        let rcvbuf = receiver.info.ports.map(\.receiveBufferBytes).min() ?? 0
        let perDatagram = FrameLayout.headerSize + payloadBytes + 1024
        state.window.store(max(4, min(256, rcvbuf / 4 / perDatagram)), ordering: .releasing)

        var sc = EngineConfiguration.loopback(node: 1)
        sc.name = "bench-tx"
        // Busy-poll: the sender must notice a raised `requested` without being woken through its
        // inbox (which allocates). It spins only while a benchmark using it is set up.
        sc.pollMode = swapModes ? .blocking : .busyPoll
        let tick: Duration? = swapModes ? .microseconds(20) : nil
        let sender: EngineThread
        do {
            sender = try EngineThread.start(sc, driver: { StreamingSender(state: state, vis: vis, tick: tick) })
        } catch {
            receiver.stopAndWait()
            throw error
        }
        self.sender = sender

        do {
            func address(_ t: EngineThread, _ i: Int) throws -> FabricAddress {
                guard let a = FabricAddress(t.info.ports[i].address) else {
                    throw BenchError("unparsable port address \(t.info.ports[i].address)")
                }
                return a
            }
            let (sa, sb) = (try address(sender, 0), try address(sender, 1))
            let (ra, rb) = (try address(receiver, 0), try address(receiver, 1))
            try sender.control.establishAndWait(
                vis.map { (vi: $0, peer: $0.fabric == .a ? ra : rb, remoteVI: $0.number) })
            try receiver.control.establishAndWait(
                vis.map { (vi: $0, peer: $0.fabric == .a ? sa : sb, remoteVI: $0.number) })
            let posted = try receiver.runAndWait { engine in
                vis.allSatisfy { engine.postReceives(1 << 30, on: $0) }
            }
            guard posted else { throw BenchError("posting receives failed") }
        } catch {
            sender.stopAndWait()
            receiver.stopAndWait()
            throw error
        }
    }

    /// Asks for `count` more frames and waits, without allocating, until node 2 has been handed
    /// all of them. Fails the run (with the engines' counters) after ``timeout``.
    func deliver(_ count: Int) {
        let target = state.requested.add(count, ordering: .releasing).newValue
        spinWait(timeout: Self.timeout, until: { state.delivered.load(ordering: .acquiring) >= target }) {
            fail("timed out after \(Self.timeout) waiting for frame \(target)")
        }
        if state.badFrames.load(ordering: .relaxed) != 0 || state.sendFailures.load(ordering: .relaxed) != 0 {
            fail("frames arrived damaged or sends failed")
        }
    }

    /// Port counters of both engines, read on their threads (allocates; not for measured code).
    func diagnostics() -> String {
        func describe(_ t: EngineThread, _ name: String) -> String {
            do {
                return try t.runAndWait { e in
                    let a = e.counters(.a), b = e.counters(.b)
                    func line(_ f: String, _ c: PortCounters) -> String {
                        "\(name) \(f): out \(c.framesOut) in \(c.framesIn) datagramsIn \(c.datagramsIn) "
                            + "dropped \(c.dropped) malformed \(c.malformed) receiveQueueEmpty \(c.receiveQueueEmpty) "
                            + "bufferRingEmpty \(c.bufferRingEmpty) sendErrors \(c.sendErrors) "
                            + "zeroCopySends \(c.zeroCopySends)"
                    }
                    return line("A", a) + "\n" + line("B", b)
                        + "\n\(name) pool available \(e.pool.available)/\(e.pool.capacity), turns \(e.turns)"
                }
            } catch {
                return "\(name): \(error)"
            }
        }
        return """
            requested \(state.requested.load(ordering: .relaxed)) sent \(state.sent.load(ordering: .relaxed)) \
            delivered \(state.delivered.load(ordering: .relaxed)) window \(state.window.load(ordering: .relaxed)) \
            badFrames \(state.badFrames.load(ordering: .relaxed)) sendFailures \(state.sendFailures.load(ordering: .relaxed))
            \(describe(sender, "sender"))
            \(describe(receiver, "receiver"))
            """
    }

    /// Frames dropped anywhere on either port of either engine (must stay 0: a dropped frame
    /// would make `deliver` wait forever).
    func droppedFrames() -> UInt64 {
        let count: @Sendable (Engine) -> UInt64 = { e in e.counters(.a).dropped + e.counters(.b).dropped }
        return ((try? sender.runAndWait(count)) ?? 0) + ((try? receiver.runAndWait(count)) ?? 0)
    }

    /// Datagrams the sender sent inside UDP GSO batches (non-zero proves the GSO path ran).
    func gsoDatagrams() -> UInt64 {
        let count: @Sendable (Engine) -> UInt64 = { e in e.counters(.a).gsoDatagrams + e.counters(.b).gsoDatagrams }
        return (try? sender.runAndWait(count)) ?? 0
    }

    func fail(_ why: String) -> Never {
        report("CoreBenchmarks: \(why)\n")
        let details = diagnostics()
        report(details + "\n")
        fatalError("CoreBenchmarks: \(why)\n\(details)")
    }

    func stop() {
        sender.stopAndWait()
        receiver.stopAndWait()
    }
}

/// Waits for `condition` without allocating: yields for a while, then sleeps 20 µs at a time;
/// calls `timedOut` (which must not return) once `timeout` has passed.
///
/// The clock is read as plain nanoseconds (`nowNanos()`), not as `ContinuousClock.Instant`: the
/// first comparison of two instants in a process instantiates the runtime's witness table for
/// `ContinuousClock.Instant`'s conformance, and the metadata allocator may take a new 16 KB page
/// for it (one `malloc(16400)` from `swift_getWitnessTable`). The deadline is only checked every
/// 256 spins, so that first comparison came in whichever measured iteration was the first to
/// wait that long, on a loaded machine often inside `RVIFrames_16896B`'s measurement, where it
/// failed the gate as one allocation in 1000 messages.
@inline(__always)
func spinWait(timeout: Duration, until condition: () -> Bool, timedOut: () -> Never) {
    let (seconds, attoseconds) = timeout.components
    let deadline = nowNanos() + UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
    var spins = 0
    while !condition() {
        spins &+= 1
        if spins < 64 {
            sched_yield()
            continue
        }
        var pause = timespec(tv_sec: 0, tv_nsec: 20_000)
        nanosleep(&pause, nil)
        if spins & 255 == 0 && nowNanos() > deadline { timedOut() }
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A copy of standard error taken when the benchmarks are registered. The runner points fds 1
/// and 2 at /dev/null while it measures when the tool runs with `--no-progress` (as the CI
/// script does), which would swallow the reason of a failure.
let savedStandardError: Int32 = dup(2)

/// Writes straight to the saved standard error (unbuffered, before a crash).
func report(_ text: String) {
    var text = text
    text.withUTF8 { _ = write(savedStandardError >= 0 ? savedStandardError : 2, $0.baseAddress, $0.count) }
}
