import Foundation
#if canImport(Glibc)
import Glibc
#endif
import PlexusCore
import PlexusNamespaces
import PlexusRCLAN
import PlexusStorage
import PlexusTestSupport

/// storage: fio through NBD into a processor's disk (the NBD server, the processing node's
/// exporter and initiator, RVIs on both fabrics, two control nodes' storage targets, the backing
/// file), against nbdkit's file plugin serving the same file to the same fio job, and the same
/// job on the file itself with io_uring and O_DIRECT.
public func storage(_ options: BenchOptions) throws -> StorageResult { try options.storageScenario() }

/// The fio access patterns of the storage scenario.
public enum StoragePattern: String, CaseIterable, Sendable {
    case randread, randwrite, read, write
    var reads: Bool { self == .randread || self == .read }
}

/// Reads "4k", "128K", "1m", "1M" or plain bytes; nil when it is none of them.
public func parseByteSize(_ s: String) -> Int? {
    let t = s.lowercased()
    let (digits, scale) = t.hasSuffix("k") ? (t.dropLast(), 1 << 10) : t.hasSuffix("m") ? (t.dropLast(), 1 << 20)
        : (Substring(t), 1)
    guard let n = Int(digits), n > 0 else { return nil }
    return n * scale
}

/// A reference the engine closures may carry: engine-thread state, touched there only.
struct EngineOwned<T>: @unchecked Sendable {
    let value: T
}

/// A processing node whose (target 0, LUN 0) is served over NBD on a Unix socket, by two control
/// nodes each running a storage target over the same backing file, every engine on loopback in
/// this process: the stack of a processor's disk, end to end.
final class StorageBed {
    /// Exporter lanes (NBD connections at once); each has `depth` slots of `slotSize` bytes (a
    /// larger request takes several, each its own SCSI command). The targets' slots are at
    /// least as large as the exporter's, and as many.
    static let lanes = 2
    static func targetSlotSize(_ slotSize: Int) -> Int { max(1 << 20, slotSize) }
    static let targetSlots = 64

    let processor: EngineThread
    let controls: [EngineThread]
    let initiator: StorageInitiator
    let exporter: VirtualDiskExporter
    let server: NBDServer

    init(file: String, bytes: Int, socket: String, direct: Bool, depth: Int, slotSize: Int) throws {
        let commands = Self.lanes * depth
        let adapters = (0..<2).map { _ in HostAdapter(maxCommands: commands, timeout: .seconds(5)) }
        let initiator = StorageInitiator(adapters: adapters, maxCommands: commands)
        let exporter = try VirtualDiskExporter(initiator: initiator, lanes: Self.lanes, depth: depth, slotSize: slotSize)
        self.initiator = initiator
        self.exporter = exporter
        let owned = EngineOwned(value: (exporter, initiator, adapters))
        processor = try EngineThread.start(.loopback(node: 1)) { RCLAN(delegate: owned.value.0) }
        var controls: [EngineThread] = []
        do {
            for k in 0..<2 {
                let t = EngineOwned(value: try StorageTarget(slots: max(Self.targetSlots, depth), slotSize: Self.targetSlotSize(slotSize),
                                                             queueDepth: commands, transferTimeout: .seconds(10)))
                let c = try EngineThread.start(.loopback(node: 2 + UInt8(k))) { RCLAN(delegate: t.value) }
                controls.append(c)
                let map = [StorageMapping(target: 0, lun: 0, path: file, access: .readWrite, direct: direct)]
                try StorageLink.connect(processor: processor, control: c, target: t.value, map: map, adapter: adapters[k],
                                        processorVI: UInt32(2 * k + 1), controlVI: 1)
            }
            let geometry = BlockGeometry(blockSize: 512, blockCount: UInt64(bytes / 512), alignment: 512)
            let export = try processor.runAndWait { e in
                let layer = RCLAN.on(e)!
                layer.host(owned.value.1)
                try owned.value.0.attach(layer: layer)
                return owned.value.0.export(VirtualDisk(name: "", target: 0, lun: 0, geometry: geometry))
            }
            server = NBDServer(socketPath: socket, exports: [export])
            try server.start()
        } catch {
            _ = processor.stopAndWait()
            for c in controls { _ = c.stopAndWait() }
            throw error
        }
        self.controls = controls
    }

    /// SCSI commands submitted and failed at the exporter, and the initiator's re-issues.
    func counters() throws -> (submitted: UInt64, failed: UInt64, reissued: UInt64) {
        let owned = EngineOwned(value: (exporter, initiator))
        return try processor.runAndWait { _ in
            (owned.value.0.counters.submitted, owned.value.0.counters.failed + owned.value.1.failed, owned.value.1.reissued)
        }
    }

    func stop() {
        server.stop()
        _ = processor.stopAndWait()
        for c in controls { _ = c.stopAndWait() }
    }
}

extension BenchOptions {
    /// The three sides of the storage scenario.
    enum StorageSide: String, CaseIterable {
        case plexus, nbdkit, limit
    }

    /// One fio run's figures (of the pattern's direction).
    struct FioRun {
        var iops: Double
        var bytesPerSecond: Double
        var p50us: Double
        var p99us: Double
        var ios: UInt64
        var commands: UInt64? = nil
        var failed: UInt64? = nil
    }

    var storagePattern: StoragePattern { StoragePattern(rawValue: pattern) ?? .randread }

    /// The backing file: `storageFileMiB` MiB of data written once (not preallocated: reads of
    /// never-written extents would not touch the disk). Kept between runs when its size and
    /// allocated blocks are already right.
    func prepareBackingFile() throws {
        let bytes = storageFileMiB << 20
        var st = stat()
        if stat(storageFile, &st) == 0 && Int(st.st_size) == bytes && Int(st.st_blocks) * 512 >= bytes { return }
        note("storage: writing the backing file \(storageFile) (\(storageFileMiB) MiB)")
        let fd = open(storageFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BenchError("cannot create \(storageFile): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var chunk = [UInt64](repeating: 0, count: (1 << 20) / 8)
        var g = SplitMix64(seed: 0x5EED)
        for c in 0..<storageFileMiB {
            for k in chunk.indices { chunk[k] = g.next() }
            let n = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, off_t(c << 20)) }
            guard n == 1 << 20 else { throw BenchError("writing \(storageFile): \(String(cString: strerror(errno)))") }
        }
        guard fsync(fd) == 0 else { throw BenchError("fsync \(storageFile): \(String(cString: strerror(errno)))") }
    }

    /// Writes back and drops the backing file's cached pages, so that each side starts cold.
    func dropBackingFileCache() {
        let fd = open(storageFile, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fdatasync(fd)
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        close(fd)
    }

    /// The fio job every side runs, with its engine's own arguments after it.
    func fioArguments(output: String) -> [String] {
        ["fio", "--name=plexus-bench-storage", "--rw=\(pattern)", "--bs=\(blockSize)", "--iodepth=\(queueDepth)",
         "--size=\(storageFileMiB << 20)", "--time_based", "--runtime=\(max(1, Int((seconds * 1000).rounded())))ms",
         "--numjobs=1", "--output-format=json", "--output=\(output)"]
    }

    /// Runs fio with `engine`'s arguments; the figures of the pattern's direction.
    func fio(_ engine: [String]) throws -> FioRun {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-bench-fio-\(getpid()).json").path
        defer { unlink(output) }
        let args = fioArguments(output: output) + engine
        let r = NamespaceFabric.execute(args)
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        guard r.status == 0 else {
            throw BenchError("`\(args.joined(separator: " "))` failed (\(r.status)): \(r.output.suffix(400)) \(text.suffix(400))")
        }
        // fio may print notices before its JSON.
        guard let json = try? JSONSerialization.jsonObject(with: Data(text.utf8.drop { $0 != UInt8(ascii: "{") })) as? [String: Any],
              let job = (json["jobs"] as? [[String: Any]])?.first,
              let side = job[storagePattern.reads ? "read" : "write"] as? [String: Any]
        else { throw BenchError("fio's output is not the JSON expected: \(text.prefix(400))") }
        if let error = job["error"] as? Int, error != 0 { throw BenchError("fio reports error \(error): \(r.output.suffix(400))") }
        let clat = side["clat_ns"] as? [String: Any]
        let percentiles = clat?["percentile"] as? [String: Any] ?? [:]
        func us(_ key: String) -> Double { ((percentiles[key] as? NSNumber)?.doubleValue ?? 0) / 1000 }
        return FioRun(iops: (side["iops"] as? NSNumber)?.doubleValue ?? 0,
                      bytesPerSecond: (side["bw_bytes"] as? NSNumber)?.doubleValue ?? 0,
                      p50us: us("50.000000"), p99us: us("99.000000"),
                      ios: (side["total_ios"] as? NSNumber)?.uint64Value ?? 0)
    }

    /// fio through NBD into the processor's disk.
    func plexusStorageRun(socket: String) throws -> FioRun {
        let bed = try StorageBed(file: storageFile, bytes: storageFileMiB << 20, socket: socket, direct: direct,
                                 depth: laneDepth, slotSize: slotKiB << 10)
        defer { bed.stop() }
        let before = try bed.counters()
        var run = try fio(["--ioengine=nbd", "--uri=nbd+unix:///?socket=\(socket)"])
        let after = try bed.counters()
        run.commands = after.submitted - before.submitted
        run.failed = after.failed - before.failed
        if after.reissued > before.reissued { note("  plexus: \(after.reissued - before.reissued) commands re-issued") }
        return run
    }

    /// fio through NBD into nbdkit's file plugin on the same file.
    func nbdkitRun(socket: String) throws -> FioRun {
        unlink(socket)
        let server = try BackgroundProcess(["nbdkit", "--unix", socket, "--foreground", "--exit-with-parent", "file",
                                            "file=\(storageFile)"] + (direct ? ["cache=none"] : []))
        defer {
            server.kill()
            unlink(socket)
        }
        guard waitUntil(seconds: 10, { NBDServer.answers(at: socket) }) else {
            throw BenchError("nbdkit did not listen on \(socket)")
        }
        return try fio(["--ioengine=nbd", "--uri=nbd+unix:///?socket=\(socket)"])
    }

    /// fio on the file itself.
    func limitRun() throws -> FioRun {
        try fio(["--ioengine=io_uring", "--direct=\(direct ? 1 : 0)", "--filename=\(storageFile)"])
    }

    func storageScenario() throws -> StorageResult {
        let p = storagePattern
        note("storage: fio \(pattern) bs \(blockSize) qd \(queueDepth) for \(seconds) s per side on \(storageFile) "
             + "(\(storageFileMiB) MiB, \(direct ? "O_DIRECT" : "page cache")), \(rounds) interleaved rounds")
        for tool in ["fio", "nbdkit"] where NamespaceFabric.execute(["which", tool]).status != 0 {
            throw BenchError("storage needs \(tool) installed")
        }
        try prepareBackingFile()
        let socket = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-bench-storage-\(getpid()).sock").path
        var all: [StorageSide: [FioRun]] = [:]
        let sides = StorageSide.allCases
        for round in 0..<rounds {
            for k in 0..<sides.count {
                let side = sides[(k + round) % sides.count]
                dropBackingFileCache()
                let r: FioRun = switch side {
                case .plexus: try plexusStorageRun(socket: socket)
                case .nbdkit: try nbdkitRun(socket: socket)
                case .limit: try limitRun()
                }
                note(String(format: "  round %d %-7@ %8.0f IOPS  %8.1f MB/s  p50 %7.1f µs  p99 %8.1f µs", round + 1,
                            side.rawValue as NSString, r.iops, r.bytesPerSecond / 1e6, r.p50us, r.p99us))
                all[side, default: []].append(r)
            }
        }
        func figures(_ side: StorageSide, _ method: String) -> StorageFigures {
            let runs = all[side]!
            let m = runs.sorted { $0.iops < $1.iops }[runs.count / 2]
            return StorageFigures(iops: m.iops, mbytesPerSecond: m.bytesPerSecond / 1e6, p50: m.p50us, p99: m.p99us, ios: m.ios,
                                  runsIOPS: runs.map(\.iops), method: method, scsiCommands: m.commands, failed: m.failed)
        }
        let plexus = figures(.plexus, "fio nbd engine → NBD (Unix socket) → processing node → RVIs on both fabrics → two control nodes' storage targets → the file")
        let nbdkit = figures(.nbdkit, "fio nbd engine → nbdkit file plugin (Unix socket)" + (direct ? ", cache=none" : "") + " → the file")
        let limit = figures(.limit, "fio io_uring" + (direct ? ", O_DIRECT," : "") + " on the file, no NBD")
        let ratio = plexus.iops / nbdkit.iops
        let target: Double? = switch (p, blockSize) {
        case (.randread, 4096) where queueDepth == 32: 0.6
        case (.read, 1 << 20), (.write, 1 << 20): 0.7
        default: nil
        }
        say(String(format: "storage %@ bs %d qd %d: plexus %.0f IOPS %.1f MB/s p50 %.1f µs p99 %.1f µs; nbdkit %.0f IOPS %.1f MB/s p50 %.1f µs; "
                     + "io_uring on the file %.0f IOPS %.1f MB/s; ratio %.3f%@", pattern as NSString, blockSize, queueDepth,
                     plexus.iops, plexus.mbytesPerSecond, plexus.p50, plexus.p99, nbdkit.iops, nbdkit.mbytesPerSecond, nbdkit.p50,
                     limit.iops, limit.mbytesPerSecond, ratio, (target.map { String(format: " (target ≥ %.1f)", $0) } ?? "") as NSString))
        return StorageResult(
            plexus: plexus, baseline: nbdkit, limit: limit, ratio: ratio, ratioToLimit: plexus.iops / limit.iops, target: target,
            note: "the same fio job (\(pattern), bs \(blockSize), iodepth \(queueDepth), \(seconds) s) on each side, interleaved over the rounds, the file's cached pages dropped before each; "
                + "ratio is Plexus IOPS ÷ nbdkit IOPS; ratio_to_limit is Plexus IOPS ÷ io_uring on the file; latencies are fio's completion latency (clat) percentiles; "
                + "exporter \(StorageBed.lanes) lanes × \(laneDepth) slots of \(slotKiB) KiB, targets \(max(StorageBed.targetSlots, laneDepth)) slots of \(StorageBed.targetSlotSize(slotKiB << 10) >> 10) KiB, "
                + "backing file opened \(direct ? "with O_DIRECT" : "through the page cache")")
    }
}
