import PlexusCore
import PlexusRCLAN
import Synchronization

/// The sending end of the RVI benchmarks, in this process: streams whole frames (zero-copy) or
/// small coalesced messages until a deadline and then waits for every message to be
/// acknowledged, or plays ping-pong with the peer's echo.
final class RVIBenchSender: RVIDelegate {
    enum Mode: Sendable {
        case frames(size: Int)
        case messages(size: Int)
        case ping(size: Int, count: Int, warmup: Int)
    }

    struct Plan: Sendable {
        var mode: Mode
        var nanos: UInt64
        /// Fail fabric A under this sender (fault layer, `down`) this long after the start.
        var failLegAAfter: UInt64?
        /// Run this once, on the engine thread, that long after the start (e.g. `ip link set
        /// … down` in another thread is signalled by it).
        var lossOnA: Double = 0
        var seed: UInt64 = 1
    }

    let progress: Progress
    var rvi: RVI?
    var plan: Plan?
    var startedAt: UInt64 = 0
    var deadline: UInt64 = 0
    var posted: UInt64 = 0
    var acked: UInt64 = 0
    var lastAckAt: UInt64 = 0
    var endedAt: UInt64 = 0
    var stopped = false
    var failed: UInt64 = 0
    var legFailedAt: UInt64 = 0
    var events: [(UInt64, String)] = []
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: FrameLayout.maxPayload, alignment: 8)
    // Ping-pong.
    let samples: UnsafeMutableBufferPointer<UInt64>
    var pingCount = 0
    var pingSentAt: UInt64 = 0
    var pingSeq: UInt64 = 0

    init(progress: Progress, pingCapacity: Int) {
        self.progress = progress
        samples = .allocate(capacity: max(1, pingCapacity))
        scratch.initializeMemory(as: UInt8.self, repeating: 0x5A)
    }

    deinit {
        scratch.deallocate()
        samples.deallocate()
    }

    func start(_ plan: Plan, layer: RCLAN) {
        self.plan = plan
        startedAt = nowNanos()
        deadline = startedAt + plan.nanos
        if plan.lossOnA > 0 {
            layer.engine.setFaults(FaultPlan(seed: plan.seed, dropPercent: plan.lossOnA), on: .a)
        }
        if case .ping(_, _, let warmup) = plan.mode {
            pingCount = -warmup
            ping(layer)
        }
    }

    func layerTurn(_ layer: RCLAN) {
        guard let plan, let rvi, endedAt == 0 else { return }
        let now = nowNanos()
        if let after = plan.failLegAAfter, legFailedAt == 0, now - startedAt >= after {
            legFailedAt = now
            layer.engine.setFaults(FaultPlan(down: true), on: .a)
        }
        switch plan.mode {
        case .ping:
            return
        case .frames(let size):
            guard now < deadline else { break }
            while layer.canSend(on: rvi), var f = layer.engine.takeFrame() {
                f.length = size
                let n = posted + 1
                if size >= 8 { f.withUnsafeMutablePayload { $0.storeBytes(of: n.littleEndian, as: UInt64.self) } }
                var frame: Frame? = consume f
                do { _ = try layer.send(&frame, on: rvi) } catch { break }
                posted = n
            }
        case .messages(let size):
            guard now < deadline else { break }
            for _ in 0..<4096 {
                let n = posted + 1
                if size >= 8 { scratch.storeBytes(of: n.littleEndian, as: UInt64.self) }
                do { _ = try layer.send(UnsafeRawBufferPointer(rebasing: scratch[0..<size]).bytes, on: rvi) } catch { break }
                posted = n
            }
        }
        if now >= deadline { stopped = true }
        if stopped && acked + failed >= posted {
            endedAt = max(lastAckAt, deadline)
            progress.finished.store(true, ordering: .releasing)
        }
    }

    func acknowledged(on rvi: RVI, through: UInt64, layer: RCLAN) {
        acked = through
        lastAckAt = nowNanos()
    }

    func sendFailed(on rvi: RVI, messages: Range<UInt64>, reason: RVIFailure, layer: RCLAN) {
        failed += UInt64(messages.count)
    }

    func event(_ event: RVIEvent, on rvi: RVI, layer: RCLAN) {
        events.append((nowNanos() - startedAt, event.description))
    }

    func ping(_ layer: RCLAN) {
        guard let rvi, case .ping(let size, _, _) = plan?.mode else { return }
        pingSeq += 1
        if size >= 8 { scratch.storeBytes(of: pingSeq.littleEndian, as: UInt64.self) }
        pingSentAt = nowNanos()
        _ = try? layer.send(UnsafeRawBufferPointer(rebasing: scratch[0..<size]).bytes, on: rvi)
    }

    func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        guard case .ping(_, let count, _) = plan?.mode else { return }
        let rtt = nowNanos() - pingSentAt
        if pingCount >= 0 { samples[pingCount] = rtt }
        pingCount += 1
        if pingCount < count {
            ping(layer)
        } else {
            endedAt = nowNanos()
            progress.finished.store(true, ordering: .releasing)
        }
    }
}

/// The far end of the RVI benchmarks (in `plexus bench-peer --mode rvi`): counts messages and
/// bytes, checks that the index each message carries is the next one (so loss and duplication
/// are seen, not assumed), and measures the longest gap between deliveries. With `echo` it
/// sends every message straight back.
final class RVIBenchSink: RVIDelegate {
    let echo: Bool
    var rvi: RVI?
    var messages: UInt64 = 0
    var bytes: UInt64 = 0
    var expected: UInt64 = 1
    var lost: UInt64 = 0
    var duplicated: UInt64 = 0
    var lastAt: UInt64 = 0
    var longestGap: UInt64 = 0
    var echoFailures: UInt64 = 0

    init(echo: Bool) { self.echo = echo }

    func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        let now = nowNanos()
        if lastAt != 0 && now - lastAt > longestGap { longestGap = now - lastAt }
        lastAt = now
        messages &+= 1
        bytes &+= UInt64(message.byteCount)
        if message.byteCount >= 8 {
            let n = UInt64(littleEndian: message.unsafeLoadUnaligned(as: UInt64.self))
            if n > expected { lost += n - expected }
            if n < expected { duplicated += 1 } else { expected = n + 1 }
        }
        if echo {
            do { _ = try layer.send(message, on: rvi) } catch { echoFailures += 1 }
        }
    }
}
