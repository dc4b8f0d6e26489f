import Foundation
import PlexusCore
import PlexusLAN
import PlexusNode
import PlexusStorage
import PlexusTestSupport
import Testing

@Suite("Storage statistics at the control nodes (embedded platform)", .serialized, .requiresIOUring)
struct ControlStorageStatisticsTests {
    @Test("fio's reads and writes through a processor's disk are counted at the control nodes, exactly, per LUN",
          .requiresTool("fio"))
    func controlNodesCountTheDiskIO() throws {
        let v10 = VLANID(10)!
        var d = PlatformDefinition(controlNodes: [131, 132], processingNodes: [133], vlans: [v10: [133]])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-stats-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["lun0.img", "lun2.img"] {
            #expect(FileManager.default.createFile(atPath: "\(dir)/\(name)", contents: Data(count: 4 << 20)))
        }
        d.storage = [133: [StorageMapping(target: 0, lun: 0, path: "\(dir)/lun0.img"),
                           StorageMapping(target: 0, lun: 2, path: "\(dir)/lun2.img")]]
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let p = try LANPlatform(d, macState: state, disksDirectory: "\(dir)/disks")
        defer { p.stop() }
        #expect(waitUntil(seconds: 10) { p.disks(node: 133)["t0-l0"] != nil && p.disks(node: 133)["t0-l2"] != nil })
        let socket = try #require(p.disks(node: 133)["t0-l0"])
        let uri = "nbd+unix:///?socket=\(socket)"

        // 128 writes of 4 KiB, then 256 reads of 4 KiB, one at a time.
        let (w, wOut) = try runTool(["fio", "--name=stats-write", "--ioengine=nbd", "--uri=\(uri)", "--rw=write", "--bs=4k",
                                     "--size=512k", "--iodepth=1"], seconds: 120)
        #expect(w == 0, "\(wOut)")
        let (r, rOut) = try runTool(["fio", "--name=stats-read", "--ioengine=nbd", "--uri=\(uri)", "--rw=read", "--bs=4k",
                                     "--size=1m", "--iodepth=1"], seconds: 120)
        #expect(r == 0, "\(rOut)")

        let merged = try p.storageStatistics()
        let lun0 = try #require(merged.first { $0.processor == 133 && $0.target == 0 && $0.lun == 0 })
        let s = lun0.statistics
        print("control nodes' statistics of node 133's T0 L0 after fio's 128 writes and 256 reads of 4 KiB: "
              + "\(s.operations) operations, \(s.reads) reads, \(s.writes) writes, \(s.flushes) flushes, "
              + "\(s.bytesRead) B read, \(s.bytesWritten) B written, \(s.errors) errors, busy \(s.busySeconds) s, "
              + "p50 \(s.p50Microseconds) µs, p99 \(s.p99Microseconds) µs")
        #expect(lun0.path == "\(dir)/lun0.img")
        #expect(s.reads == 256 && s.bytesRead == 256 * 4096, "\(s)")
        #expect(s.writes == 128 && s.bytesWritten == 128 * 4096, "\(s)")
        #expect(s.errors == 0 && s.trims == 0)
        #expect(s.operations == s.reads + s.writes + s.flushes)
        #expect(s.latency.count == s.operations)
        #expect(s.busySeconds > 0 && s.p50Microseconds > 0 && s.p99Microseconds >= s.p50Microseconds)
        // The LUN nobody used is listed, with nothing counted.
        let lun2 = try #require(merged.first { $0.processor == 133 && $0.lun == 2 })
        #expect(lun2.statistics == DiskStatistics())

        // Each control node counts what it served; together, every command once.
        let each = try (0..<2).map { k in try p.storageStatistics(control: k).first { $0.processor == 133 && $0.lun == 0 } }
        #expect(each.compactMap { $0?.statistics.reads }.reduce(0, +) == 256)
        #expect(DiskStatistics.merged(each.compactMap { $0?.statistics }) == s)

        // The processor's own view of the disk counts the same requests.
        let own = try #require(try p.processingNodes[133]?.diskStatistics()["t0-l0"])
        #expect(own.reads == 256 && own.writes == 128 && own.bytesRead == s.bytesRead && own.bytesWritten == s.bytesWritten)
    }
}
