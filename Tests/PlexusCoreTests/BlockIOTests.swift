import CPlexus
import Foundation
import PlexusCore
import PlexusTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Block I/O on the engine's ring: backing files and block devices read and written into the
/// engine's registered memory, completing on the engine thread.
@Suite("Block I/O on the engine ring")
struct BlockIOTests {}

extension BlockIOTests {
    /// The checks and the short-transfer arithmetic, without an engine.
    @Suite("Block I/O: request checks and short transfers")
    struct Plan {
        @Test("a request must lie within the file and, for direct I/O, be aligned")
        func refusals() {
            func refusal(_ offset: UInt64, _ length: Int, size: UInt64 = 1 << 20, align: Int = 512,
                         address: UInt = 4096, memory: Int = 512) -> BlockIORefusal? {
                BlockIOPlan.refusal(fileOffset: offset, length: length, fileSize: size, offsetAlignment: align,
                                    memoryAddress: address, memoryAlignment: memory)
            }
            #expect(refusal(0, 4096) == nil)
            #expect(refusal((1 << 20) - 512, 512) == nil)
            #expect(refusal((1 << 20) - 512, 1024) == .outOfRange)
            #expect(refusal(1 << 20, 512) == .outOfRange)
            #expect(refusal(UInt64.max - 100, 512, size: .max) == .outOfRange)
            #expect(refusal(0, 0) == .badLength)
            #expect(refusal(0, -1) == .badLength)
            #expect(refusal(0, Engine.maxBlockIOLength + 1, size: .max) == .badLength)
            #expect(refusal(100, 512) == .misaligned)
            #expect(refusal(0, 100) == .misaligned)
            #expect(refusal(0, 512, address: 4096 + 64) == .misaligned)
            // Buffered: any offset, length and address.
            #expect(refusal(100, 100, align: 1, address: 4097, memory: 1) == nil)
        }

        @Test("a short read or write is continued; the end of the file, an error or a stop ends it")
        func steps() {
            typealias S = BlockIOPlan.Step
            #expect(BlockIOPlan.step(done: 0, length: 8192, res: 8192, stopping: false) == S.complete(result: 8192))
            #expect(BlockIOPlan.step(done: 0, length: 8192, res: 4096, stopping: false) == S.resubmit(done: 4096))
            #expect(BlockIOPlan.step(done: 4096, length: 8192, res: 4096, stopping: false) == S.complete(result: 8192))
            #expect(BlockIOPlan.step(done: 4096, length: 8192, res: 0, stopping: false) == S.complete(result: 4096))
            #expect(BlockIOPlan.step(done: 0, length: 8192, res: 0, stopping: false) == S.complete(result: 0))
            #expect(BlockIOPlan.step(done: 4096, length: 8192, res: -EIO, stopping: false) == S.complete(result: -EIO))
            #expect(BlockIOPlan.step(done: 0, length: 8192, res: 4096, stopping: true) == S.complete(result: -ECANCELED))
            #expect(BlockIOPlan.step(done: 0, length: 8192, res: 8192, stopping: true) == S.complete(result: 8192))
        }
    }

    @Suite("Block I/O: files", .requiresIOUring)
    struct Files {
        /// Where the test files go: /tmp (ext4 here: direct I/O) and /dev/shm (tmpfs: buffered).
        static let places = ["/tmp", "/dev/shm"]

        @Test("a pattern written through the engine reads back the same, plainly and written through",
              arguments: places)
        func writeAndReadBack(parent: String) throws {
            let dir = try ScratchDirectory(under: parent)
            defer { dir.remove() }
            let path = try dir.file("disk", size: 1 << 20)
            let bed = try BlockBed()
            defer { bed.thread.stopAndWait() }
            let file = try bed.open(path)
            let source = try bed.region(256 << 10)
            let target = try bed.region(256 << 10)
            let a = pattern(1, size: 64 << 10), b = pattern(2, size: 64 << 10)
            try bed.fill(source, at: 0, with: a)
            try bed.fill(source, at: 128 << 10, with: b)
            #expect(try bed.refusal { try $0.write(file, at: 4096, length: a.count, from: source, token: 1) } == nil)
            #expect(try bed.refusal {
                try $0.write(file, at: 512 << 10, length: b.count, from: source, regionOffset: 128 << 10,
                             writeThrough: true, token: 2)
            } == nil)
            #expect(bed.completion(1)?.result == Int32(a.count))
            #expect(bed.completion(2)?.result == Int32(b.count))
            #expect(fileBytes(path, at: 4096, count: a.count) == a)
            #expect(fileBytes(path, at: 512 << 10, count: b.count) == b)

            try bed.thread.runAndWait { e in
                try e.read(file, at: 4096, length: a.count, into: target, regionOffset: 8192, token: 3)
                try e.read(file, at: 512 << 10, length: b.count, into: target, regionOffset: 128 << 10, token: 4)
            }
            #expect(bed.completion(3)?.result == Int32(a.count))
            #expect(bed.completion(4)?.result == Int32(b.count))
            #expect(try bed.bytes(target, at: 8192, count: a.count) == a)
            #expect(try bed.bytes(target, at: 128 << 10, count: b.count) == b)
            let c = try bed.counters
            #expect(c.reads == 2 && c.writes == 2 && c.errors == 0 && c.inFlight == 0)
            #expect(c.bytesRead == UInt64(a.count + b.count) && c.bytesWritten == UInt64(a.count + b.count))
        }

        @Test("O_DIRECT where the file system does direct I/O, buffered on tmpfs or when asked")
        func directOrBuffered() throws {
            let disk = try ScratchDirectory(under: "/tmp")
            defer { disk.remove() }
            let shm = try ScratchDirectory(under: "/dev/shm")
            defer { shm.remove() }
            let bed = try BlockBed()
            defer { bed.thread.stopAndWait() }

            let onDisk = try bed.open(try disk.file("disk", size: 1 << 20))
            #expect(onDisk.kind == .regularFile && onDisk.size == 1 << 20)
            if directIOFileSystems.contains(fileSystemType(disk.path)) {
                #expect(onDisk.isDirect, "\(onDisk)")
                #expect(onDisk.bufferedBecause == nil)
                #expect(onDisk.offsetAlignment >= 512 && onDisk.memoryAlignment >= 1)
                #expect(onDisk.logicalBlockSize == onDisk.offsetAlignment)
            }
            let onTmpfs = try bed.open(try shm.file("disk", size: 1 << 20))
            #expect(!onTmpfs.isDirect)
            #expect(onTmpfs.bufferedBecause?.contains("tmpfs") == true, "\(onTmpfs.bufferedBecause ?? "nil")")
            #expect(onTmpfs.offsetAlignment == 1 && onTmpfs.memoryAlignment == 1 && onTmpfs.logicalBlockSize == 512)
            let asked = try bed.open(try disk.file("buffered", size: 4096), direct: false)
            #expect(!asked.isDirect && asked.bufferedBecause == nil && asked.offsetAlignment == 1)

            #expect(throws: PlexusError.self) { try bed.open(disk.path) }  // a directory
            #expect(throws: PlexusError.self) { try bed.open("\(disk.path)/missing") }
        }

        @Test("pool frames: written and read back on a buffered file, refused as misaligned for O_DIRECT")
        func frames() throws {
            let dir = try ScratchDirectory(under: "/tmp")
            defer { dir.remove() }
            let bed = try BlockBed()
            defer { bed.thread.stopAndWait() }
            let buffered = try bed.open(try dir.file("buffered", size: 1 << 20), direct: false)
            let bytes = pattern(3, size: 5000)
            let refused = try bed.thread.runAndWait { e -> [BlockIORefusal?] in
                guard var filled = e.takeFrame() else { return [.noFrame] }
                filled.setPayload(bytes)
                var frame: Frame? = consume filled
                var errors: [BlockIORefusal?] = []
                do throws(BlockIORefusal) { try e.write(buffered, at: 777, from: &frame, token: 10) } catch { errors.append(error) }
                errors.append(frame == nil ? nil : BlockIORefusal.noFrame)  // taken on success
                do throws(BlockIORefusal) { try e.write(buffered, at: 0, from: &frame, token: 11) } catch { errors.append(error) }
                return errors
            }
            #expect(refused == [nil, .noFrame])
            #expect(bed.completion(10)?.result == 5000)
            #expect(bed.completion(10)?.frame == bytes)  // a write hands its frame back unchanged
            #expect(fileBytes(buffered.path, at: 777, count: 5000) == bytes)
            try bed.thread.runAndWait { e in
                var frame = e.takeFrame()
                try e.read(buffered, at: 777, length: 5000, into: &frame, token: 12)
            }
            #expect(bed.completion(12)?.result == 5000)
            #expect(bed.completion(12)?.frame == bytes)

            let direct = try bed.open(try dir.file("direct", size: 1 << 20))
            guard direct.isDirect && direct.memoryAlignment > 64 else { return }
            let (error, kept, outstanding) = try bed.thread.runAndWait { e -> (BlockIORefusal?, Bool, Int) in
                guard var sized = e.takeFrame() else { return (.noFrame, false, -1) }
                sized.length = 4096
                var frame: Frame? = consume sized
                var error: BlockIORefusal? = nil
                do throws(BlockIORefusal) { try e.write(direct, at: 0, from: &frame, token: 13) } catch let thrown { error = thrown }
                return (error, frame != nil, e.outstanding.frames)
            }
            #expect(error == .misaligned && kept && outstanding == 1)  // the one frame, still the caller's
        }

        @Test("fdatasync completes; a punched hole reads back as zeros and the file keeps its size")
        func flushAndDiscard() throws {
            let dir = try ScratchDirectory(under: "/tmp")
            defer { dir.remove() }
            let path = try dir.file("disk", size: 1 << 20)
            let bed = try BlockBed()
            defer { bed.thread.stopAndWait() }
            let file = try bed.open(path)
            let region = try bed.region(64 << 10)
            let bytes = pattern(4, size: 3 * 4096)
            try bed.fill(region, at: 0, with: bytes)
            try bed.thread.runAndWait { try $0.write(file, at: 65536, length: bytes.count, from: region, token: 1) }
            #expect(bed.completion(1)?.result == Int32(bytes.count))
            try bed.thread.runAndWait { try $0.flush(file, token: 2) }
            #expect(bed.completion(2)?.result == 0)
            try bed.thread.runAndWait { try $0.discard(file, at: 65536 + 4096, length: 4096, token: 3) }
            #expect(bed.completion(3)?.result == 0)
            try bed.thread.runAndWait { try $0.read(file, at: 65536, length: bytes.count, into: region, regionOffset: 16384, token: 4) }
            #expect(bed.completion(4)?.result == Int32(bytes.count))
            let back = try bed.bytes(region, at: 16384, count: bytes.count)
            #expect(back[0..<4096] == bytes[0..<4096])
            #expect(back[4096..<8192].allSatisfy { $0 == 0 })
            #expect(back[8192...] == bytes[8192...])
            var st = stat()
            #expect(stat(path, &st) == 0 && st.st_size == 1 << 20)
            let c = try bed.counters
            #expect(c.flushes == 1 && c.discards == 1 && c.errors == 0)
        }

        @Test("bad requests are refused with a clear error, and nothing is queued")
        func refusals() throws {
            let dir = try ScratchDirectory(under: "/tmp")
            defer { dir.remove() }
            let path = try dir.file("disk", size: 1 << 20)
            let bed = try BlockBed()
            defer { bed.thread.stopAndWait() }
            let file = try bed.open(path)
            let readOnly = try bed.open(path, access: .readOnly)
            let region = try bed.region(64 << 10)
            #expect(try bed.refusal { try $0.read(file, at: 1 << 20, length: 4096, into: region, token: 1) } == .outOfRange)
            #expect(try bed.refusal { try $0.write(file, at: (1 << 20) - 4096, length: 8192, from: region, token: 1) } == .outOfRange)
            #expect(try bed.refusal { try $0.discard(file, at: 1 << 20, length: 1, token: 1) } == .outOfRange)
            #expect(try bed.refusal { try $0.read(file, at: 0, length: 0, into: region, token: 1) } == .badLength)
            #expect(try bed.refusal { try $0.read(file, at: 0, length: -4096, into: region, token: 1) } == .badLength)
            #expect(try bed.refusal { try $0.read(file, at: 0, length: 8192, into: region, regionOffset: 60 << 10, token: 1) } == .outsideMemory)
            #expect(try bed.refusal { try $0.read(file, at: 0, length: 4096, into: RegionKey(rawValue: 0xFFFF_F000), token: 1) } == .noSuchRegion)
            #expect(try bed.refusal { try $0.write(readOnly, at: 0, length: 4096, from: region, token: 1) } == .readOnly)
            #expect(try bed.refusal { try $0.discard(readOnly, at: 0, length: 4096, token: 1) } == .readOnly)
            if file.isDirect {
                #expect(try bed.refusal { try $0.read(file, at: 100, length: 4096, into: region, token: 1) } == .misaligned)
                #expect(try bed.refusal { try $0.read(file, at: 0, length: 100, into: region, token: 1) } == .misaligned)
                if file.memoryAlignment > 1 {
                    #expect(try bed.refusal { try $0.read(file, at: 0, length: 4096, into: region, regionOffset: 1, token: 1) } == .misaligned)
                }
            }
            try bed.thread.runAndWait { $0.closeBlockFile(readOnly) }
            #expect(try bed.refusal { try $0.read(readOnly, at: 0, length: 4096, into: region, token: 1) } == .noSuchFile)
            #expect(try bed.refusal { try $0.flush(readOnly, token: 1) } == .noSuchFile)
            // A read-only file still reads.
            let other = try bed.open(path, access: .readOnly)
            try bed.thread.runAndWait { try $0.read(other, at: 0, length: 4096, into: region, token: 2) }
            #expect(bed.completion(2)?.result == 4096)
            #expect(bed.seen.completions.withLock { $0.count } == 1)
            #expect(try bed.counters.inFlight == 0)
        }

        @Test("a read across a file's end (the file shrank after it was opened) completes short")
        func shortReadAtEnd() throws {
            let dir = try ScratchDirectory(under: "/tmp")
            defer { dir.remove() }
            let path = try dir.file("disk", size: 1 << 20)
            let bed = try BlockBed()
            defer { bed.thread.stopAndWait() }
            let file = try bed.open(path)
            let region = try bed.region(64 << 10)
            #expect(truncate(path, 256 << 10) == 0)
            try bed.thread.runAndWait { try $0.read(file, at: (256 << 10) - 4096, length: 8192, into: region, token: 1) }
            #expect(bed.completion(1)?.result == 4096)
            try bed.thread.runAndWait { try $0.read(file, at: 512 << 10, length: 4096, into: region, token: 2) }
            #expect(bed.completion(2)?.result == 0)
            let c = try bed.counters
            #expect(c.shortReads == 2 && c.errors == 0)
            #expect(c.resubmissions >= 1)  // the first read's remainder went again, and met the end
        }

        @Test("the queue depth bounds operations in flight: one more is refused as busy")
        func busy() throws {
            let dir = try ScratchDirectory(under: "/tmp")
            defer { dir.remove() }
            let bed = try BlockBed(queueDepth: 4)
            defer { bed.thread.stopAndWait() }
            let file = try bed.open(try dir.file("disk", size: 1 << 20))
            let region = try bed.region(64 << 10)
            let outcomes = try bed.thread.runAndWait { e -> [BlockIORefusal?] in
                (0..<6).map { i in
                    do throws(BlockIORefusal) {
                        try e.read(file, at: UInt64(i) * 4096, length: 4096, into: region, regionOffset: i * 4096,
                                   token: UInt32(i))
                        return nil
                    } catch {
                        return error
                    }
                }
            }
            #expect(outcomes == [nil, nil, nil, nil, .busy, .busy])
            #expect(bed.waitForCompletions(4))
            #expect(try bed.refusal { try $0.flush(file, token: 9) } == nil)
            #expect(bed.completion(9)?.result == 0)
            let c = try bed.counters
            #expect(c.busy == 2 && c.reads == 4 && c.inFlight == 0)
        }

        @Test("a region with I/O in flight cannot be deregistered; a file closed with I/O in flight finishes it")
        func inUse() throws {
            let dir = try ScratchDirectory(under: "/tmp")
            defer { dir.remove() }
            let bed = try BlockBed()
            defer { bed.thread.stopAndWait() }
            let file = try bed.open(try dir.file("disk", size: 8 << 20))
            let region = try bed.region(8 << 20)
            let deregistered = try bed.thread.runAndWait { e -> String? in
                try e.read(file, at: 0, length: 8 << 20, into: region, token: 1)
                e.closeBlockFile(file)
                do throws(PlexusError) {
                    try e.deregisterRegion(region)
                    return nil
                } catch {
                    return error.code.description
                }
            }
            #expect(deregistered == "in-use")
            #expect(bed.completion(1)?.result == 8 << 20)
            try bed.thread.runAndWait { try $0.deregisterRegion(region) }
        }

        @Test("stopping with reads and writes in flight completes each and leaks nothing", arguments: PollMode.allCases)
        func stopInFlight(mode: PollMode) throws {
            let dir = try ScratchDirectory(under: "/tmp")
            defer { dir.remove() }
            let path = try dir.file("disk", size: 16 << 20)
            for round in 0..<3 {
                let bed = try BlockBed(queueDepth: 128, pollMode: mode)
                // Regions through O_DIRECT (where /tmp does it), frames through the page cache.
                let file = try bed.open(path)
                let buffered = try bed.open(path, direct: false)
                let region = try bed.region(8 << 20)
                let submitted = try bed.thread.runAndWait { e -> Int in
                    var n = 0
                    for i in 0..<64 {
                        if i % 2 == 0 {
                            try e.read(file, at: UInt64(i) << 18, length: 128 << 10, into: region,
                                       regionOffset: i << 17, token: UInt32(n))
                        } else {
                            try e.write(file, at: UInt64(i) << 18, length: 128 << 10, from: region,
                                        regionOffset: i << 17, token: UInt32(n))
                        }
                        n += 1
                    }
                    while var frame = e.takeFrame() {
                        frame.length = 16384
                        var f: Frame? = consume frame
                        try e.write(buffered, at: UInt64(n) << 16, from: &f, token: UInt32(n))
                        n += 1
                    }
                    e.stop()
                    return n
                }
                let report = bed.thread.stopAndWait()
                #expect(report.leakedFrames == 0 && report.leakedReceiveBuffers == 0, "round \(round)")
                let done = bed.seen.completions.withLock { $0 }
                #expect(done.count == submitted, "round \(round)")
                #expect(Set(done.map(\.token)).count == submitted)
                #expect(done.allSatisfy { $0.result >= 0 || $0.result == -ECANCELED || $0.result == -EINTR })
            }
        }
    }
}
