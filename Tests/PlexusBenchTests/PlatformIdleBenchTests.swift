import Foundation
@testable import PlexusBench
import PlexusTestSupport
import Testing

@Suite("Platform-idle bench", .requiresIOUring)
struct PlatformIdleBenchTests {
    @Test("platform-idle: a platform of 3 processing nodes against the 6-node one; the JSON has both, with their RVIs and heartbeats")
    func smallPlatform() throws {
        var o = BenchOptions()
        (o.nodes, o.seconds) = (3, 0.3)
        o.output = BenchOutput(progress: { print($0) }, summary: { print($0) })
        let result = try platformIdle(o)
        // 3 processing nodes on one VLAN: 3 direct RVIs each way, plus each node's management
        // RVI to both control nodes (at both ends); the 6-node platform has more.
        #expect(result.plexus.nodes == 3 && result.baseline.nodes == 6)
        #expect(result.plexus.rvis >= 3 * 2 + 3 * 2 * 2 && result.baseline.rvis > result.plexus.rvis, "\(result)")
        #expect(result.plexus.heartbeatsPerSecond > 0 && result.plexus.cpuSecondsPerSecond > 0)
        #expect(result.ratio > 0 && result.plexus.residentMiB > 0 && result.plexus.startMs > 0)
        let line = BenchReport(.platformIdle, options: o, result: result, command: "plexus bench platform-idle", faults: []).jsonLine
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let parameters = try #require(object["parameters"] as? [String: Any])
        #expect(object["scenario"] as? String == "platform-idle" && parameters["nodes"] as? Int == 3)
    }
}
