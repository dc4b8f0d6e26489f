import ArgumentParser
import CPlexus
import Foundation
import Histogram
import PlexusCore
import PlexusLAN
import PlexusNode
import PlexusRCLAN
import Synchronization

/// `plexus bench SCENARIO`: Plexus against minimal UDP pairs, measured side by side in one run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the fabric core against raw UDP baselines in the same run.",
        discussion: """
            Every scenario runs between two processes on loopback (this one, pinned to CPU 0, and \
            a `plexus bench-peer` child it starts, pinned to CPU 1). Each figure is measured \
            alongside two baselines with no Plexus layers, in the same run, interleaved over \
            --rounds rounds (medians are reported):
              io_uring  batched IORING_OP_SEND (32 per submission) and multishot recv into a \
            provided-buffer ring, same ring flags as Plexus
              plain     send()/recv() on connected sockets
            vi-throughput also reports, outside the ratio, `plain_gso`: plain sendmsg with \
            UDP_SEGMENT batching (the kernel facility Plexus groups its sends with), and \
            `ratio_to_plain_gso`.
            `ratio` is Plexus ÷ the better baseline for throughput, and Plexus p50 ÷ the better \
            baseline p50 for latency.

            Scenarios:
              vi-throughput  --size N --seconds S     frames/s and GB/s one way, delivered and lost
              vi-latency     --size N --count C [--busy-poll]   round-trip p50/p99/p99.9 (µs)
              rdma-write     --size N --seconds S     GB/s landed in a remote region, against \
            vi-throughput at the same size in the same run
              vi-scale       --vis 16384 --size N     traffic over 16384 VIs against one VI

            Redundant VIs (the RCLAN layer: both fabrics, every message acknowledged):
              rvi-throughput --size N --seconds S     reliable messages one way, against the             raw pairs at the same size
              rvi-messages   --size 64 --seconds S    small messages per second with coalescing,             against one raw datagram per message
              rvi-latency    --size 64 --count C [--busy-poll]   round trip over an RVI
              rvi-failover   --size N [--link]        fabric A fails a third of the way in (fault             layer, or with --link a real `ip link set down` on a veth pair into a namespace;             needs root); reports gap_ms, lost, duplicated
              rvi-loss       --loss 5                 throughput with that loss on leg A, against             the lossless run

            Virtual LANs (root: two control nodes and two processing nodes in network \
            namespaces, each NIC a TAP device; real iperf3 and ping between the processing nodes, \
            against the same two namespaces joined directly by a kernel veth pair):
              vlan-tcp       --seconds S              iperf3 TCP Gbit/s; target ratio ≥ 0.30
              vlan-ping      --count C [--busy-poll]  ping p50/p99; target p50 ≤ 3 × veth
              vlan-failover  --seconds S              iperf3 with control node 1 stopped at 1/3 \
            and fabric A failed at 2/3: gap_ms (target ≤ 50) and whether TCP survived

            Processor failover (root; python3):
              failover       --rounds R               kill -9 of a web service's processor; \
            detect_ms, migrate_ms, total_ms to the first good reply from the spare (target ≤ 300) \
            and failed_requests, against the same service restarted in place

            With --json the last line of output is one JSON object: scenario, parameters, \
            `plexus`, `baseline`, `ratio`, machine and date.
            """)

    enum Scenario: String, ExpressibleByArgument, CaseIterable {
        case viThroughput = "vi-throughput"
        case viLatency = "vi-latency"
        case rdmaWrite = "rdma-write"
        case viScale = "vi-scale"
        case rviThroughput = "rvi-throughput"
        case rviMessages = "rvi-messages"
        case rviLatency = "rvi-latency"
        case rviFailover = "rvi-failover"
        case rviLoss = "rvi-loss"
        case vlanTCP = "vlan-tcp"
        case vlanPing = "vlan-ping"
        case vlanFailover = "vlan-failover"
        case failover
    }

    @Argument(help: "vi-throughput, vi-latency, rdma-write, vi-scale, rvi-throughput, rvi-messages, rvi-latency, rvi-failover, rvi-loss, vlan-tcp, vlan-ping, vlan-failover or failover.")
    var scenario: Scenario
    @Option(help: "Payload bytes per frame (1...16896).")
    var size: Int = 16896
    @Option(help: "Seconds each measured stream runs.")
    var seconds: Double = 2
    @Option(help: "Round trips per latency measurement.")
    var count: Int = 20000
    @Option(help: "VIs for vi-scale.")
    var vis: Int = 16384
    @Option(help: "Interleaved rounds; medians are reported.")
    var rounds: Int = 3
    @Option(help: "Which fabric(s) Plexus streams over: a, b or both.")
    var fabric: FabricChoice = .a
    @Flag(help: "Spin instead of sleeping (both Plexus and the baselines).")
    var busyPoll = false
    @Option(help: "RVI load balancing: alternate, fewest-bytes, active-standby[:a|:b].")
    var policy: String = "alternate"
    @Option(help: "RVI heartbeat interval in microseconds (a leg is down after 5 missed).")
    var heartbeatUs: Int = 1000
    @Option(help: "Percent of frames lost on leg A (rvi-loss).")
    var loss: Double = 5
    @Flag(help: "rvi-failover: fail fabric A with `ip link set down` on a veth pair (needs root).")
    var link = false
    @Flag(help: "Print one JSON object as the last line.")
    var json = false
    @Option(name: .customLong("fault"), parsing: .singleValue,
            help: "Inject faults under the Plexus sender's fabric (repeatable): FABRIC:PLAN, e.g. a:drop=5,seed=7. Baselines run without.")
    var faults: [String] = []

    func validate() throws {
        guard (1...FrameLayout.maxPayload).contains(size) else { throw ValidationError("--size must be in 1...16896") }
        guard seconds > 0 && seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600]") }
        guard count > 0 && count <= 10_000_000 else { throw ValidationError("--count must be in 1...10000000") }
        guard (1...1_000_000).contains(vis) else { throw ValidationError("--vis must be in 1...1000000") }
        guard (1...50).contains(rounds) else { throw ValidationError("--rounds must be in 1...50") }
        try validateFaults(faults)
        do { _ = try LoadBalancing(parsing: policy) } catch { throw ValidationError("--policy: \(error)") }
        guard heartbeatUs >= 100 && heartbeatUs <= 10_000_000 else { throw ValidationError("--heartbeat-us must be in 100...10000000") }
        guard loss > 0 && loss < 100 else { throw ValidationError("--loss must be in (0, 100)") }
        if link && scenario != .rviFailover { throw ValidationError("--link applies to rvi-failover only") }
    }

    func run() throws {
        let parameters: [String: Any]
        var result: [String: Any]
        switch scenario {
        case .viThroughput:
            parameters = ["size": size, "seconds": seconds, "rounds": rounds, "fabric": fabric.rawValue]
            result = try throughputScenario()
        case .viLatency:
            parameters = ["size": size, "count": count, "rounds": rounds, "busy_poll": busyPoll]
            result = try latencyScenario()
        case .rdmaWrite:
            parameters = ["size": size, "seconds": seconds, "rounds": rounds]
            result = try rdmaScenario()
        case .viScale:
            parameters = ["size": size, "seconds": seconds, "rounds": rounds, "vis": vis]
            result = try scaleScenario()
        case .rviThroughput:
            parameters = ["size": size, "seconds": seconds, "rounds": rounds, "policy": policy]
            result = try rviThroughputScenario()
        case .rviMessages:
            parameters = ["size": size, "seconds": seconds, "rounds": rounds, "policy": policy]
            result = try rviMessagesScenario()
        case .rviLatency:
            parameters = ["size": size, "count": count, "rounds": rounds, "busy_poll": busyPoll]
            result = try rviLatencyScenario()
        case .rviFailover:
            parameters = ["size": size, "seconds": seconds, "rounds": rounds, "policy": policy, "link": link]
            result = try rviFailoverScenario()
        case .rviLoss:
            parameters = ["size": size, "seconds": seconds, "rounds": rounds, "loss": loss, "policy": policy]
            result = try rviLossScenario()
        case .vlanTCP:
            parameters = ["seconds": seconds, "rounds": rounds, "mtu": TAP.maximumMTU]
            result = try vlanTCPScenario()
        case .vlanPing:
            parameters = ["count": count, "rounds": rounds, "busy_poll": busyPoll]
            result = try vlanPingScenario()
        case .vlanFailover:
            parameters = ["seconds": max(seconds, 3)]
            result = try vlanFailoverScenario()
        case .failover:
            parameters = ["rounds": rounds]
            result = try failoverScenario()
        }
        result["scenario"] = scenario.rawValue
        result["parameters"] = parameters
        result["machine"] = Machine.describe()
        result["date"] = ISO8601DateFormatter().string(from: Date())
        result["command"] = (["plexus"] + CommandLine.arguments.dropFirst()).joined(separator: " ")
        if !faults.isEmpty { result["faults"] = faults }
        if json { print(jsonLine(result)) }
    }

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
        var json: [String: Any] {
            ["frames_per_s": round(framesPerSecond), "gbytes_per_s": gbytesPerSecond, "sent": sent,
             "delivered": received, "lost": lost]
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
        for f in faults.compactMap(FaultOption.init(argument:)) { try thread.control.setFaultsAndWait(f.plan, on: f.fabric) }
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

    func baselineObject(_ m: [String: Stream]) -> (object: [String: Any], best: Stream) {
        let u = m["io_uring"]!, p = m["plain"]!
        let best = u.framesPerSecond >= p.framesPerSecond ? u : p
        var o = best.json
        o["method"] = u.framesPerSecond >= p.framesPerSecond ? "io_uring" : "plain"
        o["io_uring"] = u.json
        o["plain"] = p.json
        return (o, best)
    }

    func throughputScenario() throws -> [String: Any] {
        note("vi-throughput: \(size)-byte frames for \(seconds) s, \(rounds) interleaved rounds")
        let runs = try interleaved([
            "plexus": .plexus(vis: 1, fabrics: fabric.fabrics, rdma: false), "io_uring": .raw(.uring),
            "plain": .raw(.plain), "plain_gso": .raw(.plainGSO),
        ])
        var (baseline, best) = baselineObject(runs)
        // Informational, outside the ratio: a plain sender using the same UDP GSO batching.
        baseline["plain_gso"] = runs["plain_gso"]!.json
        let plexus = runs["plexus"]!
        let ratio = plexus.framesPerSecond / best.framesPerSecond
        print(String(format: "vi-throughput %d B: plexus %@ (%@), baseline %@ (%@, %@), ratio %.3f",
                     size, human(rate: plexus.framesPerSecond), human(gbps: plexus.gbytesPerSecond),
                     human(rate: best.framesPerSecond), human(gbps: best.gbytesPerSecond),
                     baseline["method"] as! String, ratio))
        return ["plexus": plexus.json, "baseline": baseline, "ratio": ratio,
                "ratio_to_plain_gso": plexus.framesPerSecond / runs["plain_gso"]!.framesPerSecond]
    }

    func rdmaScenario() throws -> [String: Any] {
        note("rdma-write: \(size)-byte writes for \(seconds) s against VI sends of the same size, \(rounds) rounds")
        let runs = try interleaved([
            "rdma": .plexus(vis: 1, fabrics: [.a], rdma: true), "vi-send": .plexus(vis: 1, fabrics: [.a], rdma: false),
            "io_uring": .raw(.uring), "plain": .raw(.plain),
        ])
        let rdma = runs["rdma"]!, vi = runs["vi-send"]!
        let (raw, best) = baselineObject(runs)
        let ratio = rdma.gbytesPerSecond / vi.gbytesPerSecond
        print(String(format: "rdma-write %d B: landed %@, vi-send %@, ratio %.3f (raw best %@, %.3f)", size,
                     human(gbps: rdma.gbytesPerSecond), human(gbps: vi.gbytesPerSecond), ratio,
                     human(gbps: best.gbytesPerSecond), rdma.gbytesPerSecond / best.gbytesPerSecond))
        var plexus = rdma.json
        plexus["gbytes_landed_per_s"] = rdma.gbytesPerSecond
        return ["plexus": plexus,
                "baseline": ["vi_send": vi.json, "raw": raw, "note": "ratio is rdma ÷ vi_send (the issue's target); ratio_to_raw is rdma ÷ the better raw UDP pair"],
                "ratio": ratio, "ratio_to_raw": rdma.gbytesPerSecond / best.gbytesPerSecond]
    }

    func scaleScenario() throws -> [String: Any] {
        note("vi-scale: \(size)-byte frames round-robin over \(vis) VIs against 1 VI, \(rounds) rounds")
        let runs = try interleaved([
            "scale": .plexus(vis: vis, fabrics: [.a], rdma: false), "single": .plexus(vis: 1, fabrics: [.a], rdma: false),
            "io_uring": .raw(.uring), "plain": .raw(.plain),
        ])
        let scale = runs["scale"]!, single = runs["single"]!
        let (raw, best) = baselineObject(runs)
        let ratio = scale.framesPerSecond / single.framesPerSecond
        print(String(format: "vi-scale %d VIs: %@, one VI %@, ratio %.3f (raw best %@)", vis,
                     human(rate: scale.framesPerSecond), human(rate: single.framesPerSecond), ratio,
                     human(rate: best.framesPerSecond)))
        var plexus = scale.json
        plexus["vis"] = vis
        return ["plexus": plexus,
                "baseline": ["single_vi": single.json, "raw": raw, "note": "ratio is \(vis) VIs ÷ one VI"],
                "ratio": ratio, "ratio_to_raw": scale.framesPerSecond / best.framesPerSecond]
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

    struct Latency {
        var p50: Double, p99: Double, p999: Double, samples: Int
        var json: [String: Any] { ["p50_us": p50, "p99_us": p99, "p99_9_us": p999, "samples": samples] }
    }

    func summarize(_ samples: [UInt64]) -> Latency {
        var h = Histogram<UInt64>(highestTrackableValue: 10_000_000_000, numberOfSignificantValueDigits: .three)
        for s in samples { h.record(s) }
        func us(_ p: Double) -> Double { Double(h.valueAtPercentile(p)) / 1000 }
        return Latency(p50: us(50), p99: us(99), p999: us(99.9), samples: samples.count)
    }

    func latencyScenario() throws -> [String: Any] {
        try latencyComparison("vi-latency", what: "round trips", ping: plexusPing)
    }

    /// Round trips of `ping` (Plexus) against both raw pairs, interleaved over the rounds;
    /// medians by p50.
    func latencyComparison(_ name: String, what: String, ping: () throws -> [UInt64]) throws -> [String: Any] {
        note("\(name): \(size)-byte \(what) ×\(count), \(busyPoll ? "busy-poll" : "blocking"), \(rounds) rounds")
        var all: [String: [Latency]] = [:]
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
        var baseline = best.json
        baseline["method"] = u.p50 <= p.p50 ? "io_uring" : "plain"
        baseline["io_uring"] = u.json
        baseline["plain"] = p.json
        let ratio = plexus.p50 / best.p50
        print(String(format: "%@ %d B %@: plexus p50 %.1f µs p99 %.1f µs; baseline p50 %.1f µs (%@); ratio %.3f",
                     name as NSString, size, (busyPoll ? "busy-poll" : "blocking") as NSString, plexus.p50, plexus.p99,
                     best.p50, baseline["method"] as! String, ratio))
        return ["plexus": plexus.json, "baseline": baseline, "ratio": ratio]
    }

    func waitFor(_ progress: Progress, seconds: Double) throws {
        let deadline = nowNanos() + UInt64(seconds * 1e9)
        while !progress.finished.load(ordering: .acquiring) {
            if nowNanos() > deadline { throw CLIError("the benchmark did not finish within \(seconds) s") }
            usleep(20_000)  // rarely: a waking thread would preempt a spinning engine
        }
    }
}

enum Machine {
    static func describe() -> [String: Any] {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { String($0.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces)) } ?? "unknown"
        return ["kernel": release, "cpus": ProcessInfo.processInfo.activeProcessorCount, "cpu_model": model,
                "memory_gib": Int(ProcessInfo.processInfo.physicalMemory >> 30)]
    }
}
