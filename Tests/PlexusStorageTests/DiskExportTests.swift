import Foundation
import PlexusCore
import PlexusRCLAN
import PlexusStorage
import PlexusTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension VirtualDiskExporter: @unchecked Sendable {}

/// A processing node whose (target 0, LUN 0) is exported over NBD, served by two control nodes
/// (each a storage target over the same backing file), all on loopback.
final class ExportBed {
    static let size = 16 << 20
    static let slotSize = 256 * 1024
    let dir = TemporaryDirectory("plexus-disk")
    let image: String
    let processor: EngineThread
    let controls: [EngineThread]
    let initiator: StorageInitiator
    let exporter: VirtualDiskExporter
    let server: NBDServer
    /// What discovery found.
    let disks: [VirtualDisk]
    /// The control nodes' storage targets (engine-thread objects of `controls`).
    let targets: [StorageTarget]
    /// With `san`, the tgtd serving the image as the LUN the control nodes map.
    let san: ISCSITargetDaemon?

    init(readOnly: Bool = false, timeout: Duration = .seconds(2), san: Bool = false) throws {
        image = dir.file("disk.img")
        createSparseFile(image, size: Self.size)
        self.san = san ? try ISCSITargetDaemon(backing: image) : nil
        let path = self.san?.url ?? image
        let adapters = (0..<2).map { _ in HostAdapter(maxCommands: 64, timeout: timeout) }
        let initiator = StorageInitiator(adapters: adapters, maxCommands: 64)
        let exporter = try VirtualDiskExporter(initiator: initiator, lanes: 2, depth: 16, slotSize: Self.slotSize)
        self.initiator = initiator
        self.exporter = exporter
        processor = try EngineThread.start(.loopback(node: 1)) { RCLAN(delegate: exporter) }
        var controls: [EngineThread] = [], targets: [StorageTarget] = []
        for k in 0..<2 {
            let t = try StorageTarget(slots: 16, slotSize: Self.slotSize, queueDepth: 64, transferTimeout: .seconds(4),
                                      sanTimeout: .seconds(1))
            let c = try EngineThread.start(.loopback(node: 2 + UInt8(k))) { RCLAN(delegate: t) }
            controls.append(c)
            targets.append(t)
            try ProtocolRig.connect(processor: processor, control: c, target: t,
                                    map: [StorageMapping(target: 0, lun: 0, path: path,
                                                         access: readOnly ? .readOnly : .readWrite)],
                                    adapter: adapters[k], processorVI: UInt32(2 * k + 1), controlVI: 1)
        }
        self.controls = controls
        self.targets = targets
        // Discovery: the control nodes list the processor's map, and size each disk.
        let found = Mutex<Result<[VirtualDisk], DiskDiscoveryError>?>(nil)
        try processor.runAndWait { e in
            let layer = RCLAN.on(e)!
            layer.host(initiator)
            try exporter.attach(layer: layer)
            exporter.discover(layer: layer) { r in found.withLock { $0 = r } }
        }
        _ = waitUntil(seconds: 10) { found.withLock { $0 != nil } }
        disks = try #require(try found.withLock { $0 }?.get())
        var disk = try #require(disks.first)
        disk.geometry.readOnly = readOnly
        let export = try processor.runAndWait { [disk] _ in exporter.export(disk, as: "") }
        server = NBDServer(socketPath: dir.file("disk.sock"), exports: [export])
        try server.start()
    }

    deinit { stop() }

    func stop() {
        server.stop()
        _ = processor.stopAndWait()
        for c in controls { _ = c.stopAndWait() }
        san?.kill()
    }

    /// Control node `k`'s view of its SAN LUNs.
    func sanStatus(_ k: Int) throws -> [SANStatus] {
        let t = targets[k]
        return try controls[k].runAndWait { _ in t.sanStatus }
    }

    var uri: String { "nbd+unix:///?socket=\(server.socketPath)" }

    /// The exporter's counters and the initiator's re-issues, read on the engine thread.
    func counters() throws -> (VirtualDiskCounters, reissued: UInt64, failed: UInt64) {
        let exporter = exporter, initiator = initiator
        return try processor.runAndWait { _ in (exporter.counters, initiator.reissued, initiator.failed) }
    }
}

@Suite("A processor's disk over NBD: the host adapter behind real clients")
struct DiskExportTests {
    @Test("nbdinfo shows the disk; nbdcopy writes a random image through both fabrics and reads it back, byte for byte",
          .requiresTool("nbdinfo"), .requiresTool("nbdcopy"))
    func copyInAndOut() throws {
        let bed = try ExportBed()
        #expect(bed.disks.map(\.name) == ["t0-l0"] && bed.disks.first?.geometry.blockCount == UInt64(ExportBed.size / 512)
                && bed.disks.first?.geometry.blockSize == 512, "discovery found the one disk of the map, sized")
        let (infoStatus, info) = try runTool(["nbdinfo", "--json", bed.uri])
        #expect(infoStatus == 0, "\(info)")
        let e = try nbdinfoExport(info)
        #expect(e["export-size"] as? Int == ExportBed.size)
        #expect(e["block_size_minimum"] as? Int == 512 && e["block_size_maximum"] as? Int == 16 * ExportBed.slotSize)
        #expect(e["is_read_only"] as? Bool == false && e["can_flush"] as? Bool == true && e["can_fua"] as? Bool == true)

        let source = bed.dir.file("random.bin"), copy = bed.dir.file("copy.bin")
        let random = randomBytes(ExportBed.size)
        #expect(FileManager.default.createFile(atPath: source, contents: Data(random)))
        let (inStatus, inOut) = try runTool(["nbdcopy", "--flush", "--requests=16", source, bed.uri], seconds: 120)
        #expect(inStatus == 0, "\(inOut)")
        #expect(fileBytes(bed.image, 0..<ExportBed.size) == random ? true : false, "the control nodes' backing file holds the image")
        let (outStatus, outOut) = try runTool(["nbdcopy", "--requests=16", bed.uri, copy], seconds: 120)
        #expect(outStatus == 0, "\(outOut)")
        #expect(fileBytes(copy, 0..<(ExportBed.size + 1)) == random ? true : false, "the copy out is the image")
        let (c, reissued, failed) = try bed.counters()
        let nbd = bed.server.statistics.snapshot
        print("Disk copy: \(nbd.writes) writes, \(nbd.reads) reads, \(nbd.flushes) flushes over NBD; "
              + "\(c.submitted) SCSI commands, \(c.failed) failed, \(reissued) re-issued, \(failed) failed everywhere")
        #expect(c.failed == 0 && nbd.errorReplies == 0 && nbd.malformed == 0)
        let exporter = bed.exporter
        let stats = try #require(try bed.processor.runAndWait { _ in exporter.statistics() }["t0-l0"])
        print("Disk statistics: \(stats.operations) operations, \(stats.bytesWritten) bytes written, \(stats.bytesRead) read, "
              + "busy \(stats.busySeconds) s, p50 \(stats.p50Microseconds) µs, p99 \(stats.p99Microseconds) µs")
        #expect(stats.bytesWritten == UInt64(ExportBed.size) && stats.bytesRead >= UInt64(ExportBed.size))
        #expect(stats.operations == c.completed && stats.errors == 0 && stats.busySeconds > 0
                && stats.p50Microseconds > 0 && stats.p99Microseconds >= stats.p50Microseconds)
        #expect(c.submitted == c.completed && c.submitted >= nbd.reads + nbd.writes + nbd.flushes)
    }

    @Test("fio verifies random 4 KiB writes at queue depth 16 while the control node in use is stopped: no error reaches fio",
          .requiresTool("fio"))
    func controlNodeDies() throws {
        let bed = try ExportBed(timeout: .milliseconds(500))
        let fio = try WatchedProcess(["fio", "--name=plexus-disk", "--ioengine=nbd", "--uri=\(bed.uri)", "--rw=randwrite",
                                      "--bs=4k", "--size=\(ExportBed.size)", "--iodepth=16", "--verify=crc32c",
                                      "--do_verify=1", "--verify_state_save=0", "--randseed=1501", "--output-format=json"])
        // Stop control node 1 (the preferred one) once a quarter of the writes are through.
        #expect(waitUntil(seconds: 60) { bed.server.statistics.snapshot.writes >= UInt64(ExportBed.size / 4096 / 4) })
        let stoppedAt = bed.server.statistics.snapshot.writes
        _ = bed.controls[0].stopAndWait()
        #expect(waitUntil(seconds: 120) { !fio.process.isRunning })
        let status = fio.process.wait()
        #expect(status == 0, "\(fio.output)")
        let out = fio.output
        let json = try JSONSerialization.jsonObject(with: Data(out.utf8.drop { $0 != UInt8(ascii: "{") })) as? [String: Any]
        let job = (json?["jobs"] as? [[String: Any]])?.first
        #expect(job?["error"] as? Int == 0)
        let (c, reissued, failed) = try bed.counters()
        let nbd = bed.server.statistics.snapshot
        print("Control node stopped after \(stoppedAt) of \(ExportBed.size / 4096) fio writes: \(nbd.writes) writes and "
              + "\(nbd.reads) verifying reads over NBD, \(nbd.errorReplies) errors; \(c.submitted) SCSI commands, "
              + "\(reissued) re-issued to control node 2, \(failed) failed everywhere")
        #expect(nbd.errorReplies == 0 && c.failed == 0 && failed == 0)
        #expect(reissued > 0, "commands in flight at the stop went again through the other control node")
        #expect(nbd.writes >= UInt64(ExportBed.size / 4096) && nbd.reads >= UInt64(ExportBed.size / 4096))
    }

    @Test("a read-only disk: writes are refused with EPERM and counted, reads go on",
          .requiresTool("nbdcopy"))
    func readOnly() throws {
        let bed = try ExportBed(readOnly: true)
        let source = bed.dir.file("random.bin")
        #expect(FileManager.default.createFile(atPath: source, contents: Data(randomBytes(1 << 20))))
        let (inStatus, _) = try runTool(["nbdcopy", source, bed.uri])
        #expect(inStatus != 0, "nbdcopy into a read-only disk fails")
        let (outStatus, outOut) = try runTool(["nbdcopy", bed.uri, bed.dir.file("copy.bin")])
        #expect(outStatus == 0, "\(outOut)")
        let zeroes = fileBytes(bed.dir.file("copy.bin"), 0..<(ExportBed.size + 1)) == [UInt8](repeating: 0, count: ExportBed.size)
        #expect(zeroes, "the disk reads back as the zeroes it was")
    }

    @Test("nbdfuse, losetup, mkfs.ext4, mount on the processor's disk: files written, the chain rebuilt, files read back; fstrim releases the deleted file's blocks in the backing file",
          .requiresRoot, .requiresTool("fstrim"), .requiresTool("nbdfuse"), .requiresTool("losetup"), .requiresTool("mkfs.ext4"),
          .requiresTool("e2fsck"), .requiresTool("mount"), .requiresTool("umount"),
          .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse"))
    func mountedFileSystem() throws {
        FuseLoopChain.sweepStale()
        let bed = try ExportBed()
        let files: [(String, [UInt8])] = [("big.bin", randomBytes(3 << 20)), ("hello.txt", Array("on a virtual disk\n".utf8))]
        do {
            let chain = FuseLoopChain(socket: bed.server.socketPath)
            defer { chain.tearDown() }
            let loop = try chain.attach()
            let (mkfs, mkfsOut) = try runTool(["mkfs.ext4", "-q", "-F", loop], seconds: 120)
            try #require(mkfs == 0, "\(mkfsOut)")
            try chain.mount()
            for (name, bytes) in files {
                #expect(FileManager.default.createFile(atPath: "\(chain.mountPoint)/\(name)", contents: Data(bytes)))
            }
            _ = try runTool(["sync"])
            try chain.unmount()
            let (fsck, fsckOut) = try runTool(["e2fsck", "-fn", loop], seconds: 120)
            #expect(fsck == 0, "\(fsckOut)")
        }
        let chain = FuseLoopChain(socket: bed.server.socketPath)
        defer { chain.tearDown() }
        _ = try chain.attach()
        try chain.mount()
        for (name, bytes) in files {
            let back = FileManager.default.contents(atPath: "\(chain.mountPoint)/\(name)").map { [UInt8]($0) }
            #expect(back?.count == bytes.count && back == bytes, "\(name) reads back as written")
        }
        // fstrim: the file system's free blocks go down the chain as NBD TRIMs and UNMAPs, and
        // the control nodes punch holes in the backing file.
        try FileManager.default.removeItem(atPath: "\(chain.mountPoint)/big.bin")
        _ = try runTool(["sync"])
        let before = allocatedBlocks(bed.image)
        let (fstrim, fstrimOut) = try runTool(["fstrim", "-v", chain.mountPoint], seconds: 60)
        #expect(fstrim == 0, "\(fstrimOut)")
        #expect(bed.server.statistics.snapshot.trims > 0 && allocatedBlocks(bed.image) < before,
                "\(bed.server.statistics.snapshot.trims) trims, \(before) → \(allocatedBlocks(bed.image)) blocks")
        try chain.unmount()
        let (c, _, _) = try bed.counters()
        #expect(c.failed == 0 && bed.server.statistics.snapshot.errorReplies == 0)
    }

    @Test("connections and bad requests: a third connection is refused at the handshake; one that leaves with requests in flight gives its lane back; unaligned, out-of-range and oversized requests get EINVAL and the connection goes on; a request over several slots comes back whole; the engine stopping ends the connections")
    func lanesAndBadRequests() throws {
        let bed = try ExportBed()
        let socket = bed.server.socketPath
        let first = try #require(NBDTestClient(socketPath: socket)), second = try #require(NBDTestClient(socketPath: socket))
        #expect(first.go() != nil && second.go() != nil, "two lanes, two connections")
        let third = try #require(NBDTestClient(socketPath: socket))
        #expect(third.go() == nil, "a third connection finds no lane and is refused at the handshake")

        // The first leaves with eight 64 KiB writes in flight: its lane comes back once they end.
        for k in 0..<8 {
            first.request(NBDProtocol.cmdWrite, handle: UInt64(k), offset: UInt64(k) << 16, length: 65536,
                          payload: [UInt8](repeating: UInt8(k), count: 65536))
        }
        first.disconnect()
        var again: NBDTestClient?
        #expect(waitUntil(seconds: 10) {
            guard let c = NBDTestClient(socketPath: socket), c.go() != nil else { return false }
            again = c
            return true
        }, "the lane of a connection that left is given back")

        // Bad requests on the second: refused, and the connection carries on.
        for (offset, length, why) in [(UInt64(100), UInt32(4096), "unaligned"), (UInt64(ExportBed.size), UInt32(4096), "past the end"),
                                      (UInt64(0), UInt32(8 << 20), "over the 4 MiB maximum")] {
            second.request(NBDProtocol.cmdRead, handle: 7, offset: offset, length: length)
            #expect(second.reply()?.error == NBDProtocol.errInvalid, "\(why)")
        }
        // A write over five slots (1 MiB and 512 bytes) and its read come back whole.
        var g = SplitMix64(seed: 1505)
        let data = (0..<((1 << 20) + 512)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
        second.request(NBDProtocol.cmdWrite, handle: 8, offset: 1 << 20, length: UInt32(data.count), payload: data)
        #expect(second.reply().map { $0.error == 0 && $0.handle == 8 } == true)
        second.request(NBDProtocol.cmdRead, handle: 9, offset: 1 << 20, length: UInt32(data.count))
        let r = second.reply()
        #expect(r?.error == 0 && r?.handle == 9)
        #expect(second.receive(data.count) == data ? true : false, "read back whole, in order")
        let stats = bed.server.statistics.snapshot
        #expect(stats.errorReplies == 3 && stats.malformed == 0)

        // The processor's engine stops: the connection closes at its next request (the client's
        // reply timeout is 10 s, so an answer within 5 s is the server's), and the server stops
        // at once.
        _ = bed.processor.stopAndWait()
        var start = nowNanos()
        second.request(NBDProtocol.cmdRead, handle: 10, offset: 0, length: 4096)
        let late = second.reply()
        #expect(late == nil && Double(nowNanos() - start) / 1e9 < 5, "closed at once: \(String(describing: late))")
        start = nowNanos()
        bed.server.stop()
        #expect(Double(nowNanos() - start) / 1e9 < 5, "the server stops without waiting out its connections")
        _ = again
        print("Lanes: 2 connections served, the third refused, a departed connection's lane reused; 3 bad requests refused; "
              + "a 1 MiB + 512 byte request over 5 slots read back whole; after the engine stopped: \(String(describing: late))")
    }

    @Test("on a LUN of a tgtd SAN: fio verifies random 4 KiB writes while the control node in use is stopped; no error reaches fio",
          .requiresRoot, .requiresTool("tgtd"), .requiresTool("tgtadm"), .requiresTool("fio"))
    func controlNodeDiesOverTheSAN() throws {
        let bed = try ExportBed(timeout: .milliseconds(500), san: true)
        let fio = try WatchedProcess(["fio", "--name=plexus-san", "--ioengine=nbd", "--uri=\(bed.uri)", "--rw=randwrite",
                                      "--bs=4k", "--size=\(ExportBed.size)", "--iodepth=16", "--verify=crc32c",
                                      "--do_verify=1", "--verify_state_save=0", "--randseed=1502", "--output-format=json"])
        #expect(waitUntil(seconds: 60) { bed.server.statistics.snapshot.writes >= UInt64(ExportBed.size / 4096 / 4) })
        let stoppedAt = bed.server.statistics.snapshot.writes
        _ = bed.controls[0].stopAndWait()
        #expect(waitUntil(seconds: 120) { !fio.process.isRunning })
        #expect(fio.process.wait() == 0, "\(fio.output)")
        let (c, reissued, failed) = try bed.counters()
        let nbd = bed.server.statistics.snapshot
        print("SAN LUN, control node stopped after \(stoppedAt) of \(ExportBed.size / 4096) fio writes: \(nbd.writes) writes and "
              + "\(nbd.reads) verifying reads, \(nbd.errorReplies) errors; \(c.submitted) SCSI commands, \(reissued) re-issued, "
              + "\(failed) failed everywhere; the file behind tgtd: \(bed.image)")
        #expect(nbd.errorReplies == 0 && c.failed == 0 && failed == 0 && reissued > 0)
    }

    @Test("on a LUN of a tgtd SAN: tgtd stopped mid-I/O: the NBD client gets EIO, nothing hangs, the control nodes name the LUN DOWN; tgtd back: reads are good again",
          .requiresRoot, .requiresTool("tgtd"), .requiresTool("tgtadm"))
    func sanStoppedMidIO() throws {
        let bed = try ExportBed(san: true)
        let client = try #require(NBDTestClient(socketPath: bed.server.socketPath))
        #expect(client.go() != nil)
        let block = [UInt8](repeating: 0xC3, count: 65536)
        client.request(NBDProtocol.cmdWrite, handle: 1, offset: 0, length: 65536, payload: block)
        #expect(client.reply()?.error == 0)
        // tgtd dies with requests in flight.
        for k in 0..<8 { client.request(NBDProtocol.cmdRead, handle: UInt64(10 + k), offset: UInt64(k) << 16, length: 65536) }
        bed.san!.kill()
        let start = nowNanos()
        var errors = 0, good = 0
        for _ in 0..<8 {
            guard let r = client.reply() else { break }
            if r.error == 0 { good += 1; _ = client.receive(65536) } else { errors += 1; #expect(r.error == NBDProtocol.errIO) }
        }
        #expect(good + errors == 8, "every request answered")
        client.request(NBDProtocol.cmdRead, handle: 30, offset: 0, length: 4096)
        #expect(client.reply()?.error == NBDProtocol.errIO, "a read while the SAN is down fails at once")
        let settled = Double(nowNanos() - start) / 1e9
        #expect(settled < 10, "nothing waits out more than the SAN time-out")
        for k in 0..<2 {
            let status = try bed.sanStatus(k)
            #expect(status.count == 1 && status[0].isUp == false && status[0].url == bed.san!.url, "\(status)")
        }
        // tgtd back on the same port: the sessions log in again by themselves.
        try bed.san!.start()
        #expect(waitUntil(seconds: 15) {
            client.request(NBDProtocol.cmdRead, handle: 40, offset: 0, length: 65536)
            guard client.reply()?.error == 0 else { return false }
            return client.receive(65536) == block
        }, "reads are good again, and return what was written before tgtd died")
        print("SAN stopped mid-I/O: of 8 reads in flight \(good) completed and \(errors) ended with EIO, settled in "
              + String(format: "%.2f s", settled) + "; control nodes named the LUN DOWN; after tgtd restarted the data read back")
    }

    @Test("TRIM: offered (the control nodes punch holes in the file), a trimmed range reads back as zeroes at the client and in the backing file, and the file's blocks are released; out of range is EINVAL")
    func trim() throws {
        let bed = try ExportBed()
        let (infoStatus, info) = try runTool(["nbdinfo", "--json", bed.uri])
        let shown = try nbdinfoExport(info)
        #expect(infoStatus == 0 && shown["can_trim"] as? Bool == true, "\(info)")
        let client = try #require(NBDTestClient(socketPath: bed.server.socketPath))
        #expect(client.go() != nil)
        let data = [UInt8](repeating: 0x7E, count: 1 << 20)
        client.request(NBDProtocol.cmdWrite, handle: 1, offset: 0, length: UInt32(data.count), payload: data)
        #expect(client.reply()?.error == 0)
        client.request(NBDProtocol.cmdFlush, handle: 2)
        #expect(client.reply()?.error == 0)
        let before = allocatedBlocks(bed.image) * 512
        // Release the middle 512 KiB.
        client.request(NBDProtocol.cmdTrim, handle: 3, offset: 256 << 10, length: 512 << 10)
        #expect(client.reply().map { $0.error == 0 && $0.handle == 3 } == true)
        client.request(NBDProtocol.cmdRead, handle: 4, offset: 0, length: UInt32(data.count))
        #expect(client.reply()?.error == 0)
        let back = client.receive(data.count) ?? []
        let expected = data.enumerated().map { $0.offset >= 256 << 10 && $0.offset < 768 << 10 ? UInt8(0) : $0.element }
        #expect(back == expected ? true : false, "the trimmed range reads as zeroes, the rest as written")
        #expect(fileBytes(bed.image, (256 << 10)..<(768 << 10)).allSatisfy { $0 == 0 }, "a hole in the backing file")
        let after = allocatedBlocks(bed.image) * 512
        #expect(after <= before - (512 << 10), "the file's blocks were released: \(before) → \(after) bytes")
        client.request(NBDProtocol.cmdTrim, handle: 5, offset: UInt64(ExportBed.size), length: 4096)
        #expect(client.reply()?.error == NBDProtocol.errInvalid)
        let (c, _, _) = try bed.counters()
        let exporter = bed.exporter
        let stats = try #require(try bed.processor.runAndWait { _ in exporter.statistics() }["t0-l0"])
        #expect(stats.trims == 1 && c.failed == 0)
        print("TRIM: 512 KiB released, the backing file went from \(before) to \(after) allocated bytes")
    }
}
