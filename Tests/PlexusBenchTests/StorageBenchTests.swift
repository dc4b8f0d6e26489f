import Foundation
@testable import PlexusBench
import Testing

/// Whether `tool` is on the PATH.
private func installed(_ tool: String) -> Bool {
    (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        .contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)") }
}

@Suite("Storage bench")
struct StorageBenchTests {
    @Test("storage: one short round per side through Plexus, nbdkit and io_uring; the JSON has every side and each moved I/O",
          .enabled(if: installed("fio"), "needs fio"), .enabled(if: installed("nbdkit"), "needs nbdkit"))
    func oneRound() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-bench-storage-test-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var o = BenchOptions()
        (o.pattern, o.blockSize, o.queueDepth, o.seconds, o.rounds) = ("randread", 4096, 8, 1, 1)
        (o.storageFile, o.storageFileMiB) = (dir.appendingPathComponent("disk.img").path, 32)
        o.output = BenchOutput(progress: { print($0) }, summary: { print($0) })
        let result = try storage(o)
        let line = BenchReport(.storage, options: o, result: result, command: "plexus bench storage", faults: []).jsonLine
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["scenario"] as? String == "storage")
        #expect(Set(object.keys).isSuperset(of: ["plexus", "baseline", "limit", "ratio", "ratio_to_limit", "note", "parameters",
                                                 "machine", "date", "command"]))
        let parameters = try #require(object["parameters"] as? [String: Any])
        #expect(parameters["pattern"] as? String == "randread" && parameters["block_size"] as? Int == 4096
                && parameters["queue_depth"] as? Int == 8)
        for side in ["plexus", "baseline", "limit"] {
            let f = try #require(object[side] as? [String: Any], "\(side)")
            for key in ["iops", "mbytes_per_s", "p50_us", "p99_us", "ios", "runs_iops", "method"] {
                #expect(f[key] != nil, "\(side) has \(key)")
            }
            #expect((f["iops"] as? Double ?? 0) > 0 && (f["ios"] as? Int ?? 0) > 0, "\(side) moved I/O")
            #expect((f["p50_us"] as? Double ?? 0) > 0)
            #expect((f["runs_iops"] as? [Double])?.count == 1)
        }
        let plexus = try #require(object["plexus"] as? [String: Any])
        #expect((plexus["scsi_commands"] as? Int ?? 0) >= (plexus["ios"] as? Int ?? .max), "every fio I/O went as a SCSI command")
        #expect(plexus["failed"] as? Int == 0)
        #expect(result.ratio > 0 && result.ratio == result.plexus.iops / result.baseline.iops)
        // It decodes as the report type it is.
        let back = try JSONDecoder().decode(BenchReport<StorageResult>.self, from: Data(line.utf8))
        #expect(back.result == result)
    }
}
