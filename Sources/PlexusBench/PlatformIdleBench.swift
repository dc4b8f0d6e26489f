import Foundation
import PlexusCore
import PlexusLAN
import PlexusNode
import PlexusRCLAN

/// platform-idle: what a whole embedded platform costs while nothing happens on it.
public func platformIdle(_ options: BenchOptions) throws -> PlatformIdleResult { try options.platformIdleScenario() }

/// One platform's idle figures.
public struct PlatformIdleFigures: Codable, Sendable, Hashable {
    /// Processing nodes (all on one VLAN, so every pair has a direct RVI), plus two control nodes.
    public var nodes: Int
    /// From the start of ``LANPlatform/init`` until every processing node is configured.
    public var startMs: Double
    /// CPU seconds the process used per second of wall time while idle (every engine thread
    /// of the platform; this machine's CPUs bound it).
    public var cpuSecondsPerSecond: Double
    /// RVIs open over every engine of the platform.
    public var rvis: Int
    /// Heartbeats (probes) sent per second over every leg of every RVI.
    public var heartbeatsPerSecond: Double
    /// Pairs of nodes with RVIs between them, counted at each end (every engine's
    /// ``RCLAN/livenessTotals``), and of those, the ones carrying traffic at the end.
    public var pairs: Int
    public var activePairs: Int
    /// RVIs holding their send and receive windows at the end (an idle RVI gives them back).
    public var rvisWithWindows: Int
    /// How often an engine thread went to sleep and was woken, per second (its voluntary
    /// context switches, from /proc): the mean of the two control nodes', the median of the
    /// processing nodes'.
    public var controlNodeWakeupsPerSecond: Double
    public var processingNodeWakeupsPerSecond: Double
    /// Resident memory of the process once the platform is up, MiB.
    public var residentMiB: Double

    enum CodingKeys: String, CodingKey {
        case nodes, startMs = "start_ms", cpuSecondsPerSecond = "cpu_seconds_per_second", rvis
        case heartbeatsPerSecond = "heartbeats_per_second", residentMiB = "resident_mib"
        case pairs, activePairs = "active_pairs", rvisWithWindows = "rvis_with_windows"
        case controlNodeWakeupsPerSecond = "control_node_wakeups_per_second"
        case processingNodeWakeupsPerSecond = "processing_node_wakeups_per_second"
    }
}

/// platform-idle: the figures with `--nodes` processing nodes (`plexus`) against the same with
/// 6 in the same run (`baseline`); `ratio` is the CPU use's, N nodes ÷ 6.
public struct PlatformIdleResult: Codable, Sendable, Hashable {
    public var plexus: PlatformIdleFigures
    public var baseline: PlatformIdleFigures
    public var ratio: Double
    public var note: String
}

/// `plexus bench platform-idle`: an embedded platform (``LANPlatform``: two control nodes and N
/// processing nodes, each its own engine thread in blocking mode, all on loopback, one VLAN with
/// every processing node on it) is started, left alone for `--seconds`, and measured: the CPU
/// the process used, the RVIs open and the heartbeats they sent. Baseline: the same with 6
/// processing nodes, in the same run.
extension BenchOptions {
    func platformIdleScenario() throws -> PlatformIdleResult {
        let baseline = try idlePlatform(nodes: 6)
        let figures = nodes == 6 ? baseline : try idlePlatform(nodes: nodes)
        let ratio = baseline.cpuSecondsPerSecond > 0 ? figures.cpuSecondsPerSecond / baseline.cpuSecondsPerSecond : 0
        say(String(format: "platform-idle: %d processing nodes use %.2f CPU s/s idle (%d RVIs, %.0f heartbeats/s), "
                     + "%.2f× the 6-node platform's %.2f CPU s/s", figures.nodes, figures.cpuSecondsPerSecond, figures.rvis,
                     figures.heartbeatsPerSecond, ratio, baseline.cpuSecondsPerSecond))
        return PlatformIdleResult(
            plexus: figures, baseline: baseline, ratio: ratio,
            note: "cpu_seconds_per_second: CPU time of the whole process (every control and processing node's engine thread, blocking mode) per second of wall time while the platform is idle for --seconds, after every node registered; the machine's CPU count bounds it. ratio: that figure with --nodes processing nodes ÷ with 6")
    }

    /// Starts a platform of `nodes` processing nodes, waits until it is up, and measures it idle.
    func idlePlatform(nodes count: Int) throws -> PlatformIdleFigures {
        let v10 = VLANID(10)!
        let nodes = (0..<count).map { NodeNumber(UInt32(3 + $0)) }
        let definition = PlatformDefinition(controlNodes: [1, 2], processingNodes: nodes, vlans: [v10: nodes])
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-bench-idle-\(getpid())-\(count)").path
        defer {
            try? FileManager.default.removeItem(atPath: state)
            try? FileManager.default.removeItem(atPath: state + "-disks")
        }
        note("platform-idle: starting 2 control nodes and \(count) processing nodes")
        let started = nowNanos()
        let platform: LANPlatform
        do {
            platform = try LANPlatform(definition, macState: state, seconds: 10 + Double(count))
        } catch {
            throw BenchError("platform-idle: \(count) processing nodes did not come up: \(error)")
        }
        defer { platform.stop() }
        let startMs = Double(nowNanos() - started) / 1e6
        let engines = platform.controls.compactMap { $0 } + platform.nodes.values
        func census() throws -> LivenessTotals {
            var all = LivenessTotals(pairs: 0)
            for e in engines {
                let t = try e.runAndWait { engine -> LivenessTotals in
                    RCLAN.on(engine)?.livenessTotals ?? LivenessTotals(pairs: 0)
                }
                all.pairs += t.pairs
                all.activePairs += t.activePairs
                all.rvis += t.rvis
                all.rvisWithWindows += t.rvisWithWindows
                all.probes &+= t.probes
            }
            return all
        }
        let before = try census()
        let switches0 = Self.threadWakeups()
        let cpu0 = Self.processCPUSeconds(), wall0 = nowNanos()
        usleep(UInt32(seconds * 1e6))
        let cpu1 = Self.processCPUSeconds(), wall = Double(nowNanos() - wall0) / 1e9
        let switches1 = Self.threadWakeups()
        let after = try census()
        func rate(_ node: NodeNumber) -> Double {
            let name = "node\(node)"
            return Double((switches1[name] ?? 0) &- (switches0[name] ?? 0)) / wall
        }
        let controlRates = definition.controlNodes.map(rate)
        let nodeRates = nodes.map(rate).sorted()
        let figures = PlatformIdleFigures(
            nodes: count, startMs: startMs, cpuSecondsPerSecond: (cpu1 - cpu0) / wall, rvis: after.rvis,
            heartbeatsPerSecond: Double(after.probes &- before.probes) / wall, pairs: after.pairs,
            activePairs: after.activePairs, rvisWithWindows: after.rvisWithWindows,
            controlNodeWakeupsPerSecond: controlRates.reduce(0, +) / Double(max(1, controlRates.count)),
            processingNodeWakeupsPerSecond: nodeRates.isEmpty ? 0 : nodeRates[nodeRates.count / 2],
            residentMiB: Self.residentMiB())
        note(String(format: "platform-idle: %d nodes up in %.0f ms; idle %.2f CPU s/s, %d RVIs (%d holding windows), %d pairs (%d active), %.0f probes/s, wake-ups per second %.0f per control node and %.0f per processing node, %.0f MiB resident",
                    count, startMs, figures.cpuSecondsPerSecond, figures.rvis, figures.rvisWithWindows, figures.pairs,
                    figures.activePairs, figures.heartbeatsPerSecond, figures.controlNodeWakeupsPerSecond,
                    figures.processingNodeWakeupsPerSecond, figures.residentMiB))
        return figures
    }

    /// User and system CPU seconds of this process so far (every thread).
    static func processCPUSeconds() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return s(u.ru_utime) + s(u.ru_stime)
    }

    /// Voluntary context switches of each thread of this process so far, by thread name (an
    /// engine thread is named after its node; a name used twice adds up).
    static func threadWakeups() -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return out }
        for t in tasks {
            guard let name = try? String(contentsOfFile: "/proc/self/task/\(t)/comm", encoding: .utf8),
                  let status = try? String(contentsOfFile: "/proc/self/task/\(t)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("voluntary_ctxt_switches:") }),
                  let n = UInt64(line.split(separator: "\t").last?.trimmingCharacters(in: .whitespaces) ?? "")
            else { continue }
            out[name.trimmingCharacters(in: .whitespacesAndNewlines), default: 0] += n
        }
        return out
    }

    /// The process's resident memory now (VmRSS), MiB.
    static func residentMiB() -> Double {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kib = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kib / 1024
    }
}
