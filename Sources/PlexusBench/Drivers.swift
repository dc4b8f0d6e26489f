import PlexusCore
import Synchronization

/// Progress shared between an engine-thread driver and the thread that runs the benchmark.
final class Progress: Sendable {
    let finished = Atomic<Bool>(false)
    let value = Atomic<Int>(0)
}

/// Streams frames of `size` bytes round-robin over `vis` until its deadline, at most `batch`
/// per loop turn (one submission per turn, as the raw io_uring baseline does). Either plain VI
/// sends or RDMA WRITEs into a remote region.
final class StreamSender: EngineDriver {
    struct Plan: Sendable {
        var vis: [VI]
        var size: Int
        var batch: Int
        var nanos: UInt64
        var rdma: (key: RegionKey, regionBytes: Int)?
    }
    var plan: Plan?
    var deadline: UInt64 = 0
    var startedAt: UInt64 = 0
    var next = 0
    var offset: UInt64 = 0
    var sent: UInt64 = 0
    var failed: UInt64 = 0
    var refused: UInt64 = 0
    let progress: Progress
    var endedAt: UInt64 = 0

    init(progress: Progress) { self.progress = progress }

    func start(_ plan: Plan) {
        self.plan = plan
        startedAt = nowNanos()
        deadline = startedAt + plan.nanos
        endedAt = 0
        progress.finished.store(false, ordering: .releasing)
    }

    func engineTurn(_ engine: Engine) {
        guard let plan else { return }
        let now = nowNanos()
        if now >= deadline {
            if endedAt == 0 {
                endedAt = now
                progress.finished.store(true, ordering: .releasing)
            }
            return
        }
        var n = 0
        while n < plan.batch, var f = engine.takeFrame() {
            f.length = plan.size
            let vi = plan.vis[next]
            next += 1
            if next == plan.vis.count { next = 0 }
            do {
                if let r = plan.rdma {
                    if offset + UInt64(plan.size) > UInt64(r.regionBytes) { offset = 0 }
                    try engine.rdmaWrite(f, on: vi, region: r.key, offset: offset)
                    offset += UInt64(plan.size)
                } else {
                    try engine.send(f, on: vi)
                }
                sent &+= 1
            } catch {
                failed &+= 1
            }
            n += 1
        }
    }

    func sendCompleted(on vi: VI, result: SendCompletion, engine: Engine) {
        if case .failed = result { failed &+= 1 }
    }

    func rdmaWriteRefused(on vi: VI, error: RDMAError, region: RegionKey, offset: UInt64, engine: Engine) {
        refused &+= 1
    }
}

/// Counts what arrives and keeps receives posted.
final class CountingSink: EngineDriver {
    var frames: UInt64 = 0
    var bytes: UInt64 = 0
    func received(_ frame: consuming InboundFrame, engine: Engine) {
        frames &+= 1
        bytes &+= UInt64(frame.count)
        engine.postReceives(1, on: frame.vi)
    }
}

/// Sends each frame straight back on the VI it came in on.
final class EchoDriver: EngineDriver {
    var echoed: UInt64 = 0
    func received(_ frame: consuming InboundFrame, engine: Engine) {
        let vi = frame.vi
        engine.postReceives(1, on: vi)
        guard var out = engine.takeFrame() else { return }
        frame.withUnsafeBytes { src in
            out.withUnsafeMutablePayload { dst in dst.copyMemory(from: src) }
        }
        out.length = frame.count
        do {
            try engine.send(out, on: vi)
            echoed &+= 1
        } catch {}
    }
}

/// Ping-pong: sends one frame, waits for it to come back, records the round trip, repeats.
final class Pinger: EngineDriver {
    let samples: UnsafeMutableBufferPointer<UInt64>
    var count = 0
    var target = 0
    var warmup = 0
    var size = 0
    var vi = VI(.a, 1)
    var sentAt: UInt64 = 0
    let progress: Progress

    init(capacity: Int, progress: Progress) {
        samples = .allocate(capacity: capacity)
        self.progress = progress
    }
    deinit { samples.deallocate() }

    func start(vi: VI, size: Int, count: Int, warmup: Int, engine: Engine) {
        self.vi = vi
        self.size = size
        self.target = count
        self.warmup = warmup
        self.count = -warmup
        ping(engine)
    }

    var lost = 0
    var started = false

    func ping(_ engine: Engine) {
        guard var f = engine.takeFrame() else { return }
        f.length = size
        sentAt = nowNanos()
        started = true
        try? engine.send(f, on: vi)
    }

    /// A ping lost on the way (UDP has no retransmission below Plexus's reliability layer) is
    /// noticed here after 200 ms and sent again; blocking mode wakes at least on the next frame.
    func engineTurn(_ engine: Engine) {
        guard started, count < target, nowNanos() - sentAt > 200_000_000 else { return }
        lost += 1
        ping(engine)
    }

    func received(_ frame: consuming InboundFrame, engine: Engine) {
        let rtt = nowNanos() - sentAt
        engine.postReceives(1, on: frame.vi)
        if count >= 0 { samples[count] = rtt }
        count += 1
        if count < target { ping(engine) } else { progress.finished.store(true, ordering: .releasing) }
    }
}
