import Foundation
import PlexusCore
import PlexusStorage
import Testing

/// Little-endian field edits on encoded messages.
func putLE<T: FixedWidthInteger>(_ v: T, _ bytes: inout [UInt8], at offset: Int) {
    withUnsafeBytes(of: v.littleEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
}

func decode(_ bytes: [UInt8]) throws(StorageMessageError) -> StorageMessage {
    try StorageMessage(decoding: bytes.span.bytes)
}

func segments(_ list: [(UInt32, UInt64, UInt32)]) -> SegmentList {
    SegmentList(list.map { Segment(key: RegionKey(rawValue: $0.0), offset: $0.1, length: $0.2) })!
}

@Suite("Storage messages")
struct StorageMessageTests {
    static let senseBytes = InlineBytes<252>([0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0])!

    static let samples: [StorageMessage] = [
        .command(StorageCommand(sequence: 1, target: 0, lun: 0, direction: .noData, cdb: .testUnitReady())),
        .command(StorageCommand(sequence: .max, target: 7, lun: 16383, direction: .dataIn,
                                cdb: .read16(lba: 1 << 40, blocks: 24, fua: false),
                                segments: segments([(0xABC0_0001, 0, 4096), (0xABC0_0001, 1 << 33, 4096),
                                                    (0x1234_5002, 512, 4096)]))),
        .command(StorageCommand(sequence: 9, target: 1, lun: 2, direction: .dataOut,
                                cdb: .write10(lba: 100, blocks: 8, fua: true),
                                segments: segments([(5, 0, 4096)]))),
        .command(StorageCommand(sequence: 10, target: 1, lun: 2, direction: .dataIn, cdb: .inquiry(allocationLength: 96),
                                segments: segments(Array(repeating: (5, 0, 3), count: 32)))),
        .command(StorageCommand(sequence: 11, target: 0, lun: 0, control: .listLUNs, segments: segments([(6, 64, 2048)]))),
        .command(StorageCommand(sequence: 12, target: 3, lun: 4, control: .abortCommand, argument: 9)),
        .command(StorageCommand(sequence: 13, target: 3, lun: 4, control: .resetLUN)),
        .status(StorageStatus(sequence: 9, target: 1, lun: 2, scsiStatus: 0)),
        .status(StorageStatus(sequence: 10, target: 1, lun: 2, scsiStatus: 2, residual: 4096, sense: senseBytes)),
        .status(StorageStatus(sequence: 10, target: 1, lun: 2, scsiStatus: 2,
                              sense: InlineBytes<252>((0..<252).map { UInt8(truncatingIfNeeded: $0) })!)),
        .status(StorageStatus(sequence: 12, target: 3, lun: 4, isControl: true, scsiStatus: 0, controlResult: .noSuchCommand)),
        .buffer(StorageBuffer(sequence: 9, target: 1, lun: 2, index: 0,
                              region: Segment(key: RegionKey(rawValue: 0xFEED_0003), offset: 1 << 20, length: 4096))),
        .transfer(StorageTransfer(sequence: 9, target: 1, lun: 2, index: 0, length: 4096)),
    ]

    @Test("every message type round-trips through its encoding", arguments: samples)
    func roundTrip(message: StorageMessage) throws {
        let bytes = try message.encoded()
        #expect(bytes.count == message.encodedSize)
        #expect(try decode(bytes) == message)
        #expect(try StorageHeader(parsing: bytes.span.bytes) == message.header)
        // Into a buffer of exactly its size, and one byte short.
        var exact = [UInt8](repeating: 0xEE, count: message.encodedSize)
        let n = try exact.withUnsafeMutableBytes { raw throws(StorageMessageError) in try message.encode(into: raw) }
        #expect(n == bytes.count && exact == bytes)
        var short = [UInt8](repeating: 0, count: message.encodedSize - 1)
        #expect(throws: StorageMessageError.outputTooSmall(needed: bytes.count, available: bytes.count - 1)) {
            try short.withUnsafeMutableBytes { raw throws(StorageMessageError) in try message.encode(into: raw) }
        }
    }

    @Test("the fields are little-endian at the documented offsets")
    func layout() throws {
        let read = try StorageMessage.command(StorageCommand(
            sequence: 0x0102_0304_0506_0708, target: 0x1112_1314, lun: 0x2122_2324, direction: .dataIn,
            cdb: .read10(lba: 0x3132_3334, blocks: 0x4142, fua: true),
            segments: segments([(0x5152_5354, 0x6162_6364_6566_6768, 0x200)]))).encoded()
        #expect(read.count == 72)
        #expect(Array(read[0..<8]) == [1, 1, 1, 0, 72, 0, 0, 0], "version 1, CMD, data-in, length 72")
        #expect(Array(read[8..<16]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Array(read[16..<24]) == [0x14, 0x13, 0x12, 0x11, 0x24, 0x23, 0x22, 0x21])
        #expect(Array(read[24..<32]) == [10, 1, 0, 0, 0x00, 0x02, 0, 0], "CDB length, one segment, transfer 512")
        #expect(Array(read[32..<48]) == [0x28, 0x08, 0x31, 0x32, 0x33, 0x34, 0, 0x41, 0x42, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(read[48..<56]) == [UInt8](repeating: 0, count: 8))
        #expect(Array(read[56..<72]) == [0x54, 0x53, 0x52, 0x51, 0, 2, 0, 0, 0x68, 0x67, 0x66, 0x65, 0x64, 0x63, 0x62, 0x61])

        let abort = try StorageMessage.command(StorageCommand(sequence: 2, target: 0, lun: 1, control: .abortCommand,
                                                              argument: 0x99)).encoded()
        #expect(Array(abort[0..<8]) == [1, 1, 4, 0, 56, 0, 0, 0], "control flag (bit 2), no data")
        #expect(Array(abort[24..<28]) == [0, 0, 2, 0] && abort[48] == 0x99)

        let stat = try StorageMessage.status(StorageStatus(sequence: 1, target: 2, lun: 3, scsiStatus: 2,
                                                           residual: 0x0A0B_0C0D, sense: Self.senseBytes)).encoded()
        #expect(Array(stat[0..<8]) == [1, 2, 0, 0, 50, 0, 0, 0])
        #expect(Array(stat[24..<32]) == [2, 18, 0, 0, 0x0D, 0x0C, 0x0B, 0x0A])
        #expect(Array(stat[32...]) == Self.senseBytes.array)

        let buf = try StorageMessage.buffer(StorageBuffer(sequence: 1, target: 2, lun: 3, index: 5, region: Segment(
            key: RegionKey(rawValue: 0x0102_0304), offset: 0x1112_1314_1516_1718, length: 0x2122_2324))).encoded()
        #expect(Array(buf[0..<8]) == [1, 3, 0, 0, 48, 0, 0, 0])
        #expect(Array(buf[24..<48]) == [5, 0, 0, 0, 4, 3, 2, 1, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,
                                        0x24, 0x23, 0x22, 0x21, 0, 0, 0, 0])

        let tran = try StorageMessage.transfer(StorageTransfer(sequence: 1, target: 2, lun: 3, index: 6,
                                                               length: 0x0102_0304)).encoded()
        #expect(Array(tran[0..<8]) == [1, 4, 0, 0, 32, 0, 0, 0])
        #expect(Array(tran[24..<32]) == [6, 0, 0, 0, 4, 3, 2, 1])
    }

    /// A valid CMD with one data-in segment to break in the malformed cases.
    static func goodRead() -> [UInt8] {
        try! StorageMessage.command(StorageCommand(sequence: 5, target: 0, lun: 1, direction: .dataIn,
                                                   cdb: .read10(lba: 0, blocks: 1, fua: false),
                                                   segments: segments([(7, 0, 512)]))).encoded()
    }

    static func goodStatus() -> [UInt8] {
        try! StorageMessage.status(StorageStatus(sequence: 5, target: 0, lun: 1, scsiStatus: 2, sense: senseBytes)).encoded()
    }

    static func goodControl(_ op: ControlOperation, argument: UInt64 = 0) -> [UInt8] {
        try! StorageMessage.command(StorageCommand(sequence: 5, target: 0, lun: 1, control: op, argument: argument,
                                                   segments: op == .listLUNs ? segments([(1, 0, 64)]) : SegmentList())).encoded()
    }

    static func goodBuffer() -> [UInt8] {
        try! StorageMessage.buffer(StorageBuffer(sequence: 1, target: 0, lun: 0, index: 0,
                                                 region: Segment(key: RegionKey(rawValue: 1), offset: 0, length: 1))).encoded()
    }

    /// Each malformed case: the bytes, and the error they must give.
    static let malformed: [(String, @Sendable () -> [UInt8], StorageMessageError)] = [
        ("empty", { [] }, .short(needed: 24, available: 0)),
        ("23 bytes", { Array(goodRead().prefix(23)) }, .short(needed: 24, available: 23)),
        ("CMD cut to its header", { var b = Array(goodRead().prefix(40)); putLE(UInt32(40), &b, at: 4); return b },
         .short(needed: 56, available: 40)),
        ("CMD missing its segment", { var b = Array(goodRead().prefix(56)); putLE(UInt32(56), &b, at: 4); return b },
         .short(needed: 72, available: 56)),
        ("CMD with a trailing byte", { var b = goodRead() + [0]; putLE(UInt32(73), &b, at: 4); return b },
         .lengthMismatch(declared: 73, expected: 72)),
        ("length field larger than the bytes", { var b = goodRead(); putLE(UInt32(80), &b, at: 4); return b },
         .lengthMismatch(declared: 80, expected: 72)),
        ("version 0", { var b = goodRead(); b[0] = 0; return b }, .badVersion(0)),
        ("version 2", { var b = goodRead(); b[0] = 2; return b }, .badVersion(2)),
        ("type 0", { var b = goodRead(); b[1] = 0; return b }, .badType(0)),
        ("type 5", { var b = goodRead(); b[1] = 5; return b }, .badType(5)),
        ("reserved flag bit", { var b = goodRead(); b[3] = 0x80; return b }, .badFlags(0x8001)),
        ("direction 3", { var b = goodRead(); b[2] = 3; return b }, .badFlags(3)),
        ("direction on a STAT", { var b = goodStatus(); b[2] = 1; return b }, .badFlags(1)),
        ("control flag on a BUF", { var b = goodBuffer(); b[2] = 4; return b }, .badFlags(4)),
        ("CDB length 17", { var b = goodRead(); b[24] = 17; return b }, .cdbTooLong(17)),
        ("CDB length 255", { var b = goodRead(); b[24] = 255; return b }, .cdbTooLong(255)),
        ("SCSI CMD without a CDB", { var b = goodRead(); b[24] = 0; for i in 32..<42 { b[i] = 0 }; return b }, .missingCDB),
        ("control CMD with a CDB", { var b = goodControl(.resetLUN); b[24] = 1; b[32] = 0; return b }, .cdbOnControl),
        ("33 segments", { var b = goodRead(); b[25] = 33; return b }, .tooManySegments(33)),
        ("sense length 253", { var b = goodStatus(); b[25] = 253; return b }, .senseTooLong(253)),
        ("sense length larger than the bytes", { var b = goodStatus(); b[25] = 19; return b }, .short(needed: 51, available: 50)),
        ("transfer length not the segments' sum", { var b = goodRead(); putLE(UInt32(513), &b, at: 28); return b },
         .transferLengthMismatch(declared: 513, segments: 512)),
        ("segments without a direction", { var b = goodRead(); b[2] = 0; return b }, .segmentsWithoutDirection),
        ("a direction without segments", {
            var b = try! StorageMessage.command(StorageCommand(sequence: 1, target: 0, lun: 0, direction: .noData,
                                                               cdb: .testUnitReady())).encoded()
            b[2] = 2
            return b
        }, .directionWithoutSegments),
        ("a segment of length 0", { var b = goodRead(); putLE(UInt32(0), &b, at: 60); putLE(UInt32(0), &b, at: 28); return b },
         .emptySegment(index: 0)),
        ("unknown control operation", { var b = goodControl(.resetLUN); b[26] = 9; return b }, .badControlOperation(9)),
        ("control operation without the control flag", { var b = goodRead(); b[26] = 1; return b }, .badControlOperation(1)),
        ("listLUNs without data", { var b = goodControl(.abortCommand); b[26] = 1; return b }, .badControlOperation(1)),
        ("reset with an argument", { var b = goodControl(.resetLUN); b[48] = 1; return b }, .unexpectedControlArgument(1)),
        ("SCSI CMD with an argument", { var b = goodRead(); b[55] = 1; return b }, .unexpectedControlArgument(1 << 56)),
        ("unknown control result", { var b = goodStatus(); b[2] = 4; b[26] = 9; return b }, .badControlResult(9)),
        ("control result on a SCSI STAT", { var b = goodStatus(); b[26] = 1; return b }, .badControlResult(1)),
        ("CMD reserved byte", { var b = goodRead(); b[27] = 1; return b }, .reservedNotZero(offset: 27)),
        ("CDB padding", { var b = goodRead(); b[47] = 1; return b }, .reservedNotZero(offset: 47)),
        ("STAT reserved byte", { var b = goodStatus(); b[27] = 1; return b }, .reservedNotZero(offset: 27)),
        ("BUF reserved bytes", { var b = goodBuffer(); b[46] = 1; return b }, .reservedNotZero(offset: 46)),
        ("BUF of 47 bytes", { var b = Array(goodBuffer().prefix(47)); putLE(UInt32(47), &b, at: 4); return b },
         .short(needed: 48, available: 47)),
        ("TRAN of 33 bytes", {
            var b = try! StorageMessage.transfer(StorageTransfer(sequence: 1, target: 0, lun: 0, index: 0, length: 1)).encoded() + [0]
            putLE(UInt32(33), &b, at: 4)
            return b
        }, .lengthMismatch(declared: 33, expected: 32)),
    ]

    @Test("malformed messages are refused with an error that names what is wrong", arguments: malformed)
    func refused(name: String, bytes: @Sendable () -> [UInt8], expected: StorageMessageError) {
        let b = bytes()
        #expect(throws: expected, "\(name)") { try decode(b) }
    }

    @Test("a CMD refused after its header still gives its sequence, target and LUN, so it can be answered")
    func answerable() throws {
        var b = Self.goodRead()
        b[24] = 17
        let header = try StorageHeader(parsing: b.span.bytes)
        #expect(header.type == .command && header.sequence == 5 && header.lun == 1)
        var counters = StorageMessageCounters()
        do { _ = try decode(b) } catch { counters.record(error) }
        do { _ = try decode([]) } catch { counters.record(error) }
        do { _ = try decode(b) } catch { counters.record(error) }
        #expect(counters[.cdbTooLong] == 2 && counters[.short] == 1 && counters.total == 3)
    }

    @Test("encoding refuses values the other end would refuse, and writes nothing")
    func encodeRefuses() {
        let noCDB = StorageMessage.command(StorageCommand(sequence: 1, target: 0, lun: 0, direction: .noData, cdb: CDB()))
        #expect(throws: StorageMessageError.missingCDB) { try noCDB.encoded() }
        let noSegments = StorageMessage.command(StorageCommand(sequence: 1, target: 0, lun: 0, direction: .dataIn,
                                                               cdb: .read10(lba: 0, blocks: 1, fua: false)))
        #expect(throws: StorageMessageError.directionWithoutSegments) { try noSegments.encoded() }
        let huge = StorageMessage.command(StorageCommand(sequence: 1, target: 0, lun: 0, direction: .dataIn,
                                                         cdb: .read16(lba: 0, blocks: 1 << 24, fua: false),
                                                         segments: segments([(1, 0, .max), (1, 0, 1)])))
        #expect(throws: StorageMessageError.transferLengthMismatch(declared: UInt64(UInt32.max), segments: 1 << 32)) {
            try huge.encoded()
        }
        let result = StorageMessage.status(StorageStatus(sequence: 1, target: 0, lun: 0, scsiStatus: 0,
                                                         controlResult: .noSuchLUN))
        #expect(throws: StorageMessageError.badControlResult(2)) { try result.encoded() }
        var out = [UInt8](repeating: 0xAA, count: 64)
        #expect(throws: StorageMessageError.missingCDB) {
            try out.withUnsafeMutableBytes { raw throws(StorageMessageError) in try noCDB.encode(into: raw) }
        }
        #expect(out.allSatisfy { $0 == 0xAA })
    }

    @Test("the largest messages fit their limits")
    func limits() throws {
        #expect(StorageLimits.maxCommandSize == 568 && StorageLimits.maxStatusSize == 284)
        #expect(StorageLimits.maxMessageSize <= FrameLayout.maxPayload)
        #expect(SegmentList(Array(repeating: Segment(key: RegionKey(rawValue: 1), offset: 0, length: 1), count: 33)) == nil)
        #expect(InlineBytes<252>([UInt8](repeating: 1, count: 253)) == nil)
        #expect(CDB([UInt8](repeating: 0, count: 17)) == nil)
    }

    @Test("the fuzz target's seed corpus holds every message type; each seed decodes and re-encodes to itself")
    func seedCorpus() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = root.appendingPathComponent("Fuzz/corpus/storage-message")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        var types: Set<StorageMessageType> = []
        var controls: Set<ControlOperation> = []
        for name in names {
            let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(name)))
            let message = try decode(bytes)
            #expect(try message.encoded() == bytes, "\(name)")
            types.insert(message.type)
            if case .command(let c) = message, let op = c.control { controls.insert(op) }
        }
        #expect(types == Set(StorageMessageType.allCases) && controls == Set(ControlOperation.allCases))
    }
}

@Suite("Storage map entries as definition files write them")
struct StorageMappingEntryTests {
    @Test("TARGET:LUN=PATH[:ro] parses, files and SAN URLs alike, and prints back the same; anything else is refused")
    func entries() {
        let file = StorageMapping(entry: "0:0=/var/lib/plexus/web.img")
        #expect(file?.target == 0 && file?.lun == 0 && file?.path == "/var/lib/plexus/web.img" && file?.access == .readWrite)
        let readOnly = StorageMapping(entry: "3:5=/luns/iso.img:ro")
        #expect(readOnly?.target == 3 && readOnly?.lun == 5 && readOnly?.path == "/luns/iso.img" && readOnly?.access == .readOnly)
        let san = StorageMapping(entry: "0:1=iscsi://san:3260/iqn.2026-12.com.example:web/1")
        #expect(san?.path == "iscsi://san:3260/iqn.2026-12.com.example:web/1" && san?.lun == 1 && san?.access == .readWrite)
        for e in ["0:0=/var/lib/plexus/web.img", "3:5=/luns/iso.img:ro", "0:1=iscsi://san:3260/iqn.2026-12.com.example:web/1"] {
            #expect(StorageMapping(entry: e)?.entry == e)
        }
        for bad in ["0=/x.img", "a:b=/x.img", "0:0=", "0:0=:ro", "0:0", "-1:0=/x", "0:0:0=/x", ""] {
            #expect(StorageMapping(entry: bad) == nil, "\(bad)")
        }
    }
}
