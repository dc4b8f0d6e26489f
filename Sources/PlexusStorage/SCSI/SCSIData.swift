// The data-in payloads the logical unit returns (INQUIRY and its VPD pages, READ CAPACITY,
// REPORT LUNS), written big-endian into the command's buffer and cut at the allocation length,
// and their parsers for the processor side.

extension SenseData: Error {}

// Stores that drop what falls at or beyond `limit`: data cut at an allocation length (the
// fields that say how long the whole is still tell the full length).
extension MutableRawSpan {
    mutating func putByte(_ offset: Int, _ value: UInt8, limit: Int) {
        if offset < limit { storeByte(value, at: offset) }
    }

    mutating func putBE<T: FixedWidthInteger>(_ offset: Int, _ value: T, limit: Int) {
        let n = MemoryLayout<T>.size
        for i in 0..<n { putByte(offset + i, UInt8(truncatingIfNeeded: value >> (8 * (n - 1 - i))), limit: limit) }
    }

    /// `text` in printable ASCII (anything else becomes a space), padded with spaces (or cut)
    /// to `width` bytes.
    mutating func putASCII(_ offset: Int, _ text: String, width: Int, limit: Int) {
        var i = 0
        for u in text.utf8 where i < width {
            putByte(offset + i, u >= 0x20 && u < 0x7F ? u : 0x20, limit: limit)
            i += 1
        }
        while i < width {
            putByte(offset + i, 0x20, limit: limit)
            i += 1
        }
    }

    mutating func putZero(_ offset: Int, count: Int, limit: Int) {
        for i in 0..<count { putByte(offset + i, 0, limit: limit) }
    }
}

/// How a logical unit names itself in INQUIRY data and its identification pages.
public struct LogicalUnitIdentity: Sendable, Hashable {
    /// T10 vendor identification (8 ASCII characters, space padded).
    public var vendor: String
    /// Product identification (16).
    public var product: String
    /// Product revision level (4).
    public var revision: String
    /// The unit serial number (VPD page 0x80; at most 32 characters are used).
    public var serial: String
    /// A 60-bit identifier, unique per logical unit: the NAA 3 (locally assigned) designator
    /// of VPD page 0x83 that Linux uses as the disk's WWN.
    public var identifier: UInt64

    public init(vendor: String = "PLEXUS", product: String = "VIRTUAL DISK", revision: String = "0001",
                serial: String, identifier: UInt64) {
        self.vendor = vendor
        self.product = product
        self.revision = revision
        self.serial = String(serial.prefix(32))
        self.identifier = identifier & 0x0FFF_FFFF_FFFF_FFFF
    }
}

/// Limits a logical unit reports in the Block Limits VPD page and enforces.
public struct BlockLimits: Sendable, Hashable {
    /// The most blocks one READ or WRITE may move (larger: INVALID FIELD IN CDB).
    public var maxTransferBlocks: UInt32
    /// The transfer size the unit prefers, in blocks.
    public var optimalTransferBlocks: UInt32
    /// The most blocks one UNMAP may release in all.
    public var maxUnmapBlocks: UInt32
    /// The most descriptors one UNMAP parameter list may carry.
    public var maxUnmapDescriptors: UInt32

    public init(maxTransferBlocks: UInt32, optimalTransferBlocks: UInt32, maxUnmapBlocks: UInt32 = 1 << 22,
                maxUnmapDescriptors: UInt32 = 256) {
        self.maxTransferBlocks = maxTransferBlocks
        self.optimalTransferBlocks = optimalTransferBlocks
        self.maxUnmapBlocks = maxUnmapBlocks
        self.maxUnmapDescriptors = maxUnmapDescriptors
    }
}

/// SAM's 8-byte LUN for LUN numbers up to 16383: peripheral device addressing below 256, flat
/// space addressing above.
public enum LUNAddress {
    /// The largest LUN these two formats hold.
    public static let maxLUN: UInt32 = 16383

    /// The 8-byte form of `lun` as a big-endian integer, nil above ``maxLUN``.
    public static func encode(_ lun: UInt32) -> UInt64? {
        guard lun <= maxLUN else { return nil }
        let first: UInt64 = lun < 256 ? 0 : 0x40 | UInt64(lun >> 8)
        return first << 56 | UInt64(lun & 0xFF) << 48
    }

    /// The LUN of an 8-byte form (peripheral or flat space addressing, second level zero), else nil.
    public static func decode(_ value: UInt64) -> UInt32? {
        guard value & 0x0000_FFFF_FFFF_FFFF == 0 else { return nil }
        let b0 = UInt32(value >> 56), b1 = UInt32(value >> 48 & 0xFF)
        switch b0 >> 6 {
        case 0: return b0 == 0 ? b1 : nil
        case 1: return (b0 & 0x3F) << 8 | b1
        default: return nil
        }
    }
}

/// The parameter data of READ CAPACITY(10) and (16), as the processor side reads it.
public struct ReadCapacityData: Sendable, Hashable {
    /// The last logical block's address.
    public var lastLBA: UInt64
    public var blockSize: UInt32
    /// Logical block provisioning (UNMAP) enabled.
    public var provisioningEnabled: Bool
    /// Unmapped blocks read as zeroes.
    public var unmappedReadZero: Bool

    public init(lastLBA: UInt64, blockSize: UInt32, provisioningEnabled: Bool = false, unmappedReadZero: Bool = false) {
        self.lastLBA = lastLBA
        self.blockSize = blockSize
        self.provisioningEnabled = provisioningEnabled
        self.unmappedReadZero = unmappedReadZero
    }

    /// READ CAPACITY(10) data (8 bytes); the last LBA reads 0xFFFFFFFF when it does not fit.
    public init?(parsing10 bytes: RawSpan) {
        guard bytes.byteCount >= 8 else { return nil }
        self.init(lastLBA: UInt64(bytes.loadBE(0, as: UInt32.self)), blockSize: bytes.loadBE(4))
    }

    /// READ CAPACITY(16) data (at least the first 16 of its 32 bytes).
    public init?(parsing16 bytes: RawSpan) {
        guard bytes.byteCount >= 16 else { return nil }
        self.init(lastLBA: bytes.loadBE(0), blockSize: bytes.loadBE(8), provisioningEnabled: bytes.byte(14) & 0x80 != 0,
                  unmappedReadZero: bytes.byte(14) & 0x40 != 0)
    }

    /// The number of blocks.
    public var blockCount: UInt64 { lastLBA &+ 1 }
}

/// REPORT LUNS parameter data, as the processor side reads it: the LUN list's length, and each
/// 8-byte entry read in place.
public struct ReportLUNsData: Sendable, Hashable {
    /// LUNs the whole list holds (it may hold more than the bytes received).
    public var listed: Int
    /// LUNs whose entries are in the bytes received.
    public var present: Int

    public init?(parsing bytes: RawSpan) {
        guard bytes.byteCount >= 8 else { return nil }
        listed = Int(bytes.loadBE(0, as: UInt32.self) / 8)
        present = min(listed, (bytes.byteCount - 8) / 8)
    }

    /// LUN `i` (below ``present``), nil when its entry is not a form ``LUNAddress`` reads.
    public func lun(_ i: Int, in bytes: RawSpan) -> UInt32? {
        precondition(i >= 0 && i < present, "LUN index out of range")
        return LUNAddress.decode(bytes.loadBE(8 + 8 * i))
    }
}
