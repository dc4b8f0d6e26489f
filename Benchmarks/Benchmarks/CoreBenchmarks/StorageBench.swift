// Allocation benchmarks of the storage pieces (PlexusStorage): the storage messages' encoding
// and decoding, a SCSI logical unit's READ and WRITE against a file, and an NBD connection's
// requests end to end (a client on this thread, the server's connection thread, a file). One
// iteration is 1000 operations; every threshold is 0, and each measured iteration is checked on
// its own (`measure`), so an allocation once in a while fails the run too.

import Benchmark
import PlexusCore
import PlexusStorage

#if canImport(Glibc)
import Glibc
#endif

func storageBenchmarks() {
    // MARK: Storage messages

    let command = StorageMessage.command(StorageCommand(
        sequence: 1, target: 0, lun: 1, direction: .dataIn, cdb: .read16(lba: 1 << 33, blocks: 64, fua: false),
        segments: SegmentList((0..<4).map { Segment(key: RegionKey(rawValue: 0x1234_5001), offset: UInt64($0) << 13, length: 8192) })!))
    let status = StorageMessage.status(StorageStatus(sequence: 1, target: 0, lun: 1, scsiStatus: 2, residual: 512,
                                                     sense: SenseData.lbaOutOfRange.fixedBytes))

    Benchmark("StorageMessageEncode") { benchmark in
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: StorageLimits.maxMessageSize, alignment: 64)
        defer { buffer.deallocate() }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            do throws(StorageMessageError) {
                blackHole(try command.encode(into: buffer))
                blackHole(try status.encode(into: buffer))
            } catch {
                report("StorageMessageEncode: \(error)\n")
                fatalError("StorageMessageEncode: \(error)")
            }
        }
        benchmark.stopMeasurement()
    }

    Benchmark("StorageMessageDecode") { benchmark in
        let commandBytes = try! command.encoded(), statusBytes = try! status.encoded()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            commandBytes.withUnsafeBytes { raw in
                guard case .command(let c)? = try? StorageMessage(decoding: raw.bytes) else { fatalError("CMD refused") }
                blackHole(c.segments.count)
            }
            statusBytes.withUnsafeBytes { raw in
                guard case .status(let s)? = try? StorageMessage(decoding: raw.bytes) else { fatalError("STAT refused") }
                blackHole(s.sense.count)
            }
        }
        benchmark.stopMeasurement()
    }

    // MARK: A logical unit over a file

    storageBedBenchmark("SCSIWriteRead_4K", unit: "commands") { try UnitBench() }

    // MARK: An NBD connection

    storageBedBenchmark("NBDWriteRead_4K", unit: "requests") { try NBDBench() }
    storageBedBenchmark("DiskExportWriteRead_4K", unit: "requests") { try diskExportBench() }
}

/// A bed (built in setup, 200 warm-up operations, stopped in teardown) whose `run(count)` does
/// `count` operations; each measured iteration is checked for allocations (none allowed).
protocol StorageBed: AnyObject {
    func run(_ count: Int)
    func stop()
}

func storageBedBenchmark(_ name: String, unit: String, _ make: @escaping () throws -> StorageBed) {
    let bed = SetupSlot<StorageBed>()
    Benchmark(
        name,
        configuration: .init(
            warmupIterations: 5,
            maxDuration: .seconds(5),
            maxIterations: 50,
            setup: {
                do { bed.value = try make() } catch { fatalError("\(name): \(error)") }
                bed.value!.run(200)
            },
            teardown: {
                bed.value?.stop()
                bed.value = nil
            })
    ) { benchmark in
        guard let b = bed.value else { fatalError("\(name): not set up") }
        measure(benchmark, name, allowed: 0, unit: unit, deliver: b.run, fail: { fatalError($0) })
    }
}

/// A temporary directory holding a 4 MiB file.
func benchImage() -> (dir: String, file: String) {
    var template = Array("/tmp/plexus-storage-bench-XXXXXX".utf8CString)
    let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    let file = dir + "/disk.img"
    let fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0o644)
    ftruncate(fd, 4 << 20)
    close(fd)
    return (dir, file)
}

func removeBenchImage(_ dir: String) {
    unlink(dir + "/disk.img")
    unlink(dir + "/nbd.sock")
    rmdir(dir)
}

/// WRITE(10) then READ(10) of 8 blocks (4 KiB), moving through the file.
final class UnitBench: StorageBed {
    let dir: String
    let unit: SCSILogicalUnit
    let pool: IOBufferPool
    var buffer: IOBuffer?
    var lba: UInt32 = 0

    init() throws {
        let image = benchImage()
        dir = image.dir
        unit = SCSILogicalUnit(device: try SynchronousFileBlockDevice(path: image.file),
                               identity: LogicalUnitIdentity(serial: "BENCH", identifier: 1))
        pool = try IOBufferPool(slots: 1, slotSize: 4096)
        buffer = pool.take()
    }

    func run(_ count: Int) {
        for _ in 0..<count {
            let w = unit.execute(.write10(lba: lba, blocks: 8), buffer: &buffer, transferLength: 4096)
            let r = unit.execute(.read10(lba: lba, blocks: 8), buffer: &buffer, transferLength: 4096)
            guard w.status == .good, r.dataLength == 4096 else { fatalError("SCSIWriteRead_4K: \(w) \(r)") }
            lba = (lba + 8) % 8192
        }
    }

    func stop() { removeBenchImage(dir) }
}

/// An NBD client on this thread: NBD_CMD_WRITE then NBD_CMD_READ of 4 KiB, moving through the
/// export, each answered before the next is sent. The handshake (in setup) may allocate; the
/// requests use memory allocated once.
final class NBDBench: StorageBed {
    let fd: Int32
    let io = UnsafeMutableRawBufferPointer.allocate(byteCount: 28 + 4096, alignment: 64)
    var offset: UInt64 = 0
    /// Stops what serves the socket (after the client has closed).
    let stopServer: () -> Void

    /// A client of the file `NBDServer` over a 4 MiB image.
    convenience init() throws {
        let image = benchImage()
        let server = NBDServer(socketPath: image.dir + "/nbd.sock", exports: [try .file(path: image.file)], maxPayload: 1 << 20)
        try server.start()
        self.init(socket: image.dir + "/nbd.sock") {
            server.stop()
            removeBenchImage(image.dir)
        }
    }

    /// A client of the export at `socket` (the default export, at least 4 MiB).
    init(socket path: String, stopServer: @escaping () -> Void) {
        self.stopServer = stopServer
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
        guard ok else { fatalError("NBDWriteRead_4K: cannot connect") }
        // Greeting (18 bytes), client flags, NBD_OPT_GO for "" with no information requests.
        receive(18)
        var hello: [UInt8] = [0, 0, 0, 3]
        hello += Array("IHAVEOPT".utf8) + [0, 0, 0, 7, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0]
        hello.withUnsafeBytes { send($0) }
        // Option replies until NBD_REP_ACK.
        while true {
            receive(20)
            let type = UInt32(bigEndian: io.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
            let length = Int(UInt32(bigEndian: io.loadUnaligned(fromByteOffset: 16, as: UInt32.self)))
            if length > 0 { receive(length) }
            if type == 1 { break }
            guard type == 3 else { fatalError("NBDWriteRead_4K: option refused (\(type))") }
        }
    }

    func send(_ bytes: UnsafeRawBufferPointer) {
        var done = 0
        while done < bytes.count {
            let r = Glibc.send(fd, bytes.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL))
            guard r > 0 else { fatalError("NBDWriteRead_4K: send failed") }
            done += r
        }
    }

    func receive(_ n: Int) {
        var done = 0
        while done < n {
            let r = recv(fd, io.baseAddress! + done, n - done, 0)
            guard r > 0 else { fatalError("NBDWriteRead_4K: the server closed") }
            done += r
        }
    }

    func request(_ type: UInt16, dataOut: Bool) {
        io.storeBytes(of: NBDProtocol.requestMagic.bigEndian, toByteOffset: 0, as: UInt32.self)
        io.storeBytes(of: UInt16(0), toByteOffset: 4, as: UInt16.self)
        io.storeBytes(of: type.bigEndian, toByteOffset: 6, as: UInt16.self)
        io.storeBytes(of: offset.bigEndian, toByteOffset: 8, as: UInt64.self)
        io.storeBytes(of: offset.bigEndian, toByteOffset: 16, as: UInt64.self)
        io.storeBytes(of: UInt32(4096).bigEndian, toByteOffset: 24, as: UInt32.self)
        send(UnsafeRawBufferPointer(rebasing: io[0..<(dataOut ? 28 + 4096 : 28)]))
        receive(16)
        guard io.loadUnaligned(fromByteOffset: 4, as: UInt32.self) == 0 else { fatalError("NBDWriteRead_4K: error reply") }
    }

    func run(_ count: Int) {
        for _ in 0..<count {
            request(NBDProtocol.cmdWrite, dataOut: true)
            request(NBDProtocol.cmdRead, dataOut: false)
            receive(4096)
            offset = (offset + 4096) % (4 << 20)
        }
    }

    func stop() {
        close(fd)
        stopServer()
        io.deallocate()
    }
}
