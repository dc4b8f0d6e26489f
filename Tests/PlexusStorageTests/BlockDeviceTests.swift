import PlexusStorage
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Block devices and I/O buffers")
struct BlockDeviceTests {
    @Test("an I/O buffer pool hands out page-aligned slots and gets each back when its buffer is dropped")
    func pool() throws {
        let pool = try IOBufferPool(slots: 2, slotSize: 1000)
        #expect(pool.slotSize == 4096 && pool.available == 2)
        var a = pool.take()!
        let b = pool.take()!
        let exhausted = pool.take() == nil
        #expect(exhausted && pool.available == 0)
        a.fill([1, 2, 3])
        let first = a.prefix(3)
        #expect(first == [1, 2, 3])
        let aligned = a.withUnsafeBytes { Int(bitPattern: $0.baseAddress!) % 4096 == 0 }
        #expect(aligned)
        _ = consume a
        #expect(pool.available == 1)
        _ = consume b
        #expect(pool.available == 2)
    }

    @Test("a file device reads, writes (with and without FUA), flushes and punches holes; completions carry tags and buffers back")
    func fileDevice() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("disk.img")
        writePatternFile(path, size: 64 * 1024 + 100)
        let device = try SynchronousFileBlockDevice(path: path, blockSize: 512, queueDepth: 4)
        #expect(device.geometry.blockCount == 128 && device.geometry.byteCount == 65536, "the partial block is left out")
        let pool = try IOBufferPool(slots: 2, slotSize: 8192)

        var read = device.perform(BlockRequest(.read, offset: 1000, length: 3000, buffer: pool.take(), bufferOffset: 10, tag: 7))
        let (tag, result) = (read.tag, read.result)
        #expect(tag == 7 && result == .success(3000))
        var readBuffer = read.takeBuffer()!
        let got = readBuffer.withUnsafeBytes { Array($0[10..<3010]) }
        #expect(got == (1000..<4000).map { pattern($0) })

        readBuffer.fill([UInt8](repeating: 0xAB, count: 4096))
        let wrote = device.perform(BlockRequest(.write(fua: false), offset: 4096, length: 4096, buffer: readBuffer, tag: 8)).result
        #expect(wrote == .success(4096))
        #expect(fileBytes(path, 4096..<8192) == [UInt8](repeating: 0xAB, count: 4096))
        var buffer = pool.take()!
        buffer.fill([UInt8](repeating: 0xCD, count: 512))
        let fua = device.perform(BlockRequest(.write(fua: true), offset: 0, length: 512, buffer: buffer, tag: 9)).result
        #expect(fua == .success(512))
        #expect(fileBytes(path, 0..<512) == [UInt8](repeating: 0xCD, count: 512))
        #expect(device.perform(BlockRequest(.flush, tag: 10)).result == .success(0))

        // Several in flight, reaped together in submission order.
        for t in 0..<3 { device.submit(BlockRequest(.flush, tag: UInt64(100 + t))) }
        #expect(device.inFlight == 3)
        var tags: [UInt64] = []
        #expect(device.reap(waiting: false) { (c: consuming BlockCompletion) in tags.append(c.tag) } == 3)
        #expect(tags == [100, 101, 102] && device.inFlight == 0)

        // A punched hole reads back as zeroes and gives the blocks back to the file system.
        let big = dir.file("sparse.img")
        writePatternFile(big, size: 1 << 20)
        let sparse = try SynchronousFileBlockDevice(path: big)
        let before = allocatedBlocks(big)
        #expect(sparse.perform(BlockRequest(.unmap, offset: 65536, length: 512 * 1024)).result == .success(512 * 1024))
        #expect(fileBytes(big, 65536..<(65536 + 512 * 1024)).allSatisfy { $0 == 0 })
        #expect(fileBytes(big, 0..<65536) == (0..<65536).map { pattern($0) })
        #expect(allocatedBlocks(big) <= before - 1024, "the hole is deallocated")
    }

    @Test("a file device refuses what its geometry forbids, as completions, without touching the file")
    func refusals() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("disk.img")
        writePatternFile(path, size: 4096)
        let device = try SynchronousFileBlockDevice(path: path)
        let readOnly = try SynchronousFileBlockDevice(path: path, readOnly: true)
        #expect(readOnly.geometry.readOnly && !readOnly.geometry.canUnmap)
        let pool = try IOBufferPool(slots: 1, slotSize: 4096)
        #expect(device.perform(BlockRequest(.read, offset: 4000, length: 200, buffer: pool.take())).result == .failure(.outOfRange))
        #expect(device.perform(BlockRequest(.read, offset: .max, length: 1, buffer: pool.take())).result == .failure(.outOfRange))
        #expect(device.perform(BlockRequest(.read, offset: 0, length: 512)).result == .failure(.bufferTooSmall))
        #expect(device.perform(BlockRequest(.read, offset: 0, length: 512, buffer: pool.take(), bufferOffset: 3600)).result
                == .failure(.bufferTooSmall))
        #expect(readOnly.perform(BlockRequest(.write(fua: false), offset: 0, length: 512, buffer: pool.take())).result
                == .failure(.readOnly))
        #expect(readOnly.perform(BlockRequest(.unmap, offset: 0, length: 512)).result == .failure(.readOnly))
        #expect(readOnly.perform(BlockRequest(.flush)).result == .success(0))
        #expect(fileBytes(path, 0..<4096) == (0..<4096).map { pattern($0) })

        #expect(throws: BlockIOError.io(ENOENT)) { try SynchronousFileBlockDevice(path: dir.file("missing")) }
        #expect(throws: BlockIOError.unsupported, "not a regular file") { try SynchronousFileBlockDevice(path: "/dev/null") }
        writePatternFile(dir.file("tiny"), size: 511)
        #expect(throws: BlockIOError.outOfRange) { try SynchronousFileBlockDevice(path: dir.file("tiny")) }
    }
}
