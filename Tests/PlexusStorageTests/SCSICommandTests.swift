import PlexusStorage
import Testing

func cdbBytes(_ b: [UInt8]) -> CDB { CDB(b)! }

@Suite("SCSI commands and sense data")
struct SCSICommandTests {
    static let commands: [SCSICommand] = [
        .testUnitReady,
        .requestSense(allocationLength: 18),
        .inquiry(vitalProductData: false, page: 0, allocationLength: 96),
        .inquiry(vitalProductData: true, page: 0x83, allocationLength: 255),
        .readCapacity10,
        .readCapacity16(allocationLength: 32),
        .read(lba: 0, blocks: 1, fua: false),
        .read(lba: 0xFFFF_FFFF, blocks: 0xFFFF, fua: true),
        .read(lba: 1 << 32, blocks: 8, fua: false),
        .read(lba: 7, blocks: 1 << 16, fua: false),
        .write(lba: 100, blocks: 8, fua: true),
        .write(lba: .max - 1, blocks: .max, fua: false),
        .synchronizeCache(lba: 0, blocks: 0, immediate: false),
        .synchronizeCache(lba: 1 << 33, blocks: 9, immediate: true),
        .reportLUNs(selectReport: 2, allocationLength: 4096),
        .unmap(parameterListLength: 24),
    ]

    @Test("each command's CDB parses back to the same command", arguments: commands)
    func roundTrip(command: SCSICommand) throws {
        let cdb = command.cdb
        #expect(cdb.count == SCSIOperation.cdbLength(cdb.operationCode))
        #expect(try SCSICommand(parsing: cdb) == command)
    }

    @Test("the builders write the fields SBC-3 and SPC-4 define")
    func builders() {
        #expect(CDB.read10(lba: 0x0102_0304, blocks: 0x0506, fua: true).bytes.array == [0x28, 0x08, 1, 2, 3, 4, 0, 5, 6, 0])
        #expect(CDB.write16(lba: 0x0102_0304_0506_0708, blocks: 0x090A_0B0C).bytes.array
                == [0x8A, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0])
        #expect(CDB.readCapacity16().bytes.array == [0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0])
        #expect(CDB.inquiry(page: 0x80, allocationLength: 0x0102).bytes.array == [0x12, 1, 0x80, 1, 2, 0])
        #expect(CDB.reportLUNs(allocationLength: 0x100).bytes.array == [0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
        #expect(CDB.unmap(parameterListLength: 24).bytes.array == [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0])
        #expect(CDB.synchronizeCache10(immediate: true).bytes.array == [0x35, 2, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(CDB.requestSense().bytes.array == [0x03, 0, 0, 0, 18, 0])
        #expect(CDB.testUnitReady().bytes.array == [0, 0, 0, 0, 0, 0])
    }

    /// A refused CDB and the error (with its sense) it must give.
    static let refused: [(String, [UInt8], SCSICommandError)] = [
        ("empty", [], .empty),
        ("MODE SENSE(10), not executed", [0x5A, 0, 0x3F, 0, 0, 0, 0, 0, 255, 0], .unsupportedOperation(0x5A)),
        ("vendor-specific opcode", [0xC0, 0, 0, 0, 0, 0], .unsupportedOperation(0xC0)),
        ("READ(10) of 6 bytes", [0x28, 0, 0, 0, 0, 0], .cdbTooShort(operation: 0x28, length: 6)),
        ("NACA in the control byte", [0, 0, 0, 0, 0, 0x04], .invalidField(byte: 5, bit: 2)),
        ("READ(10) with RDPROTECT", [0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0], .invalidField(byte: 1, bit: 7)),
        ("WRITE(16) with WRPROTECT", [0x8A, 0xE0] + [UInt8](repeating: 0, count: 14), .invalidField(byte: 1, bit: 7)),
        ("INQUIRY page without EVPD", [0x12, 0, 0x80, 0, 96, 0], .invalidField(byte: 2, bit: nil)),
        ("INQUIRY with CMDDT", [0x12, 2, 0, 0, 96, 0], .invalidField(byte: 1, bit: 1)),
        ("READ CAPACITY(10) with an LBA and PMI clear", [0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], .invalidField(byte: 2, bit: nil)),
        ("SERVICE ACTION IN(16), not READ CAPACITY", [0x9E, 0x11] + [UInt8](repeating: 0, count: 14), .invalidField(byte: 1, bit: 4)),
        ("REPORT LUNS, SELECT REPORT 3", [0xA0, 0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0], .invalidField(byte: 2, bit: nil)),
        ("REPORT LUNS, allocation 15", [0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0], .invalidField(byte: 6, bit: nil)),
        ("UNMAP with ANCHOR", [0x42, 1, 0, 0, 0, 0, 0, 0, 24, 0], .invalidField(byte: 1, bit: 0)),
        ("REQUEST SENSE, descriptor format", [0x03, 1, 0, 0, 252, 0], .invalidField(byte: 1, bit: 0)),
    ]

    @Test("unsupported and malformed CDBs are refused, each with its ILLEGAL REQUEST sense", arguments: refused)
    func refusedCDBs(name: String, bytes: [UInt8], expected: SCSICommandError) {
        #expect(throws: expected, "\(name)") { try SCSICommand(parsing: cdbBytes(bytes)) }
        #expect(expected.sense.key == .illegalRequest)
        switch expected {
        case .empty, .unsupportedOperation: #expect(expected.sense.additional == .invalidOperationCode)
        default: #expect(expected.sense.additional == .invalidFieldInCDB)
        }
    }

    @Test("fixed-format sense data: key, codes, information and field pointer at their offsets, and back")
    func senseData() throws {
        let sense = SenseData.invalidFieldInCDB(byte: 2, bit: 7)
        let bytes = sense.fixedBytes.array
        #expect(bytes == [0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0xCF, 0, 2])
        #expect(SenseData(parsing: bytes.span.bytes) == sense)
        let medium = SenseData.unrecoveredReadError(lba: 0x0102_0304)
        let m = medium.fixedBytes.array
        #expect(m[0] == 0xF0 && Array(m[2...6]) == [3, 1, 2, 3, 4] && m[12] == 0x11 && m[15] == 0)
        #expect(SenseData(parsing: m.span.bytes) == medium)
        #expect(SenseData.unrecoveredReadError(lba: 1 << 40).information == nil, "an LBA over 32 bits is not given")
        let cases: [(SenseData, SenseKey, UInt8, UInt8)] = [
            (.invalidOperationCode, .illegalRequest, 0x20, 0), (.lbaOutOfRange, .illegalRequest, 0x21, 0),
            (.invalidFieldInCDB(byte: 1), .illegalRequest, 0x24, 0), (.logicalUnitNotSupported, .illegalRequest, 0x25, 0),
            (.writeProtected, .dataProtect, 0x27, 0), (.unrecoveredReadError(), .mediumError, 0x11, 0),
            (.writeError(), .mediumError, 0x0C, 0), (.notReady, .notReady, 0x04, 0), (.mediumNotPresent, .notReady, 0x3A, 0),
        ]
        for (s, key, asc, ascq) in cases {
            let b = s.fixedBytes.array
            #expect(b.count == 18 && b[2] == key.rawValue && b[12] == asc && b[13] == ascq, "\(s)")
            #expect(SenseData(parsing: b.span.bytes) == s)
        }
        // Descriptor format: key and codes.
        let descriptor: [UInt8] = [0x72, 0x07, 0x27, 0x00, 0, 0, 0, 0]
        #expect(SenseData(parsing: descriptor.span.bytes) == .writeProtected)
        let short: [UInt8] = [0x70, 0, 5]
        #expect(SenseData(parsing: short.span.bytes) == nil, "too short")
        let unknown: [UInt8] = [0x00, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0]
        #expect(SenseData(parsing: unknown.span.bytes) == nil, "unknown format")
    }

    @Test("LUNs: peripheral addressing below 256, flat space up to 16383")
    func lunAddresses() {
        #expect(LUNAddress.encode(0) == 0)
        #expect(LUNAddress.encode(5) == 0x0005_0000_0000_0000)
        #expect(LUNAddress.encode(256) == 0x4100_0000_0000_0000)
        #expect(LUNAddress.encode(16383) == 0x7FFF_0000_0000_0000)
        #expect(LUNAddress.encode(16384) == nil)
        for lun: UInt32 in [0, 1, 255, 256, 1000, 16383] { #expect(LUNAddress.decode(LUNAddress.encode(lun)!) == lun) }
        #expect(LUNAddress.decode(0x0001_0000_0000_0000 | 1) == nil, "a second level")
        #expect(LUNAddress.decode(0x8000_0000_0000_0000) == nil, "logical unit addressing")
    }

    @Test("UNMAP parameter lists: written and read back; bad lengths and counts refused")
    func unmapLists() throws {
        var bytes = [UInt8](repeating: 0, count: 64)
        let descriptors: [(lba: UInt64, blocks: UInt32)] = [(8, 16), (1 << 35, 1)]
        let length = bytes.withUnsafeMutableBytes { raw -> Int? in
            var span = raw.mutableBytes
            return UnmapParameterList.encode(descriptors, into: &span)
        }
        #expect(length == 40)
        #expect(Array(bytes[0..<8]) == [0, 38, 0, 32, 0, 0, 0, 0])
        let list = try UnmapParameterList(parsing: bytes.span.bytes, length: 40, maxDescriptors: 8)
        #expect(list.count == 2)
        #expect(list.descriptor(0, in: bytes.span.bytes) == (8, 16) && list.descriptor(1, in: bytes.span.bytes) == (1 << 35, 1))
        #expect(try UnmapParameterList(parsing: bytes.span.bytes, length: 0, maxDescriptors: 8).count == 0)
        #expect(throws: SenseData.parameterListLengthError) {
            try UnmapParameterList(parsing: bytes.span.bytes, length: 7, maxDescriptors: 8)
        }
        #expect(throws: SenseData.parameterListLengthError, "descriptors beyond the list") {
            try UnmapParameterList(parsing: bytes.span.bytes, length: 39, maxDescriptors: 8)
        }
        #expect(throws: SenseData.invalidFieldInParameterList(byte: 2)) {
            try UnmapParameterList(parsing: bytes.span.bytes, length: 40, maxDescriptors: 1)
        }
        var partial = bytes
        partial[3] = 40  // 2.5 descriptors: the partial one is ignored
        #expect(try UnmapParameterList(parsing: partial.span.bytes, length: 48, maxDescriptors: 8).count == 2)
    }
}
