import PlexusCore
import PlexusStorage
import Testing

/// A device whose every request fails with `error`, and whose readiness a test sets: what a SAN
/// that has gone away looks like to a logical unit.
final class FailingDevice: BlockDevice {
    let geometry = BlockGeometry(blockSize: 512, blockCount: 1024, canUnmap: true)
    let queueDepth = 1
    var readiness: BlockDeviceReadiness = .ready
    var error: BlockIOError = .io(5)
    private var pendingTag: UInt64?
    private var pendingBuffer: IOBuffer?
    var inFlight: Int { pendingTag == nil ? 0 : 1 }

    func submit(_ request: consuming BlockRequest) {
        pendingTag = request.tag
        pendingBuffer = request.buffer.take()
    }

    func reap(waiting: Bool, _ body: (consuming BlockCompletion) -> Void) -> Int {
        guard let tag = pendingTag else { return 0 }
        pendingTag = nil
        body(BlockCompletion(tag: tag, result: .failure(error), buffer: pendingBuffer.take()))
        return 1
    }
}

/// A logical unit over a 1 MiB patterned file, and two 1 MiB buffers.
struct UnitBed {
    let dir = TemporaryDirectory()
    let path: String
    let unit: SCSILogicalUnit
    let pool: IOBufferPool
    static let identity = LogicalUnitIdentity(serial: "PLX0001", identifier: 0x0123_4567_89AB_CDEF)

    init(readOnly: Bool = false, limits: BlockLimits? = nil) throws {
        path = dir.file("lun.img")
        writePatternFile(path, size: 1 << 20)
        unit = SCSILogicalUnit(device: try SynchronousFileBlockDevice(path: path), identity: Self.identity, lun: 3,
                               readOnly: readOnly, limits: limits)
        pool = try IOBufferPool(slots: 2, slotSize: 1 << 20)
    }

    /// Runs `cdb` with a fresh buffer holding `data`; the result and the first `dataLength` bytes.
    func run(_ cdb: CDB, data: [UInt8] = [], transferLength: Int? = nil) -> (SCSIResult, [UInt8]) {
        var buffer = pool.take()
        if !data.isEmpty { buffer!.fill(data) }
        let r = unit.execute(cdb, buffer: &buffer, transferLength: transferLength ?? max(data.count, 4096))
        return (r, buffer!.prefix(r.dataLength))
    }
}

func expectCheck(_ r: SCSIResult, _ sense: SenseData, _ comment: Comment? = nil,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.status == .checkCondition && r.sense == sense, comment, sourceLocation: sourceLocation)
}

@Suite("SCSI logical unit over a file")
struct LogicalUnitTests {
    @Test("TEST UNIT READY, READ CAPACITY(10) and (16), REPORT LUNS")
    func basics() throws {
        let bed = try UnitBed()
        #expect(bed.run(.testUnitReady()).0 == .good())
        let (rc10, d10) = bed.run(.readCapacity10())
        #expect(rc10 == .good(8) && d10 == [0, 0, 0x07, 0xFF, 0, 0, 2, 0], "last LBA 2047, 512-byte blocks")
        let (rc16, d16) = bed.run(.readCapacity16())
        #expect(rc16 == .good(32))
        let parsedCapacity = ReadCapacityData(parsing16: d16.span.bytes)
        let cap = try #require(parsedCapacity)
        #expect(cap.blockCount == 2048 && cap.blockSize == 512 && cap.provisioningEnabled && cap.unmappedReadZero)
        let (luns, data) = bed.run(.reportLUNs(allocationLength: 64))
        #expect(luns == .good(16))
        let parsedList = ReportLUNsData(parsing: data.span.bytes)
        let list = try #require(parsedList)
        let firstLUN = list.lun(0, in: data.span.bytes)
        #expect(list.listed == 1 && firstLUN == 3)
    }

    @Test("INQUIRY: standard data, VPD pages 0x00, 0x80, 0x83, 0xB0, 0xB2, cut at the allocation length")
    func inquiry() throws {
        let bed = try UnitBed()
        let (std, data) = bed.run(.inquiry(allocationLength: 96))
        #expect(std == .good(36))
        #expect(Array(data[0..<8]) == [0, 0, 6, 0x12, 31, 0, 0, 2])
        #expect(String(decoding: data[8..<36], as: UTF8.self) == "PLEXUS  VIRTUAL DISK    0001")
        let (cut, five) = bed.run(.inquiry(allocationLength: 5))
        #expect(cut == .good(5) && five[4] == 31, "the additional length still gives the whole")
        let (small, eight) = bed.run(.inquiry(allocationLength: 96), transferLength: 8)
        #expect(small == .good(8) && eight.count == 8, "the initiator's transfer length cuts it too")

        let (p0, pages) = bed.run(.inquiry(page: 0, allocationLength: 255))
        #expect(p0 == .good(9) && Array(pages[3...]) == [5, 0x00, 0x80, 0x83, 0xB0, 0xB2])
        let (p80, serial) = bed.run(.inquiry(page: 0x80, allocationLength: 255))
        #expect(p80 == .good(11) && String(decoding: serial[4...], as: UTF8.self) == "PLX0001")
        let (p83, ident) = bed.run(.inquiry(page: 0x83, allocationLength: 255))
        #expect(p83 == .good(4 + 4 + 15 + 4 + 8))
        #expect(Array(ident[4..<8]) == [0x02, 0x01, 0, 15] && String(decoding: ident[8..<23], as: UTF8.self) == "PLEXUS  PLX0001")
        #expect(Array(ident[23..<27]) == [0x01, 0x03, 0, 8] && Array(ident[27..<35]) == [0x31, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF],
                "NAA 3 with the 60-bit identifier")
        let (pb0, limits) = bed.run(.inquiry(page: 0xB0, allocationLength: 255))
        #expect(pb0 == .good(64) && limits[3] == 0x3C)
        #expect(Array(limits[8..<12]) == [0, 1, 0, 0], "32 MiB of 512-byte blocks")
        #expect(Array(limits[24..<28]) == [0, 0, 1, 0], "256 unmap descriptors")
        let (pb2, prov) = bed.run(.inquiry(page: 0xB2, allocationLength: 255))
        #expect(pb2 == .good(8) && prov[5] == 0x84 && prov[6] == 2)
        expectCheck(bed.run(.inquiry(page: 0x89, allocationLength: 255)).0, .invalidFieldInCDB(byte: 2))

        let ro = try UnitBed(readOnly: true)
        let (_, roPages) = ro.run(.inquiry(page: 0, allocationLength: 255))
        #expect(Array(roPages[3...]) == [4, 0x00, 0x80, 0x83, 0xB0], "no provisioning page without UNMAP")
        expectCheck(ro.run(.inquiry(page: 0xB2, allocationLength: 255)).0, .invalidFieldInCDB(byte: 2))
    }

    @Test("READ(10) and READ(16) return the file's blocks; WRITE(10) and WRITE(16) with and without FUA reach it")
    func readWrite() throws {
        let bed = try UnitBed()
        let (r10, d10) = bed.run(.read10(lba: 3, blocks: 2), transferLength: 1024)
        #expect(r10 == .good(1024) && d10 == (1536..<2560).map { pattern($0) })
        let (r16, d16) = bed.run(.read16(lba: 2040, blocks: 8, fua: true), transferLength: 4096)
        #expect(r16 == .good(4096) && d16 == (2040 * 512..<2048 * 512).map { pattern($0) })

        let data = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        #expect(bed.run(.write10(lba: 10, blocks: 8), data: data).0 == .good(4096))
        #expect(fileBytes(bed.path, 5120..<9216) == data)
        #expect(bed.run(.write16(lba: 100, blocks: 1, fua: true), data: Array(data[0..<512])).0 == .good(512))
        #expect(fileBytes(bed.path, 51200..<51712) == Array(data[0..<512]))
        #expect(bed.run(.read10(lba: 0, blocks: 0)).0 == .good(), "no blocks, no data, no error")
        #expect(bed.run(.synchronizeCache10()).0 == .good())
        #expect(bed.run(.synchronizeCache16(lba: 2000, blocks: 48, immediate: true)).0 == .good())
    }

    @Test("ILLEGAL REQUEST: bad opcode, LBA out of range, too long a transfer, a buffer too small for it")
    func illegalRequests() throws {
        let bed = try UnitBed(limits: BlockLimits(maxTransferBlocks: 16, optimalTransferBlocks: 8))
        expectCheck(bed.run(CDB([0x1A, 0, 0x3F, 0, 255, 0])!).0, .invalidOperationCode, "MODE SENSE(6)")
        expectCheck(bed.run(.read10(lba: 2047, blocks: 2)).0, .lbaOutOfRange)
        expectCheck(bed.run(.read16(lba: 2048, blocks: 0)).0, .lbaOutOfRange)
        expectCheck(bed.run(.write16(lba: .max, blocks: 1), data: [UInt8](repeating: 1, count: 512)).0, .lbaOutOfRange)
        expectCheck(bed.run(.synchronizeCache10(lba: 2048, blocks: 0)).0, .lbaOutOfRange)
        expectCheck(bed.run(.read10(lba: 0, blocks: 17)).0, .invalidFieldInCDB(byte: 7), "over the block limits")
        expectCheck(bed.run(.read16(lba: 0, blocks: 17)).0, .invalidFieldInCDB(byte: 10))
        expectCheck(bed.run(.read10(lba: 0, blocks: 16), transferLength: 4096).0, .invalidFieldInCDB(byte: 7),
                    "8 KiB into an initiator's 4 KiB")
        #expect(fileBytes(bed.path, 0..<(1 << 20)) == (0..<(1 << 20)).map { pattern($0) }, "nothing was written")
    }

    @Test("a read-only mapping refuses WRITE and UNMAP with DATA PROTECT, and still reads")
    func readOnly() throws {
        let bed = try UnitBed(readOnly: true)
        expectCheck(bed.run(.write10(lba: 0, blocks: 1), data: [UInt8](repeating: 9, count: 512)).0, .writeProtected)
        expectCheck(bed.run(.unmap(parameterListLength: 24), data: [UInt8](repeating: 0, count: 24)).0, .writeProtected)
        #expect(bed.run(.read10(lba: 0, blocks: 1)).0 == .good(512))
        #expect(fileBytes(bed.path, 0..<512) == (0..<512).map { pattern($0) })
        let (cap, data) = bed.run(.readCapacity16())
        #expect(cap == .good(32) && data[14] == 0, "no provisioning on a read-only unit")
    }

    /// An UNMAP parameter list of `ranges`.
    static func unmapList(_ ranges: [(lba: UInt64, blocks: UInt32)]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 8 + 16 * ranges.count)
        _ = bytes.withUnsafeMutableBytes { raw -> Int? in
            var span = raw.mutableBytes
            return UnmapParameterList.encode(ranges, into: &span)
        }
        return bytes
    }

    @Test("UNMAP punches the listed ranges (they read back as zeroes); a bad list releases nothing")
    func unmap() throws {
        let bed = try UnitBed()
        let before = allocatedBlocks(bed.path)
        let list = Self.unmapList([(128, 256), (1024, 512)])
        #expect(bed.run(.unmap(parameterListLength: UInt16(list.count)), data: list).0 == .good(list.count))
        #expect(fileBytes(bed.path, 65536..<(65536 + 131072)).allSatisfy { $0 == 0 })
        #expect(fileBytes(bed.path, 524_288..<786_432).allSatisfy { $0 == 0 })
        #expect(fileBytes(bed.path, 0..<65536) == (0..<65536).map { pattern($0) })
        #expect(allocatedBlocks(bed.path) <= before - 768)

        let outOfRange = Self.unmapList([(0, 8), (2040, 9)])
        expectCheck(bed.run(.unmap(parameterListLength: UInt16(outOfRange.count)), data: outOfRange).0, .lbaOutOfRange)
        #expect(fileBytes(bed.path, 0..<4096) == (0..<4096).map { pattern($0) }, "the good range was not released either")
        expectCheck(bed.run(.unmap(parameterListLength: 7), data: [UInt8](repeating: 0, count: 7)).0, .parameterListLengthError)
        let tooMany = Self.unmapList((0..<257).map { (UInt64($0), UInt32(1)) })
        expectCheck(bed.run(.unmap(parameterListLength: UInt16(tooMany.count)), data: tooMany).0,
                    .invalidFieldInParameterList(byte: 2))
        let tooBig = try UnitBed(limits: BlockLimits(maxTransferBlocks: 16, optimalTransferBlocks: 8, maxUnmapBlocks: 100))
        let big = Self.unmapList([(0, 60), (100, 60)])
        expectCheck(tooBig.run(.unmap(parameterListLength: UInt16(big.count)), data: big).0,
                    .invalidFieldInParameterList(byte: 32))
        #expect(bed.run(.unmap(parameterListLength: 0)).0 == .good(), "an empty list")
    }

    @Test("REQUEST SENSE returns the last CHECK CONDITION's sense once, then NO SENSE")
    func requestSense() throws {
        let bed = try UnitBed()
        expectCheck(bed.run(.read10(lba: 5000, blocks: 1)).0, .lbaOutOfRange)
        let (r, data) = bed.run(.requestSense())
        #expect(r == .good(18) && SenseData(parsing: data.span.bytes) == .lbaOutOfRange)
        let (again, none) = bed.run(.requestSense(allocationLength: 252))
        #expect(again == .good(18) && SenseData(parsing: none.span.bytes) == .noSense)
        let (short, eight) = bed.run(.requestSense(allocationLength: 8))
        #expect(short == .good(8) && eight[7] == 10)
    }

    @Test("a failing device: MEDIUM ERROR on reads (11/00) and writes (0C/00) with the LBA; NOT READY; out of space")
    func deviceFailures() throws {
        let device = FailingDevice()
        let unit = SCSILogicalUnit(device: device, identity: UnitBed.identity)
        let pool = try IOBufferPool(slots: 1, slotSize: 65536)
        func run(_ cdb: CDB) -> SCSIResult {
            var buffer = pool.take()
            return unit.execute(cdb, buffer: &buffer, transferLength: 65536)
        }
        expectCheck(run(.read10(lba: 77, blocks: 1)), .unrecoveredReadError(lba: 77))
        #expect(run(.read10(lba: 77, blocks: 1)).sense?.information == 77)
        expectCheck(run(.write10(lba: 78, blocks: 1)), .writeError(lba: 78))
        expectCheck(run(.synchronizeCache10()), .writeError(lba: 0))
        device.error = .noSpace
        expectCheck(run(.write10(lba: 78, blocks: 1)), .spaceAllocationFailed)
        device.readiness = .notReady
        expectCheck(run(.testUnitReady()), .notReady)
        expectCheck(run(.read10(lba: 0, blocks: 1)), .notReady)
        device.readiness = .mediumNotPresent
        expectCheck(run(.testUnitReady()), .mediumNotPresent)
        #expect(pool.available == 1, "every buffer came back")
    }

    @Test("an unmapped LUN: INQUIRY says no unit there, REQUEST SENSE and everything else say LUN NOT SUPPORTED")
    func unmappedLUN() throws {
        let pool = try IOBufferPool(slots: 1, slotSize: 4096)
        var buffer = pool.take()
        let inq = UnmappedLUN.execute(.inquiry(allocationLength: 36), buffer: &buffer, transferLength: 4096)
        #expect(inq == .good(36) && buffer!.prefix(1) == [0x7F])
        let sense = UnmappedLUN.execute(.requestSense(), buffer: &buffer, transferLength: 4096)
        #expect(sense == .good(18) && buffer!.withUnsafeBytes { SenseData(parsing: UnsafeRawBufferPointer(rebasing: $0[0..<18]).bytes) } == .logicalUnitNotSupported)
        expectCheck(UnmappedLUN.execute(.read10(lba: 0, blocks: 1), buffer: &buffer, transferLength: 4096), .logicalUnitNotSupported)
        expectCheck(UnmappedLUN.execute(.testUnitReady(), buffer: &buffer, transferLength: 0), .logicalUnitNotSupported)
    }
}
