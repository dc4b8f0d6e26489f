import CPlexus
import Foundation
import Histogram
import PlexusCore
import Synchronization

// The fabric core's scenarios: streams of VI sends or RDMA WRITEs and ping-pong over a VI,
// between this process and a `plexus bench-peer` child, against the raw UDP pairs.

/// vi-throughput: frames/s and GB/s one way over one VI, against the raw pairs.
public func viThroughput(_ options: BenchOptions) throws -> StreamComparison { try options.throughputScenario() }
/// vi-latency: round trips over a VI against the raw pairs' (p50/p99/p99.9).
public func viLatency(_ options: BenchOptions) throws -> LatencyComparison { try options.latencyScenario() }
/// rdma-write: bytes landed in a remote region, against VI sends of the same size.
public func rdmaWrite(_ options: BenchOptions) throws -> ReferenceComparison { try options.rdmaScenario() }
/// vi-scale: traffic round-robin over `vis` VIs against one VI.
public func viScale(_ options: BenchOptions) throws -> ReferenceComparison { try options.scaleScenario() }

extension BenchOptions {
    // MARK: Streams

    struct Stream {
        var sent: UInt64
        var received: UInt64
        var bytes: UInt64
        var nanos: UInt64
        var dropped: UInt64
        var framesPerSecond: Double { Double(received) / (Double(nanos) / 1e9) }
        var gbytesPerSecond: Double { Double(bytes) / (Double(nanos) / 1e9) / 1e9 }
        var lost: UInt64 { sent > received ? sent - received : 0 }
        var figures: StreamFigures {
            StreamFigures(framesPerSecond: round(framesPerSecond), gbytesPerSecond: gbytesPerSecond, sent: sent,
                          delivered: received, lost: lost)
        }
    }

    func senderConfiguration(maxVIs: Int = 16384) -> EngineConfiguration {
        var c = EngineConfiguration.loopback(node: 1)
        c.cpu = 0
        c.pollMode = busyPoll ? .busyPoll : .blocking
        c.maxVIs = max(maxVIs, 16384)
        return c
    }

    /// One Plexus stream: this process sends, the child counts (or lands RDMA writes).
    func plexusStream(size: Int, vis: Int, fabrics: [Fabric], rdma: Bool) throws -> Stream {
        let peer = try PeerProcess(["--mode", "plexus", "--role", rdma ? "rdma-sink" : "sink", "--vis", "\(vis)",
                                    "--fabric", fabrics.count == 2 ? "both" : fabrics[0].description.lowercased()]
                                   + (busyPoll ? ["--busy-poll"] : []))
        let ready = try peer.expect("READY")
        let progress = Progress()
        let thread = try EngineThread.start(senderConfiguration(maxVIs: vis + 1)) { StreamSender(progress: progress) }
        defer { thread.stopAndWait() }
        peer.say("PEER " + jsonLine(["a": thread.info.ports[0].address, "b": thread.info.ports[1].address]))
        let pa = FabricAddress(ready["a"] as! String)!, pb = FabricAddress(ready["b"] as! String)!
        var list: [(vi: VI, peer: FabricAddress, remoteVI: UInt32)] = []
        for n in 1...UInt32(vis) {
            for f in fabrics { list.append((VI(f, n), f == .a ? pa : pb, n)) }
        }
        try thread.control.establishAndWait(list)
        for f in faults { try thread.control.setFaultsAndWait(f.plan, on: f.fabric) }
        let go = try peer.expect("GO")
        let plan = StreamSender.Plan(
            vis: list.map(\.vi), size: size, batch: 32, nanos: UInt64(seconds * 1e9),
            rdma: rdma ? (RegionKey(rawValue: UInt32(go["key"] as! Int)), go["region_bytes"] as! Int) : nil)
        try thread.runAndWait { ($0.installedDriver as! StreamSender).start(plan) }
        try waitFor(progress, seconds: seconds + 30)
        // Wait for every send completion: all frames back in the pool.
        let deadline = nowNanos() + 10_000_000_000
        while try thread.runAndWait({ $0.pool.outstanding }) > 0 && nowNanos() < deadline { usleep(1000) }
        let (sent, failed, elapsed) = try thread.runAndWait { e in
            let s = e.installedDriver as! StreamSender
            return (s.sent, s.failed + s.refused, s.endedAt - s.startedAt)
        }
        let r = try peer.finish()
        let received = rdma ? (r["rdma_bytes"] as! UInt64) / UInt64(size) : r["frames"] as! UInt64
        let bytes = rdma ? r["rdma_bytes"] as! UInt64 : r["bytes"] as! UInt64
        return Stream(sent: sent - min(sent, failed), received: received, bytes: bytes, nanos: elapsed,
                      dropped: r["dropped"] as? UInt64 ?? 0)
    }

    /// Starts a raw (no Plexus) peer process in `role`, and a socket here connected to it, with
    /// this thread pinned to CPU 0. The caller closes the socket.
    func rawPeer(_ method: BaselineMethod, role: String) throws -> (PeerProcess, Int32) {
        let peer = try PeerProcess(["--mode", method == .uring ? "io_uring" : "plain", "--role", role]
                                   + (busyPoll && role == "echo" ? ["--busy-poll"] : []))
        let ready = try peer.expect("READY")
        let (fd, bound) = try RawUDP.open(.loopback(node: 1, fabric: .a, port: 0))
        RawUDP.connect(fd, to: FabricAddress(ready["a"] as! String)!)
        peer.say("PEER " + jsonLine(["a": bound.description]))
        _ = try peer.expect("GO")
        _ = plx_pin_current_thread(0)
        return (peer, fd)
    }

    func rawStream(_ method: BaselineMethod, size: Int) throws -> Stream {
        let (peer, fd) = try rawPeer(method, role: "sink")
        defer { close(fd) }
        let nanos = UInt64(seconds * 1e9)
        let (sent, elapsed) = switch method {
        case .plain: RawUDP.plainSend(fd: fd, size: size, nanos: nanos)
        case .plainGSO: RawUDP.plainGSOSend(fd: fd, size: size, nanos: nanos)
        case .uring: try UringUDP(fd: fd).stream(size: size, nanos: nanos)
        }
        let r = try peer.finish()
        return Stream(sent: sent, received: r["frames"] as! UInt64, bytes: r["bytes"] as! UInt64, nanos: elapsed,
                      dropped: 0)
    }

    /// What one measured stream is: Plexus (over some VIs, maybe as RDMA WRITEs) or a raw pair.
    enum StreamKind {
        case plexus(vis: Int, fabrics: [Fabric], rdma: Bool)
        case raw(BaselineMethod)
    }

    /// Runs the named streams interleaved across rounds; the median of each by frames/s.
    func interleaved(_ kinds: KeyValuePairs<String, StreamKind>) throws -> [String: Stream] {
        try interleaved(kinds.map(\.key)) { name in
            switch kinds.first(where: { $0.key == name })!.value {
            case .plexus(let vis, let fabrics, let rdma): try plexusStream(size: size, vis: vis, fabrics: fabrics, rdma: rdma)
            case .raw(let method): try rawStream(method, size: size)
            }
        }
    }

    /// Median (by frames/s) of the runs of each method, interleaved across rounds.
    func interleaved(_ methods: [String], _ run: (String) throws -> Stream) throws -> [String: Stream] {
        var all: [String: [Stream]] = [:]
        for round in 0..<rounds {
            for k in 0..<methods.count {
                let m = methods[(k + round) % methods.count]
                let s = try run(m)
                note(String(format: "  round %d %-10@ %@  %@  lost %llu", round + 1, m as NSString,
                            human(rate: s.framesPerSecond) as NSString, human(gbps: s.gbytesPerSecond) as NSString,
                            s.lost))
                all[m, default: []].append(s)
            }
        }
        return all.mapValues { runs in runs.sorted { $0.framesPerSecond < $1.framesPerSecond }[runs.count / 2] }
    }

    func baselineObject(_ m: [String: Stream]) -> (object: RawBaseline<StreamFigures>, best: Stream) {
        let u = m["io_uring"]!, p = m["plain"]!
        let best = u.framesPerSecond >= p.framesPerSecond ? u : p
        let o = RawBaseline(best: best.figures, method: u.framesPerSecond >= p.framesPerSecond ? "io_uring" : "plain",
                            ioUring: u.figures, plain: p.figures)
        return (o, best)
    }

    func throughputScenario() throws -> StreamComparison {
        note("vi-throughput: \(size)-byte frames for \(seconds) s, \(rounds) interleaved rounds")
        let runs = try interleaved([
            "plexus": .plexus(vis: 1, fabrics: fabric.fabrics, rdma: false), "io_uring": .raw(.uring),
            "plain": .raw(.plain), "plain_gso": .raw(.plainGSO),
        ])
        var (baseline, best) = baselineObject(runs)
        // Informational, outside the ratio: a plain sender using the same UDP GSO batching.
        baseline.plainGSO = runs["plain_gso"]!.figures
        let plexus = runs["plexus"]!
        let ratio = plexus.framesPerSecond / best.framesPerSecond
        say(String(format: "vi-throughput %d B: plexus %@ (%@), baseline %@ (%@, %@), ratio %.3f",
                     size, human(rate: plexus.framesPerSecond), human(gbps: plexus.gbytesPerSecond),
                     human(rate: best.framesPerSecond), human(gbps: best.gbytesPerSecond),
                     baseline.method, ratio))
        return StreamComparison(plexus: plexus.figures, baseline: baseline, ratio: ratio,
                                ratioToPlainGSO: plexus.framesPerSecond / runs["plain_gso"]!.framesPerSecond)
    }

    func rdmaScenario() throws -> ReferenceComparison {
        note("rdma-write: \(size)-byte writes for \(seconds) s against VI sends of the same size, \(rounds) rounds")
        let runs = try interleaved([
            "rdma": .plexus(vis: 1, fabrics: [.a], rdma: true), "vi-send": .plexus(vis: 1, fabrics: [.a], rdma: false),
            "io_uring": .raw(.uring), "plain": .raw(.plain),
        ])
        let rdma = runs["rdma"]!, vi = runs["vi-send"]!
        let (raw, best) = baselineObject(runs)
        let ratio = rdma.gbytesPerSecond / vi.gbytesPerSecond
        say(String(format: "rdma-write %d B: landed %@, vi-send %@, ratio %.3f (raw best %@, %.3f)", size,
                     human(gbps: rdma.gbytesPerSecond), human(gbps: vi.gbytesPerSecond), ratio,
                     human(gbps: best.gbytesPerSecond), rdma.gbytesPerSecond / best.gbytesPerSecond))
        var plexus = rdma.figures
        plexus.gbytesLandedPerSecond = rdma.gbytesPerSecond
        return ReferenceComparison(
            plexus: plexus,
            baseline: ReferenceBaseline(viSend: vi.figures, raw: raw, note: "ratio is rdma ÷ vi_send (the issue's target); ratio_to_raw is rdma ÷ the better raw UDP pair"),
            ratio: ratio, ratioToRaw: rdma.gbytesPerSecond / best.gbytesPerSecond)
    }

    func scaleScenario() throws -> ReferenceComparison {
        note("vi-scale: \(size)-byte frames round-robin over \(vis) VIs against 1 VI, \(rounds) rounds")
        let runs = try interleaved([
            "scale": .plexus(vis: vis, fabrics: [.a], rdma: false), "single": .plexus(vis: 1, fabrics: [.a], rdma: false),
            "io_uring": .raw(.uring), "plain": .raw(.plain),
        ])
        let scale = runs["scale"]!, single = runs["single"]!
        let (raw, best) = baselineObject(runs)
        let ratio = scale.framesPerSecond / single.framesPerSecond
        say(String(format: "vi-scale %d VIs: %@, one VI %@, ratio %.3f (raw best %@)", vis,
                     human(rate: scale.framesPerSecond), human(rate: single.framesPerSecond), ratio,
                     human(rate: best.framesPerSecond)))
        var plexus = scale.figures
        plexus.vis = vis
        return ReferenceComparison(
            plexus: plexus, baseline: ReferenceBaseline(singleVI: single.figures, raw: raw, note: "ratio is \(vis) VIs ÷ one VI"),
            ratio: ratio, ratioToRaw: scale.framesPerSecond / best.framesPerSecond)
    }

    // MARK: Latency

    func plexusPing() throws -> [UInt64] {
        let peer = try PeerProcess(["--mode", "plexus", "--role", "echo"] + (busyPoll ? ["--busy-poll"] : []))
        let ready = try peer.expect("READY")
        let progress = Progress()
        let warmup = min(1000, count)
        let n = count
        let thread = try EngineThread.start(senderConfiguration()) { Pinger(capacity: n, progress: progress) }
        defer { thread.stopAndWait() }
        peer.say("PEER " + jsonLine(["a": thread.info.ports[0].address, "b": thread.info.ports[1].address]))
        try thread.control.establishAndWait(VI(.a, 1), peer: FabricAddress(ready["a"] as! String)!, remoteVI: 1)
        _ = try peer.expect("GO")
        let size = self.size
        try thread.runAndWait { e in
            e.postReceives(1 << 40, on: VI(.a, 1))
            (e.installedDriver as! Pinger).start(vi: VI(.a, 1), size: size, count: n, warmup: warmup, engine: e)
        }
        try waitFor(progress, seconds: 120)
        let samples = try thread.runAndWait { e in Array((e.installedDriver as! Pinger).samples) }
        _ = try peer.finish()
        return samples
    }

    func rawPing(_ method: BaselineMethod) throws -> [UInt64] {
        let (peer, fd) = try rawPeer(method, role: "echo")
        defer { close(fd) }
        let warmup = min(1000, count)
        let samples = method == .plain
            ? RawUDP.plainPing(fd: fd, size: size, count: count, warmup: warmup, busyPoll: busyPoll)
            : try UringUDP(fd: fd).ping(size: size, count: count, warmup: warmup, busyPoll: busyPoll)
        _ = try peer.finish()
        return samples
    }

    func summarize(_ samples: [UInt64]) -> LatencyFigures {
        var h = Histogram<UInt64>(highestTrackableValue: 10_000_000_000, numberOfSignificantValueDigits: .three)
        for s in samples { h.record(s) }
        func us(_ p: Double) -> Double { Double(h.valueAtPercentile(p)) / 1000 }
        return LatencyFigures(p50: us(50), p99: us(99), p999: us(99.9), samples: samples.count)
    }

    func latencyScenario() throws -> LatencyComparison {
        try latencyComparison("vi-latency", what: "round trips", ping: plexusPing)
    }

    /// Round trips of `ping` (Plexus) against both raw pairs, interleaved over the rounds;
    /// medians by p50.
    func latencyComparison(_ name: String, what: String, ping: () throws -> [UInt64]) throws -> LatencyComparison {
        note("\(name): \(size)-byte \(what) ×\(count), \(busyPoll ? "busy-poll" : "blocking"), \(rounds) rounds")
        var all: [String: [LatencyFigures]] = [:]
        let methods = ["plexus", "io_uring", "plain"]
        for round in 0..<rounds {
            for k in 0..<methods.count {
                let m = methods[(k + round) % methods.count]
                let l = summarize(try m == "plexus" ? ping() : rawPing(m == "plain" ? .plain : .uring))
                note(String(format: "  round %d %-8@ p50 %.1f µs  p99 %.1f µs", round + 1, m as NSString, l.p50, l.p99))
                all[m, default: []].append(l)
            }
        }
        let med = all.mapValues { $0.sorted { $0.p50 < $1.p50 }[$0.count / 2] }
        let plexus = med["plexus"]!, u = med["io_uring"]!, p = med["plain"]!
        let best = u.p50 <= p.p50 ? u : p
        let baseline = RawBaseline(best: best, method: u.p50 <= p.p50 ? "io_uring" : "plain", ioUring: u, plain: p)
        let ratio = plexus.p50 / best.p50
        say(String(format: "%@ %d B %@: plexus p50 %.1f µs p99 %.1f µs; baseline p50 %.1f µs (%@); ratio %.3f",
                     name as NSString, size, (busyPoll ? "busy-poll" : "blocking") as NSString, plexus.p50, plexus.p99,
                     best.p50, baseline.method, ratio))
        return LatencyComparison(plexus: plexus, baseline: baseline, ratio: ratio)
    }

    func waitFor(_ progress: Progress, seconds: Double) throws {
        let deadline = nowNanos() + UInt64(seconds * 1e9)
        while !progress.finished.load(ordering: .acquiring) {
            if nowNanos() > deadline { throw BenchError("the benchmark did not finish within \(seconds) s") }
            usleep(20_000)  // rarely: a waking thread would preempt a spinning engine
        }
    }
}
