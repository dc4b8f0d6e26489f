/// A SCSI command descriptor block: 1 to 16 bytes, held inline.
///
/// The first byte is the operation code; the length follows from it (6, 10, 12 or 16 bytes for
/// the commands Plexus knows). ``SCSICommand/init(parsing:)`` reads one, the static builders
/// (`CDB.read10(lba:blocks:fua:)` and the others, CDB+Build.swift) write one.
public struct CDB: Sendable, Hashable, CustomStringConvertible {
    /// The longest CDB a storage message carries.
    public static let maxLength = 16

    /// The bytes of the CDB.
    public var bytes: InlineBytes<16>

    /// An empty CDB (the protocol-control commands carry none).
    public init() { bytes = InlineBytes() }

    /// The CDB of `bytes`, or nil when there are more than 16.
    public init?(_ bytes: some Sequence<UInt8>) {
        guard let b = InlineBytes<16>(bytes) else { return nil }
        self.bytes = b
    }

    /// A CDB of `length` zero bytes whose first byte is `opcode`.
    init(opcode: UInt8, length: Int) {
        bytes = InlineBytes()
        bytes.resize(to: length)
        bytes[0] = opcode
    }

    /// How many bytes it has.
    public var count: Int { bytes.count }
    public var isEmpty: Bool { bytes.isEmpty }
    /// The operation code (0 for an empty CDB).
    public var operationCode: UInt8 { bytes.byte(0) }

    /// Byte `i`, or 0 beyond the CDB's length.
    public subscript(i: Int) -> UInt8 {
        get { bytes.byte(i) }
        set { bytes[i] = newValue }
    }

    /// The big-endian integer of `width` bytes at `offset` (0 beyond the CDB's length).
    func field(_ offset: Int, width: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in offset..<(offset + width) { v = v << 8 | UInt64(bytes.byte(i)) }
        return v
    }

    /// Stores `value` big-endian in `width` bytes at `offset`.
    mutating func setField(_ offset: Int, width: Int, _ value: UInt64) {
        for i in 0..<width { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * (width - 1 - i))) }
    }

    public var description: String { "CDB(\(bytes))" }
}
