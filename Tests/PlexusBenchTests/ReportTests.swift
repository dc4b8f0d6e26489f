import Foundation
@testable import PlexusBench
import Testing

/// The JSON lines of `plexus bench --json`, checked against the results recorded in
/// bench-results/: each decodes into its scenario's report type and encodes back to the same
/// object, so the keys (which scripts/bench-all.sh and bench-table.py read) stay as recorded.
@Suite("Bench reports")
struct ReportTests {
    static let results = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("bench-results")

    static var recorded: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: results.path)) ?? []).filter { $0.hasSuffix(".json") }.sorted()
    }

    /// Decodes `line` as the report of its scenario and encodes it again.
    static func roundTrip(_ line: Data, scenario: BenchScenario) throws -> Data {
        func again<R: Codable & Sendable>(_: R.Type) throws -> Data {
            Data(try JSONDecoder().decode(BenchReport<R>.self, from: line).jsonLine.utf8)
        }
        switch scenario {
        case .viThroughput: return try again(StreamComparison.self)
        case .viLatency, .rviLatency: return try again(LatencyComparison.self)
        case .rdmaWrite, .viScale: return try again(ReferenceComparison.self)
        case .rviThroughput, .rviMessages: return try again(RVIComparison.self)
        case .rviFailover, .rviLoss: return try again(RVIAgainstRVI.self)
        case .vlanTCP: return try again(VLANTCPComparison.self)
        case .vlanPing: return try again(VLANPingResult.self)
        case .vlanFailover: return try again(VLANFailoverComparison.self)
        case .failover: return try again(FailoverResult.self)
        case .storage: return try again(StorageResult.self)
        case .platformIdle: return try again(PlatformIdleResult.self)
        }
    }

    @Test("every recorded result is there to check")
    func recordedResults() {
        #expect(Self.recorded.count >= 13)
    }

    @Test("a recorded result decodes and encodes to the same object", arguments: recorded)
    func sameObject(_ file: String) throws {
        let line = try Data(contentsOf: Self.results.appendingPathComponent(file))
        let object = try #require(try JSONSerialization.jsonObject(with: line) as? NSDictionary)
        let scenario = try #require(BenchScenario(rawValue: object["scenario"] as? String ?? ""))
        let encoded = try #require(try JSONSerialization.jsonObject(with: Self.roundTrip(line, scenario: scenario)) as? NSDictionary)
        #expect(encoded.isEqual(object), "\(file): \(encoded) is not \(object)")
    }

    @Test("a recorded result encodes back to the very line recorded", arguments: recorded)
    func sameLine(_ file: String) throws {
        let line = try Data(contentsOf: Self.results.appendingPathComponent(file))
        let object = try #require(try JSONSerialization.jsonObject(with: line) as? NSDictionary)
        let scenario = try #require(BenchScenario(rawValue: object["scenario"] as? String ?? ""))
        let recorded = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(String(decoding: try Self.roundTrip(line, scenario: scenario), as: UTF8.self) == recorded)
    }

    @Test("each scenario records the parameters it recorded before", arguments: recorded)
    func parameters(_ file: String) throws {
        let line = try Data(contentsOf: Self.results.appendingPathComponent(file))
        let object = try #require(try JSONSerialization.jsonObject(with: line) as? [String: Any])
        let scenario = try #require(BenchScenario(rawValue: object["scenario"] as? String ?? ""))
        let recorded = try #require(object["parameters"] as? [String: Any])
        // --nodes is a parameter of some runs of a scenario (failover) and of every run of another (platform-idle).
        var options = BenchOptions()
        if let nodes = recorded["nodes"] as? Int { options.nodes = nodes }
        let now = try JSONSerialization.jsonObject(with: JSONEncoder().encode(BenchParameters(scenario, options)))
        #expect(Set((now as? [String: Any] ?? [:]).keys) == Set(recorded.keys))
    }

    @Test("vlan-ping writes floor_ratio as null when the bare overlay did not run")
    func floorRatioNull() throws {
        let none = LatencyFigures(p50: 1, p99: 2, p999: 3, samples: 4)
        let result = VLANPingResult(plexus: none, baseline: .init(veth: none, tapTurnaround: none), ratio: 1, target: 3,
                                    tapFloorRatio: 2, floorRatio: nil, floorTarget: nil, note: "n")
        let report = BenchReport(.vlanPing, options: BenchOptions(), result: result, command: "plexus bench vlan-ping", faults: [])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(report.jsonLine.utf8)) as? [String: Any])
        #expect(object["floor_ratio"] is NSNull)
        #expect(object["floor_target"] == nil && object["faults"] == nil)
        #expect(Set(object.keys) == ["baseline", "command", "date", "floor_ratio", "machine", "note", "parameters", "plexus",
                                     "ratio", "scenario", "tap_floor_ratio", "target"])
    }

    @Test("failover with --nodes: the N-node drill, the 4-node drill as baseline, the restart in place beside them; both shapes decode as recorded")
    func failoverAtScale() throws {
        let rounds = FailoverResult.Figures.Rounds(detectMs: [100], migrateMs: [20], totalMs: [240], failedRequests: [2])
        let large = FailoverResult.Figures(nodes: 64, detectMs: 100, migrateMs: 20, totalMs: 240, failedRequests: 2,
                                           rounds: rounds, timelineRound1: ["+0.0 ms killed (node 4)"])
        var small = large
        small.nodes = 4
        small.totalMs = 200
        let restart = FailoverResult.Baseline(serviceRestartInPlaceMs: 120, roundsMs: [120], failedRequests: [10])
        let result = FailoverResult(plexus: large, baseline: .drill(small), ratio: 1.2, target: 1.5, targetMs: 300,
                                    ratioToRestartInPlace: 2, restartInPlace: restart, note: "n")
        var options = BenchOptions()
        options.nodes = 64
        let line = BenchReport(.failover, options: options, result: result, command: "plexus bench failover --nodes 64", faults: []).jsonLine
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(Set(object.keys) == ["baseline", "command", "date", "machine", "note", "parameters", "plexus", "ratio",
                                     "ratio_to_restart_in_place", "restart_in_place", "scenario", "target", "target_ms"])
        #expect((object["parameters"] as? [String: Any])?["nodes"] as? Int == 64)
        #expect((object["baseline"] as? [String: Any])?["total_ms"] as? Double == 200)
        #expect((object["plexus"] as? [String: Any])?["nodes"] as? Int == 64)
        #expect(String(decoding: try Self.roundTrip(Data(line.utf8), scenario: .failover), as: UTF8.self) == line)
        let decoded = try JSONDecoder().decode(BenchReport<FailoverResult>.self, from: Data(line.utf8))
        #expect(decoded.result == result)
        // Without --nodes the parameters and the baseline keep their recorded shape.
        #expect(try JSONSerialization.jsonObject(with: JSONEncoder().encode(BenchParameters(.failover, BenchOptions()))) as? [String: Int]
                == ["rounds": 3])
    }
}
