import Foundation
import PlexusCore
import PlexusNode
import PlexusTestSupport
import PlexusNamespaces

/// failover: kill -9 of a web service's processor to the first good reply from the spare,
/// against the service restarted in place, or (with `--nodes`) against the same drill on the
/// drill's own 4-node platform.
public func processorFailover(_ options: BenchOptions) throws -> FailoverResult { try options.failoverScenario() }

/// `plexus bench failover`: processor failover ("Cluster Management Logic"), measured from `kill -9` of a web
/// service's processor to the first good reply from the spare, by a client requesting all the
/// while (``FailoverDrill``). Baseline, in the same run: the same service restarted in place on
/// the spare (no failover), the floor any failover of this service pays.
///
/// With `--nodes N` (above 6), each round runs the drill twice: on a platform of N processing
/// nodes (the drill's four and N − 4 that idle on its VLANs, ``FailoverDrill/definition(www:processingNodes:)``)
/// and on the drill's own platform of 4; the baseline is the second, and the service restarted
/// in place is measured on the first.
/// The median of `a` (the upper one of an even count).
private func median(_ a: [Double]) -> Double { a.sorted()[a.count / 2] }

extension BenchOptions {
    /// The processing nodes of the drill's own platform.
    static let drillProcessingNodes = 4

    /// A platform for one round: ``FailoverDrill/definition(www:processingNodes:)`` in namespaces
    /// (two control nodes and `processingNodes` processing nodes, a namespace each).
    static func failoverPlatform(www: String, state: String, processingNodes: Int = drillProcessingNodes) throws
        -> (NamespaceFabric, LANPlatform) {
        let fabric = try NamespaceFabric(nodes: processingNodes + 2, linkMTU: 9000)
        do {
            let d = try FailoverDrill.definition(www: www, processingNodes: processingNodes)
            return (fabric, try LANPlatform(d, macState: state, fabric: fabric, seconds: 10 + Double(processingNodes) / 2))
        } catch {
            fabric.teardown()
            throw error
        }
    }

    /// One platform's drills over the rounds.
    struct DrillRounds {
        var detect: [Double] = [], migrate: [Double] = [], total: [Double] = [], failed: [Int] = []
        var timelines: [[String]] = []

        mutating func add(_ r: FailoverDrill.Result) {
            detect.append(r.detectMilliseconds)
            migrate.append(r.migrateMilliseconds)
            total.append(r.totalMilliseconds)
            failed.append(r.failedRequests)
            timelines.append(r.timeline)
        }

        func figures(nodes: Int?) -> FailoverResult.Figures {
            FailoverResult.Figures(
                nodes: nodes, detectMs: median(detect), migrateMs: median(migrate), totalMs: median(total),
                failedRequests: failed.sorted()[failed.count / 2],
                rounds: FailoverResult.Figures.Rounds(detectMs: detect, migrateMs: migrate, totalMs: total, failedRequests: failed),
                timelineRound1: timelines.first ?? [])
        }
    }

    /// The service restarted in place over the rounds.
    struct RestartRounds {
        var total: [Double] = [], failed: [Int] = []

        mutating func add(_ r: (totalMilliseconds: Double, failedRequests: Int)) {
            total.append(r.totalMilliseconds)
            failed.append(r.failedRequests)
        }

        var baseline: FailoverResult.Baseline {
            FailoverResult.Baseline(serviceRestartInPlaceMs: median(total), roundsMs: total, failedRequests: failed)
        }
    }

    /// The drill (and, with `restart`, the service restarted in place) on a fresh platform of
    /// `processingNodes` processing nodes; the platform is torn down after.
    func drillRound(www: String, state: String, processingNodes: Int, restart: Bool)
        throws -> (FailoverDrill.Result, (totalMilliseconds: Double, failedRequests: Int)?) {
        let started = nowNanos()
        let (fabric, p) = try Self.failoverPlatform(www: www, state: state, processingNodes: processingNodes)
        defer {
            p.stop()
            fabric.teardown()
        }
        if processingNodes != Self.drillProcessingNodes {
            note(String(format: "failover: %d processing nodes up in %.1f s (namespaces and platform), %.0f MiB resident",
                        processingNodes, Double(nowNanos() - started) / 1e9, Self.residentMiB()))
        }
        let url = "http://10.10.0.4:8080/"
        let r = try FailoverDrill.run(p, fabric: fabric, client: 3, service: 4, url: url)
        let b = restart ? try FailoverDrill.restartInPlace(p, fabric: fabric, client: 3, node: 5, url: url) : nil
        return (r, b)
    }

    func failoverScenario() throws -> FailoverResult {
        if let why = NamespaceFabric.unavailableReason { throw BenchError("failover: \(why)") }
        guard nodes == 6 || nodes > 6 else {
            throw BenchError("failover: --nodes must be above 6 (the drill's own platform has 4 processing nodes), not \(nodes)")
        }
        let www = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-bench-www-\(getpid())").path
        try FileManager.default.createDirectory(atPath: www, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: www) }
        try Data("hello from the service\n".utf8).write(to: URL(fileURLWithPath: www + "/index.html"))
        return nodes == 6 ? try drillAgainstRestart(www: www) : try drillAtScale(www: www, processingNodes: nodes)
    }

    /// Without `--nodes`: the drill against the service restarted in place, on the drill's platform.
    func drillAgainstRestart(www: String) throws -> FailoverResult {
        var drill = DrillRounds(), restart = RestartRounds()
        for round in 1...rounds {
            let (r, b) = try drillRound(www: www, state: www + "/macs-\(round)", processingNodes: Self.drillProcessingNodes,
                                        restart: true)
            drill.add(r)
            restart.add(b!)
            say(String(format: "failover round %d: detect %.1f ms, migrate %.1f ms, total %.1f ms, %d requests failed; "
                         + "the service restarted in place: %.1f ms", round, r.detectMilliseconds, r.migrateMilliseconds,
                         r.totalMilliseconds, r.failedRequests, b!.totalMilliseconds))
            say("  " + r.timeline.joined(separator: ", "))
        }
        let f = drill.figures(nodes: nil), t = f.totalMs
        say(String(format: "failover: median total %.1f ms (target ≤ 300 ms), detect %.1f ms, migrate %.1f ms; "
                     + "restarting the service in place %.1f ms", t, f.detectMs, f.migrateMs, restart.baseline.serviceRestartInPlaceMs))
        return FailoverResult(
            plexus: f, baseline: .restartInPlace(restart.baseline), ratio: t / 300.0, target: 300.0,
            ratioToRestartInPlace: t / restart.baseline.serviceRestartInPlaceMs,
            note: "total_ms: kill -9 of the service's processor (engine stopped, workload SIGKILLed) to the first good HTTP reply from the spare at a client requesting all the while (fresh TCP connection per request, 250 ms timeout); ratio is total_ms ÷ the 300 ms target; the baseline restarts the same service in place on the spare")
    }

    /// With `--nodes N`: each round, the drill on N processing nodes (and the service restarted
    /// in place there), then on the drill's own 4.
    func drillAtScale(www: String, processingNodes n: Int) throws -> FailoverResult {
        var large = DrillRounds(), small = DrillRounds(), restart = RestartRounds()
        for round in 1...rounds {
            let (r, b) = try drillRound(www: www, state: www + "/macs-\(round)-\(n)", processingNodes: n, restart: true)
            large.add(r)
            restart.add(b!)
            let (s, _) = try drillRound(www: www, state: www + "/macs-\(round)", processingNodes: Self.drillProcessingNodes,
                                        restart: false)
            small.add(s)
            say(String(format: "failover round %d, %d processing nodes: detect %.1f ms, migrate %.1f ms, total %.1f ms, "
                         + "%d requests failed; the service restarted in place %.1f ms", round, n, r.detectMilliseconds,
                         r.migrateMilliseconds, r.totalMilliseconds, r.failedRequests, b!.totalMilliseconds))
            say("  " + r.timeline.joined(separator: ", "))
            say(String(format: "failover round %d, %d processing nodes: detect %.1f ms, migrate %.1f ms, total %.1f ms, "
                         + "%d requests failed", round, Self.drillProcessingNodes, s.detectMilliseconds, s.migrateMilliseconds,
                         s.totalMilliseconds, s.failedRequests))
            say("  " + s.timeline.joined(separator: ", "))
        }
        let f = large.figures(nodes: n), base = small.figures(nodes: Self.drillProcessingNodes)
        let ratio = f.totalMs / base.totalMs
        say(String(format: "failover: %d processing nodes: median total %.1f ms (detect %.1f ms, migrate %.1f ms), "
                     + "%.2f× the %d-node platform's %.1f ms (target ≤ 1.5× and ≤ 300 ms); restarting the service in place %.1f ms",
                     n, f.totalMs, f.detectMs, f.migrateMs, ratio, Self.drillProcessingNodes, base.totalMs,
                     restart.baseline.serviceRestartInPlaceMs))
        return FailoverResult(
            plexus: f, baseline: .drill(base), ratio: ratio, target: 1.5, targetMs: 300,
            ratioToRestartInPlace: f.totalMs / restart.baseline.serviceRestartInPlaceMs, restartInPlace: restart.baseline,
            note: "total_ms: kill -9 of the service's processor (engine stopped, workload SIGKILLed) to the first good HTTP reply from the spare at a client requesting all the while (fresh TCP connection per request, 250 ms timeout). plexus: a platform of --nodes processing nodes (the drill's 4 and the rest idle members of its two VLANs, each node in its own network namespace, two control nodes); baseline: the drill's own platform (4 processing nodes, two control nodes), in the same run, a fresh platform each round. ratio is plexus.total_ms ÷ baseline.total_ms (target ≤ 1.5, and plexus.total_ms ≤ target_ms); restart_in_place restarts the service in place on the spare of the --nodes platform")
    }
}
