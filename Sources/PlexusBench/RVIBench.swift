import CPlexus
import Foundation
import PlexusCore
import PlexusNamespaces
import PlexusRCLAN

/// rvi-throughput: reliable messages one way over one RVI, against the raw pairs.
public func rviThroughput(_ options: BenchOptions) throws -> RVIComparison { try options.rviThroughputScenario() }
/// rvi-messages: small coalesced messages per second, against one raw datagram per message.
public func rviMessages(_ options: BenchOptions) throws -> RVIComparison { try options.rviMessagesScenario() }
/// rvi-latency: round trips over an RVI against the raw pairs'.
public func rviLatency(_ options: BenchOptions) throws -> LatencyComparison { try options.rviLatencyScenario() }
/// rvi-failover: fabric A fails a third of the way into a stream; the longest gap, loss and
/// duplicates, against an undisturbed stream.
public func rviFailover(_ options: BenchOptions) throws -> RVIAgainstRVI { try options.rviFailoverScenario() }
/// rvi-loss: throughput with `loss` percent lost on leg A, against the lossless run.
public func rviLoss(_ options: BenchOptions) throws -> RVIAgainstRVI { try options.rviLossScenario() }

/// The network namespace and veth pairs of `rvi-failover --link`: the peer process runs in
/// namespace `plx-bench-<pid>` joined to this one by one veth pair per fabric, so a fabric can be
/// failed for real with `ip link set … down`. The names carry this process's pid, and each is
/// listed in ``Leftovers`` before it is created (`plexus cleanup` knows them as this run's).
enum BenchNamespace {
    static let name = "plx-bench-\(getpid())"
    static let hostA = "pxb\(getpid())a0", peerA = "pxb\(getpid())a1", hostB = "pxb\(getpid())b0", peerB = "pxb\(getpid())b1"

    static func hostAddress(_ f: Fabric) -> String { f == .a ? "10.211.1.1:0" : "10.211.2.1:0" }
    static func peerAddress(_ f: Fabric) -> String { f == .a ? "10.211.1.2:0" : "10.211.2.2:0" }

    @discardableResult
    static func ip(_ args: String...) throws -> Int32 {
        try ChildProcess(["ip"] + args).wait()
    }

    static func setUp() throws {
        guard getuid() == 0 else { throw BenchError("--link needs root (it creates a network namespace and veth pairs)") }
        tearDown()
        guard try Leftovers.shared.creating(.namespace(name), { try ip("netns", "add", name) }) == 0 else {
            throw BenchError("ip netns add \(name) failed")
        }
        for (h, p, net) in [(hostA, peerA, "10.211.1"), (hostB, peerB, "10.211.2")] {
            guard try Leftovers.shared.creating(.link(h), { try ip("link", "add", h, "type", "veth", "peer", "name", p) }) == 0,
                  try ip("link", "set", p, "netns", name) == 0,
                  try ip("addr", "add", "\(net).1/24", "dev", h) == 0,
                  try ip("link", "set", h, "mtu", "65535") == 0,
                  try ip("-n", name, "link", "set", p, "mtu", "65535") == 0,
                  try ip("link", "set", h, "up") == 0,
                  try ip("-n", name, "addr", "add", "\(net).2/24", "dev", p) == 0,
                  try ip("-n", name, "link", "set", p, "up") == 0
            else { throw BenchError("could not set up veth pair \(h)/\(p)") }
        }
        _ = try ip("-n", name, "link", "set", "lo", "up")
    }

    static func tearDown() {
        _ = try? ip("link", "del", hostA)
        _ = try? ip("link", "del", hostB)
        _ = try? ip("netns", "del", name)
        Leftovers.shared.forget([.link(hostA), .link(hostB), .namespace(name)])
    }
}

/// The layer configuration of both ends of an RVI benchmark.
func rclanConfiguration(heartbeatUs: Int) -> RCLANConfiguration {
    var c = RCLANConfiguration()
    c.heartbeatInterval = .microseconds(heartbeatUs)
    return c
}

extension BenchOptions {
    /// Starts a `bench-peer --mode rvi` child and an engine here with an RCLAN layer, and opens
    /// one RVI between them.
    func rviSession(role: String, pingCapacity: Int = 1, link: Bool = false)
        throws -> (PeerProcess, EngineThread, Progress)
    {
        let peer = try PeerProcess(["--mode", "rvi", "--role", role, "--policy", policy, "--heartbeat-us", "\(heartbeatUs)"]
                                   + (busyPoll ? ["--busy-poll"] : []) + (link ? ["--netns", BenchNamespace.name] : []))
        let ready = try peer.expect("READY")
        let progress = Progress()
        var c = senderConfiguration()
        if link {
            c.fabricA = FabricAddress(BenchNamespace.hostAddress(.a))!
            c.fabricB = FabricAddress(BenchNamespace.hostAddress(.b))!
        }
        let layer = rclanConfiguration(heartbeatUs: heartbeatUs)
        let thread = try EngineThread.start(c) {
            try! RCLAN(configuration: layer, delegate: RVIBenchSender(progress: progress, pingCapacity: pingCapacity))
        }
        peer.say("PEER " + jsonLine(["a": thread.info.ports[0].address, "b": thread.info.ports[1].address]))
        let path = RVIPath(localA: 1, localB: 1, peerA: FabricAddress(ready["a"] as! String)!,
                           peerB: FabricAddress(ready["b"] as! String)!, remoteA: 1, remoteB: 1)
        let policy = try LoadBalancing(parsing: self.policy)
        try thread.runAndWait { e in
            let layer = RCLAN.on(e)!
            (layer.delegate as! RVIBenchSender).rvi = try layer.open(path, policy: policy)
        }
        _ = try peer.expect("GO")
        // Both legs answer before the clock starts.
        let deadline = nowNanos() + 5_000_000_000
        while nowNanos() < deadline {
            let heard = try thread.runAndWait { e in
                RCLAN.on(e)!.statistics(RVI(id: 0))!.legs.allSatisfy { $0.framesIn > 2 && $0.state == .up }
            }
            if heard { break }
            usleep(2000)
        }
        return (peer, thread, progress)
    }

    /// What one RVI stream measured.
    struct RVIRun {
        var stream: Stream
        var lost: UInt64
        var duplicated: UInt64
        var longestGapMs: Double
        var retransmissions: UInt64
        var events: [String]
        var failed: UInt64
        /// The sender's legs (as its RVI statistics count them) and the receiving process's
        /// socket overruns per fabric.
        var legs: [RVIStatistics.Leg] = []
        var receiverOverruns: [UInt64] = [0, 0]
        var figures: RVIFigures {
            let s = stream.figures
            return RVIFigures(
                framesPerSecond: s.framesPerSecond, gbytesPerSecond: s.gbytesPerSecond, sent: s.sent, delivered: s.delivered,
                lost: lost, duplicated: duplicated, gapMs: longestGapMs, retransmissions: retransmissions, failed: failed,
                events: events.isEmpty ? nil : events,
                legs: legs.enumerated().map { k, l in
                    RVIFigures.Leg(fabric: l.fabric, state: l.state.rawValue, demoted: l.history.contains { $0.state == .demoted },
                                   retransmissions: l.retransmissions, lost: l.lost, lossPercent: l.lossPercent,
                                   spuriousRetransmissions: l.spuriousRetransmissions,
                                   overruns: l.overruns, peerReceiveOverruns: l.peerReceiveOverruns,
                                   receiverSocketOverruns: k < receiverOverruns.count ? receiverOverruns[k] : 0)
                })
        }

        /// One line on the legs: demotions and overruns.
        var legSummary: String {
            legs.enumerated().map { k, l in
                "leg \(l.fabric) \(l.history.contains { $0.state == .demoted } ? "demoted" : "never demoted"), "
                    + "lost \(l.lost), overruns \(l.overruns) taken back of \(k < receiverOverruns.count ? receiverOverruns[k] : 0) "
                    + "at the receiver's socket"
            }.joined(separator: "; ")
        }
    }

    /// One RVI stream: this process posts for `seconds`, then waits until all is acknowledged;
    /// rates are over that whole time (every message delivered, none assumed).
    func rviStream(_ mode: RVIBenchSender.Mode, failAfter: Double? = nil, loss: Double = 0, link: Bool = false)
        throws -> RVIRun
    {
        let (peer, thread, progress) = try rviSession(role: "sink", link: link)
        defer { thread.stopAndWait() }
        let plan = RVIBenchSender.Plan(
            mode: mode, nanos: UInt64(seconds * 1e9),
            failLegAAfter: link ? nil : failAfter.map { UInt64($0 * 1e9) }, lossOnA: loss, seed: 7)
        try thread.runAndWait { e in
            let layer = RCLAN.on(e)!
            (layer.delegate as! RVIBenchSender).start(plan, layer: layer)
        }
        if link, let after = failAfter {
            usleep(UInt32(after * 1e6))
            try BenchNamespace.ip("link", "set", BenchNamespace.hostA, "down")
        }
        try waitFor(progress, seconds: seconds + 60)
        let (posted, elapsed, events, failed, stats) = try thread.runAndWait { e in
            let layer = RCLAN.on(e)!
            let s = layer.delegate as! RVIBenchSender
            let failAt = s.legFailedAt > 0 ? s.legFailedAt - s.startedAt : 0
            let ev = s.events.map { String(format: "%.2f ms: %@", Double($0.0) / 1e6, $0.1 as NSString) }
                + (failAt > 0 ? [String(format: "%.2f ms: fabric A failed (fault layer, sender side)", Double(failAt) / 1e6)] : [])
            return (s.posted, s.endedAt - s.startedAt, ev, s.failed, layer.statistics(RVI(id: 0))!)
        }
        let r = try peer.finish()
        let messages = r["frames"] as! UInt64
        let stream = Stream(sent: posted, received: messages, bytes: r["bytes"] as! UInt64, nanos: elapsed, dropped: 0)
        let run = RVIRun(stream: stream, lost: (r["lost"] as! UInt64) + (posted > messages + failed ? posted - messages - failed : 0),
                         duplicated: r["duplicated"] as! UInt64, longestGapMs: Double(r["longest_gap_ns"] as! UInt64) / 1e6,
                         retransmissions: stats.retransmissions, events: events, failed: failed, legs: stats.legs,
                         receiverOverruns: [r["overruns_a"] as? UInt64 ?? 0, r["overruns_b"] as? UInt64 ?? 0])
        note("  " + run.legSummary)
        return run
    }

    /// Medians over interleaved rounds of RVI runs and raw baselines.
    func interleavedRVI(_ kinds: [(String, () throws -> RVIRun)], raw: [BaselineMethod], rawSize: Int)
        throws -> (rvi: [String: RVIRun], raw: [String: Stream])
    {
        var rviRuns: [String: RVIRun] = [:]
        var rvis: [String: [RVIRun]] = [:]
        let names = kinds.map(\.0) + raw.map(\.rawValue)
        let all = try interleaved(names) { name in
            if let k = kinds.first(where: { $0.0 == name }) {
                let r = try k.1()
                rvis[name, default: []].append(r)
                return r.stream
            }
            return try rawStream(BaselineMethod(rawValue: name)!, size: rawSize)
        }
        for (name, runs) in rvis {
            rviRuns[name] = runs.sorted { $0.stream.framesPerSecond < $1.stream.framesPerSecond }[runs.count / 2]
        }
        var rawRuns: [String: Stream] = [:]
        for m in raw { rawRuns[m.rawValue] = all[m.rawValue] }
        return (rviRuns, rawRuns)
    }

    func rviThroughputScenario() throws -> RVIComparison {
        note("rvi-throughput: \(size)-byte messages over one RVI (both legs, \(policy)) for \(seconds) s, \(rounds) rounds")
        let size = self.size
        let (r, raw) = try interleavedRVI([("plexus", { try self.rviStream(.frames(size: size)) })],
                                          raw: [.uring, .plain], rawSize: size)
        let (baseline, best) = baselineObject(raw)
        let plexus = r["plexus"]!
        let ratio = plexus.stream.gbytesPerSecond / best.gbytesPerSecond
        say(String(format: "rvi-throughput %d B: plexus %@ (%@, every message acknowledged), baseline %@ (%@), ratio %.3f",
                     size, human(rate: plexus.stream.framesPerSecond), human(gbps: plexus.stream.gbytesPerSecond),
                     human(gbps: best.gbytesPerSecond), baseline.method, ratio))
        return RVIComparison(plexus: plexus.figures, baseline: baseline, ratio: ratio)
    }

    func rviMessagesScenario() throws -> RVIComparison {
        note("rvi-messages: \(size)-byte messages, coalesced, for \(seconds) s against one datagram per message, \(rounds) rounds")
        let size = self.size
        let (r, raw) = try interleavedRVI([("plexus", { try self.rviStream(.messages(size: size)) })],
                                          raw: [.uring, .plain], rawSize: size)
        let (baseline, best) = baselineObject(raw)
        let plexus = r["plexus"]!
        let ratio = plexus.stream.framesPerSecond / best.framesPerSecond
        say(String(format: "rvi-messages %d B: plexus %@ messages (reliable), raw %@ datagrams (%@), ratio %.2f",
                     size, human(rate: plexus.stream.framesPerSecond), human(rate: best.framesPerSecond),
                     baseline.method, ratio))
        return RVIComparison(plexus: plexus.figures, baseline: baseline, ratio: ratio)
    }

    func rviLossScenario() throws -> RVIAgainstRVI {
        note("rvi-loss: \(size)-byte messages with \(loss) % loss on leg A against the lossless run, \(rounds) rounds")
        let size = self.size, loss = self.loss
        let (r, _) = try interleavedRVI([
            ("lossy", { try self.rviStream(.frames(size: size), loss: loss) }),
            ("lossless", { try self.rviStream(.frames(size: size)) }),
        ], raw: [], rawSize: size)
        let lossy = r["lossy"]!, clean = r["lossless"]!
        let ratio = lossy.stream.gbytesPerSecond / clean.stream.gbytesPerSecond
        say(String(format: "rvi-loss %.1f %% on A: %@ against %@ lossless, ratio %.3f; lost %llu, duplicated %llu, retransmissions %llu",
                     loss, human(gbps: lossy.stream.gbytesPerSecond), human(gbps: clean.stream.gbytesPerSecond), ratio,
                     lossy.lost, lossy.duplicated, lossy.retransmissions))
        var p = lossy.figures
        p.lossPercentOnA = loss
        return RVIAgainstRVI(plexus: p, baseline: clean.figures, ratio: ratio)
    }

    func rviFailoverScenario() throws -> RVIAgainstRVI {
        let how = link ? "ip link set \(BenchNamespace.hostA) down" : "the fault layer (fabric A down under the sender)"
        note("rvi-failover: \(size)-byte messages for \(seconds) s; fabric A fails at \(seconds / 3) s by \(how); \(rounds) rounds")
        if link { try BenchNamespace.setUp() }
        defer { if link { BenchNamespace.tearDown() } }
        var runs: [RVIRun] = []
        for round in 0..<rounds {
            if link && round > 0 {
                try BenchNamespace.ip("link", "set", BenchNamespace.hostA, "up")
            }
            let r = try rviStream(.frames(size: size), failAfter: seconds / 3, link: link)
            note(String(format: "  round %d gap %.2f ms, lost %llu, duplicated %llu, %@", round + 1, r.longestGapMs,
                        r.lost, r.duplicated, human(gbps: r.stream.gbytesPerSecond)))
            runs.append(r)
        }
        let med = runs.sorted { $0.longestGapMs < $1.longestGapMs }[runs.count / 2]
        let worst = runs.max { $0.longestGapMs < $1.longestGapMs }!
        // The baseline: the same stream with no failure, for the gaps an undisturbed stream has.
        if link { try BenchNamespace.ip("link", "set", BenchNamespace.hostA, "up") }
        let calm = try rviStream(.frames(size: size), link: link)
        say(String(format: "rvi-failover %d B (%@): longest gap %.2f ms (median of %d; worst %.2f ms), lost %llu, duplicated %llu; undisturbed gap %.2f ms",
                     size, link ? "ip link" : "fault layer", med.longestGapMs, rounds, worst.longestGapMs,
                     runs.reduce(0) { $0 + $1.lost }, runs.reduce(0) { $0 + $1.duplicated }, calm.longestGapMs))
        var p = med.figures
        p.gapMsWorst = worst.longestGapMs
        p.lost = runs.reduce(0) { $0 + $1.lost }
        p.duplicated = runs.reduce(0) { $0 + $1.duplicated }
        p.method = link ? "ip link set down" : "fault layer"
        return RVIAgainstRVI(plexus: p, baseline: calm.figures, ratio: med.longestGapMs / 20.0,
                             note: "ratio is the median gap ÷ the 20 ms target; baseline is an undisturbed stream in the same run")
    }

    func rviPing() throws -> [UInt64] {
        let warmup = min(1000, count)
        let (peer, thread, progress) = try rviSession(role: "echo", pingCapacity: count)
        defer { thread.stopAndWait() }
        let plan = RVIBenchSender.Plan(mode: .ping(size: size, count: count, warmup: warmup), nanos: 0)
        try thread.runAndWait { e in
            let layer = RCLAN.on(e)!
            (layer.delegate as! RVIBenchSender).start(plan, layer: layer)
        }
        try waitFor(progress, seconds: 120)
        let samples = try thread.runAndWait { e in Array((RCLAN.on(e)!.delegate as! RVIBenchSender).samples) }
        _ = try peer.finish()
        return samples
    }

    func rviLatencyScenario() throws -> LatencyComparison {
        try latencyComparison("rvi-latency", what: "round trips over an RVI", ping: rviPing)
    }
}
