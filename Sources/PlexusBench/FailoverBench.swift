import Foundation
import PlexusNode
import PlexusTestSupport
import PlexusNamespaces

/// failover: kill -9 of a web service's processor to the first good reply from the spare,
/// against the service restarted in place.
public func processorFailover(_ options: BenchOptions) throws -> FailoverResult { try options.failoverScenario() }

/// `plexus bench failover`: processor failover ("Cluster Management Logic"), measured from `kill -9` of a web
/// service's processor to the first good reply from the spare, by a client requesting all the
/// while (``FailoverDrill``). Baseline, in the same run: the same service restarted in place on
/// the spare (no failover), the floor any failover of this service pays.
extension BenchOptions {
    /// A platform for one round: ``FailoverDrill/definition(www:)`` in namespaces.
    static func failoverPlatform(www: String, state: String) throws -> (NamespaceFabric, LANPlatform) {
        let fabric = try NamespaceFabric(nodes: 6, linkMTU: 9000)
        do {
            return (fabric, try LANPlatform(try FailoverDrill.definition(www: www), macState: state, fabric: fabric))
        } catch {
            fabric.teardown()
            throw error
        }
    }

    func failoverScenario() throws -> FailoverResult {
        if let why = NamespaceFabric.unavailableReason { throw BenchError("failover: \(why)") }
        let www = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-bench-www-\(getpid())").path
        try FileManager.default.createDirectory(atPath: www, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: www) }
        try Data("hello from the service\n".utf8).write(to: URL(fileURLWithPath: www + "/index.html"))
        var detect: [Double] = [], migrate: [Double] = [], total: [Double] = [], failed: [Int] = []
        var restart: [Double] = [], restartFailed: [Int] = []
        var timelines: [[String]] = []
        let url = "http://10.10.0.4:8080/"
        for round in 1...rounds {
            let state = www + "/macs-\(round)"
            let (fabric, p) = try Self.failoverPlatform(www: www, state: state)
            defer {
                p.stop()
                fabric.teardown()
            }
            let r = try FailoverDrill.run(p, fabric: fabric, client: 3, service: 4, url: url)
            let b = try FailoverDrill.restartInPlace(p, fabric: fabric, client: 3, node: 5, url: url)
            detect.append(r.detectMilliseconds)
            migrate.append(r.migrateMilliseconds)
            total.append(r.totalMilliseconds)
            failed.append(r.failedRequests)
            restart.append(b.totalMilliseconds)
            restartFailed.append(b.failedRequests)
            timelines.append(r.timeline)
            say(String(format: "failover round %d: detect %.1f ms, migrate %.1f ms, total %.1f ms, %d requests failed; "
                         + "the service restarted in place: %.1f ms", round, r.detectMilliseconds, r.migrateMilliseconds,
                         r.totalMilliseconds, r.failedRequests, b.totalMilliseconds))
            say("  " + r.timeline.joined(separator: ", "))
        }
        func median(_ a: [Double]) -> Double { a.sorted()[a.count / 2] }
        let t = median(total)
        say(String(format: "failover: median total %.1f ms (target ≤ 300 ms), detect %.1f ms, migrate %.1f ms; "
                     + "restarting the service in place %.1f ms", t, median(detect), median(migrate), median(restart)))
        return FailoverResult(
            plexus: FailoverResult.Figures(
                detectMs: median(detect), migrateMs: median(migrate), totalMs: t,
                failedRequests: failed.sorted()[failed.count / 2],
                rounds: FailoverResult.Figures.Rounds(detectMs: detect, migrateMs: migrate, totalMs: total, failedRequests: failed),
                timelineRound1: timelines.first ?? []),
            baseline: FailoverResult.Baseline(serviceRestartInPlaceMs: median(restart), roundsMs: restart,
                                              failedRequests: restartFailed),
            ratio: t / 300.0, target: 300.0,
            ratioToRestartInPlace: t / median(restart),
            note: "total_ms: kill -9 of the service's processor (engine stopped, workload SIGKILLed) to the first good HTTP reply from the spare at a client requesting all the while (fresh TCP connection per request, 250 ms timeout); ratio is total_ms ÷ the 300 ms target; the baseline restarts the same service in place on the spare")
    }
}
