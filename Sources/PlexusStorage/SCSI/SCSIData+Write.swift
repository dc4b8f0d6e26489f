/// Writers of the data-in payloads a logical unit (or, for REPORT LUNS and unmapped LUNs, the
/// control node's map) returns. Each writes at most `limit` bytes at the start of `output` and
/// returns what it wrote (the payload's fields that give its length still give the full length,
/// so an initiator that allocated too little learns how much to ask for).
public enum SCSIData {
    /// The VPD pages a logical unit answers, in the order page 0x00 lists them.
    public static func vpdPages(unmap: Bool) -> [UInt8] { unmap ? [0x00, 0x80, 0x83, 0xB0, 0xB2] : [0x00, 0x80, 0x83, 0xB0] }

    /// Standard INQUIRY data (36 bytes): a direct-access block device, SPC-4, HISUP, command
    /// queueing; with `connected` false, peripheral qualifier 3 and type 0x1F (no logical unit
    /// at this LUN, what INQUIRY to an unmapped LUN returns).
    public static func writeStandardInquiry(_ identity: LogicalUnitIdentity, connected: Bool = true,
                                            into output: inout MutableRawSpan, limit: Int) -> Int {
        let limit = min(limit, output.byteCount)
        output.putZero(0, count: 36, limit: limit)
        output.putByte(0, connected ? 0x00 : 0x7F, limit: limit)
        output.putByte(2, 0x06, limit: limit)            // SPC-4
        output.putByte(3, 0x12, limit: limit)            // HISUP, response data format 2
        output.putByte(4, 36 - 5, limit: limit)          // additional length
        output.putByte(7, 0x02, limit: limit)            // CMDQUE
        output.putASCII(8, identity.vendor, width: 8, limit: limit)
        output.putASCII(16, identity.product, width: 16, limit: limit)
        output.putASCII(32, identity.revision, width: 4, limit: limit)
        return limit < 36 ? limit : 36
    }

    /// VPD page 0x00 (supported pages).
    public static func writeSupportedPages(unmap: Bool, into output: inout MutableRawSpan, limit: Int) -> Int {
        let pages = vpdPages(unmap: unmap)
        let limit = min(limit, output.byteCount)
        output.putByte(0, 0, limit: limit)
        output.putByte(1, 0x00, limit: limit)
        output.putBE(2, UInt16(pages.count), limit: limit)
        for (i, p) in pages.enumerated() { output.putByte(4 + i, p, limit: limit) }
        return min(limit, 4 + pages.count)
    }

    /// VPD page 0x80 (unit serial number).
    public static func writeSerialNumber(_ identity: LogicalUnitIdentity, into output: inout MutableRawSpan, limit: Int) -> Int {
        let n = identity.serial.utf8.count
        let limit = min(limit, output.byteCount)
        output.putByte(0, 0, limit: limit)
        output.putByte(1, 0x80, limit: limit)
        output.putBE(2, UInt16(n), limit: limit)
        output.putASCII(4, identity.serial, width: n, limit: limit)
        return min(limit, 4 + n)
    }

    /// VPD page 0x83 (device identification): a T10 vendor ID designator (vendor and serial, ASCII)
    /// and an NAA 3 designator (the identity's 60-bit identifier, binary), both of the logical unit.
    public static func writeDeviceIdentification(_ identity: LogicalUnitIdentity, into output: inout MutableRawSpan,
                                                 limit: Int) -> Int {
        let t10Length = 8 + identity.serial.utf8.count
        let total = 4 + (4 + t10Length) + (4 + 8)
        let limit = min(limit, output.byteCount)
        output.putByte(0, 0, limit: limit)
        output.putByte(1, 0x83, limit: limit)
        output.putBE(2, UInt16(total - 4), limit: limit)
        // T10 vendor ID: code set ASCII (2), association logical unit, type 1.
        output.putByte(4, 0x02, limit: limit)
        output.putByte(5, 0x01, limit: limit)
        output.putByte(6, 0, limit: limit)
        output.putByte(7, UInt8(t10Length), limit: limit)
        output.putASCII(8, identity.vendor, width: 8, limit: limit)
        output.putASCII(16, identity.serial, width: identity.serial.utf8.count, limit: limit)
        // NAA: code set binary (1), association logical unit, type 3; NAA 3 (locally assigned).
        let o = 8 + t10Length
        output.putByte(o, 0x01, limit: limit)
        output.putByte(o + 1, 0x03, limit: limit)
        output.putByte(o + 2, 0, limit: limit)
        output.putByte(o + 3, 8, limit: limit)
        output.putBE(o + 4, UInt64(3) << 60 | identity.identifier, limit: limit)
        return min(limit, total)
    }

    /// VPD page 0xB0 (block limits).
    public static func writeBlockLimits(_ limits: BlockLimits, unmap: Bool, into output: inout MutableRawSpan,
                                        limit: Int) -> Int {
        let limit = min(limit, output.byteCount)
        output.putZero(0, count: 64, limit: limit)
        output.putByte(1, 0xB0, limit: limit)
        output.putBE(2, UInt16(0x3C), limit: limit)
        output.putBE(6, UInt16(1), limit: limit)                              // optimal transfer length granularity
        output.putBE(8, limits.maxTransferBlocks, limit: limit)               // maximum transfer length
        output.putBE(12, limits.optimalTransferBlocks, limit: limit)          // optimal transfer length
        if unmap {
            output.putBE(20, limits.maxUnmapBlocks, limit: limit)             // maximum unmap LBA count
            output.putBE(24, limits.maxUnmapDescriptors, limit: limit)        // maximum unmap block descriptor count
            output.putBE(28, UInt32(1), limit: limit)                         // optimal unmap granularity
        }
        return min(limit, 64)
    }

    /// VPD page 0xB2 (logical block provisioning): thin provisioned, UNMAP supported, unmapped
    /// blocks read as zeroes.
    public static func writeProvisioning(into output: inout MutableRawSpan, limit: Int) -> Int {
        let limit = min(limit, output.byteCount)
        output.putZero(0, count: 8, limit: limit)
        output.putByte(1, 0xB2, limit: limit)
        output.putBE(2, UInt16(4), limit: limit)
        output.putByte(5, 0x80 | 0x04, limit: limit)  // LBPU, LBPRZ
        output.putByte(6, 0x02, limit: limit)         // thin provisioned
        return min(limit, 8)
    }

    /// READ CAPACITY(10) data.
    public static func writeReadCapacity10(lastLBA: UInt64, blockSize: UInt32, into output: inout MutableRawSpan,
                                           limit: Int) -> Int {
        let limit = min(limit, output.byteCount)
        output.putBE(0, UInt32(clamping: lastLBA), limit: limit)
        output.putBE(4, blockSize, limit: limit)
        return min(limit, 8)
    }

    /// READ CAPACITY(16) data (32 bytes).
    public static func writeReadCapacity16(_ data: ReadCapacityData, into output: inout MutableRawSpan, limit: Int) -> Int {
        let limit = min(limit, output.byteCount)
        output.putZero(0, count: 32, limit: limit)
        output.putBE(0, data.lastLBA, limit: limit)
        output.putBE(8, data.blockSize, limit: limit)
        output.putByte(14, (data.provisioningEnabled ? 0x80 : 0) | (data.unmappedReadZero ? 0x40 : 0), limit: limit)
        return min(limit, 32)
    }

    /// REPORT LUNS data for `luns` (each at most ``LUNAddress/maxLUN``; larger ones are left out).
    public static func writeReportLUNs(_ luns: some Collection<UInt32>, into output: inout MutableRawSpan, limit: Int) -> Int {
        let limit = min(limit, output.byteCount)
        var n = 0
        for lun in luns {
            guard let form = LUNAddress.encode(lun) else { continue }
            output.putBE(8 + 8 * n, form, limit: limit)
            n += 1
        }
        output.putBE(0, UInt32(8 * n), limit: limit)
        output.putZero(4, count: 4, limit: limit)
        return min(limit, 8 + 8 * n)
    }
}

/// An UNMAP parameter list (SBC-3 §5.28.2), read in place: an 8-byte header, then 16-byte
/// descriptors of (LBA, number of blocks).
public struct UnmapParameterList: Sendable, Hashable {
    /// Descriptors in the list.
    public let count: Int

    /// Checks the list of `length` bytes (the CDB's parameter list length) at the start of
    /// `bytes`: nothing (length 0) is an empty list; a length below 8, or a descriptor length
    /// beyond the list, is PARAMETER LIST LENGTH ERROR; more than `maxDescriptors` descriptors is
    /// INVALID FIELD IN PARAMETER LIST. A descriptor length that is not a multiple of 16 loses
    /// its partial last descriptor, as SBC-3 says.
    public init(parsing bytes: RawSpan, length: Int, maxDescriptors: Int) throws(SenseData) {
        guard length > 0 else {
            count = 0
            return
        }
        guard length >= 8, bytes.byteCount >= length else { throw .parameterListLengthError }
        let descriptorBytes = Int(bytes.loadBE(2, as: UInt16.self))
        guard descriptorBytes <= length - 8 else { throw .parameterListLengthError }
        let n = descriptorBytes / 16
        guard n <= maxDescriptors else { throw .invalidFieldInParameterList(byte: 2) }
        count = n
    }

    /// Descriptor `i` (below ``count``) of the list `bytes` was parsed from.
    public func descriptor(_ i: Int, in bytes: RawSpan) -> (lba: UInt64, blocks: UInt32) {
        precondition(i >= 0 && i < count, "descriptor index out of range")
        return (bytes.loadBE(8 + 16 * i), bytes.loadBE(16 + 16 * i))
    }

    /// Writes a parameter list of `descriptors` at the start of `output`; returns its length
    /// (the CDB's parameter list length), nil when `output` is too small.
    public static func encode(_ descriptors: some Collection<(lba: UInt64, blocks: UInt32)>,
                              into output: inout MutableRawSpan) -> Int? {
        let length = 8 + 16 * descriptors.count
        guard output.byteCount >= length, length - 2 <= UInt16.max else { return nil }
        output.storeBE(UInt16(length - 2), at: 0)
        output.storeBE(UInt16(16 * descriptors.count), at: 2)
        output.storeBE(UInt32(0), at: 4)
        for (i, d) in descriptors.enumerated() {
            output.storeBE(d.lba, at: 8 + 16 * i)
            output.storeBE(d.blocks, at: 16 + 16 * i)
            output.storeBE(UInt32(0), at: 20 + 16 * i)
        }
        return length
    }
}
