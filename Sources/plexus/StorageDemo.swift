import Foundation
import PlexusCore
import PlexusLAN
import PlexusNode
import PlexusStorage
import PlexusTestSupport

/// Step 7 of `plexus demo`: a processor's disk. Two control nodes serve a file as (target 0,
/// LUN 0) of node 3's personality; node 3 offers it as an NBD socket and `nbdcopy` writes 4 MiB
/// through it; node 3 is killed; the spare, node 4, takes the personality over, offers the same
/// disk, and `nbdcopy` reads the 4 MiB back. In this process, on loopback (no root needed).
func storageShowcase() throws -> Bool {
    print("\n7. virtual storage: a processor's disk moves with its personality")
    guard let nbdcopy = ["/usr/bin/nbdcopy", "/usr/local/bin/nbdcopy"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        print("   skipped: nbdcopy is not installed (scripts/setup.sh installs libnbd-bin)")
        return true
    }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-demo-disks-\(getpid())").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let image = dir + "/web.img", size = 64 << 20
    FileManager.default.createFile(atPath: image, contents: nil)
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: image))
    try h.truncate(atOffset: UInt64(size))
    try h.close()
    var d = PlatformDefinition(controlNodes: [1, 2], processingNodes: [3, 4], vlans: [VLANID(10)!: [3]])
    d.spares = [4]
    d.storage = [3: [StorageMapping(target: 0, lun: 0, path: image)]]
    let p = try LANPlatform(d, macState: dir + "/mac-counter", disksDirectory: dir + "/disks")
    defer { p.stop() }
    print("   control nodes 1 and 2 serve \(image) (\(size >> 20) MiB) as target 0, LUN 0 of node 3's personality; node 4 is a spare")
    guard waitUntil(seconds: 10, { p.disks(node: 3)["t0-l0"] != nil }), let socket3 = p.disks(node: 3)["t0-l0"] else {
        print("   FAILED: node 3 did not offer its disk")
        return false
    }
    print("   node 3 found its disk (listLUNs, READ CAPACITY) and offers it: nbd+unix:///?socket=\(socket3)")
    var g = SplitMix64(seed: 7)
    let data = Data((0..<(4 << 20)).map { _ in UInt8(truncatingIfNeeded: g.next()) })
    try data.write(to: URL(fileURLWithPath: dir + "/written.bin"))
    let start = nowNanos()
    let (put, putOut) = try runTool([nbdcopy, "--flush", dir + "/written.bin", "nbd+unix:///?socket=\(socket3)"])
    guard put == 0 else {
        print("   FAILED: nbdcopy into node 3's disk: \(putOut)")
        return false
    }
    print(String(format: "   nbdcopy wrote 4 MiB through node 3's disk in %.1f ms (NBD → SCSI over two RVIs → control node → file)",
                 Double(nowNanos() - start) / 1e6))
    print("   " + counted(p, node: 3))
    p.kill(node: 3)
    guard waitUntil(seconds: 10, { p.disks(node: 4)["t0-l0"] != nil }), let socket4 = p.disks(node: 4)["t0-l0"] else {
        print("   FAILED: the spare did not offer the disk after the failover")
        return false
    }
    // The spare may be configured by either control node first: the timeline is control node 1's.
    _ = waitUntil(seconds: 5) { !p.failovers(0).isEmpty }
    let timeline = p.failovers(0).first?.timeline.joined(separator: ", ") ?? "control node 1 did not record the failover"
    print("   node 3 killed; its personality moved to node 4 (\(timeline)); node 4 offers t0-l0: \(socket4)")
    let (get, getOut) = try runTool([nbdcopy, "nbd+unix:///?socket=\(socket4)", dir + "/back.bin"])
    let back = FileManager.default.contents(atPath: dir + "/back.bin") ?? Data()
    let same = get == 0 && back.count == size && back.prefix(data.count) == data
    print("   node 4 read the disk back: \(same ? "the 4 MiB node 3 wrote are there" : "MISMATCH \(getOut)")")
    print("   " + counted(p, node: 4))
    return same
}

/// What the control nodes counted for node `n`'s t0-l0 (both merged; "Management Interface Component").
private func counted(_ p: LANPlatform, node n: NodeNumber) -> String {
    guard let s = (try? p.storageStatistics())?.first(where: { $0.processor == n.rawValue && $0.target == 0 && $0.lun == 0 })?.statistics
    else { return "the control nodes have no statistics for node \(n)'s t0-l0" }
    return String(format: "the control nodes counted for node %u's t0-l0: %llu reads (%llu bytes), %llu writes (%llu bytes), "
                  + "%llu flushes, latency p50 %.0f µs, p99 %.0f µs", n.rawValue, s.reads, s.bytesRead, s.writes, s.bytesWritten,
                  s.flushes, s.p50Microseconds, s.p99Microseconds)
}
