/// What a CHECK CONDITION means: a sense key, an additional sense code and qualifier, and
/// optionally the INFORMATION field and, for ILLEGAL REQUEST, the field that was invalid.
///
/// Written in the fixed format (response code 0x70, 18 bytes, SPC-4 §4.5.3); read from the
/// fixed or the descriptor format (0x72).
public struct SenseData: Sendable, Hashable, CustomStringConvertible {
    public var key: SenseKey
    public var additional: AdditionalSense
    /// The INFORMATION field (for a medium error, the first LBA that failed), when valid.
    public var information: UInt32?
    /// Which field of the CDB or parameter list was invalid (sense-key specific, SKSV set).
    public var field: FieldPointer?

    /// The bytes of fixed-format sense data.
    public static let fixedSize = 18

    /// A field of the CDB (or of the parameter list) that was invalid.
    public struct FieldPointer: Sendable, Hashable {
        /// In the CDB (true) or in the parameter list (false).
        public var inCDB: Bool
        /// The byte.
        public var byte: UInt16
        /// The bit within it (0-7), when the error is in one bit.
        public var bit: UInt8?

        public init(inCDB: Bool, byte: UInt16, bit: UInt8? = nil) {
            self.inCDB = inCDB
            self.byte = byte
            self.bit = bit
        }
    }

    public init(key: SenseKey, additional: AdditionalSense, information: UInt32? = nil, field: FieldPointer? = nil) {
        self.key = key
        self.additional = additional
        self.information = information
        self.field = field
    }

    // MARK: The conditions Plexus reports

    /// ILLEGAL REQUEST, 20/00: an operation code the logical unit does not execute.
    public static let invalidOperationCode = SenseData(key: .illegalRequest, additional: .invalidOperationCode,
                                                       field: FieldPointer(inCDB: true, byte: 0))
    /// ILLEGAL REQUEST, 21/00: an LBA (or LBA + length) beyond the last block.
    public static let lbaOutOfRange = SenseData(key: .illegalRequest, additional: .lbaOutOfRange)
    /// ILLEGAL REQUEST, 24/00 with the byte (and bit) of the CDB that was invalid.
    public static func invalidFieldInCDB(byte: Int, bit: Int? = nil) -> SenseData {
        SenseData(key: .illegalRequest, additional: .invalidFieldInCDB,
                  field: FieldPointer(inCDB: true, byte: UInt16(byte), bit: bit.map(UInt8.init)))
    }
    /// ILLEGAL REQUEST, 26/00 with the byte of the parameter list that was invalid.
    public static func invalidFieldInParameterList(byte: Int) -> SenseData {
        SenseData(key: .illegalRequest, additional: .invalidFieldInParameterList,
                  field: FieldPointer(inCDB: false, byte: UInt16(truncatingIfNeeded: byte)))
    }
    /// ILLEGAL REQUEST, 1A/00: a parameter list shorter than its header says.
    public static let parameterListLengthError = SenseData(key: .illegalRequest, additional: .parameterListLengthError)
    /// ILLEGAL REQUEST, 25/00: the LUN is not in the processor's map.
    public static let logicalUnitNotSupported = SenseData(key: .illegalRequest, additional: .logicalUnitNotSupported)
    /// DATA PROTECT, 27/00: a write to a read-only mapping.
    public static let writeProtected = SenseData(key: .dataProtect, additional: .writeProtected)
    /// DATA PROTECT, 27/07: the backing storage has no space for the write.
    public static let spaceAllocationFailed = SenseData(key: .dataProtect, additional: .spaceAllocationFailed)
    /// MEDIUM ERROR, 11/00 at `lba` (when it fits the INFORMATION field).
    public static func unrecoveredReadError(lba: UInt64? = nil) -> SenseData {
        SenseData(key: .mediumError, additional: .unrecoveredReadError, information: lba.flatMap { UInt32(exactly: $0) })
    }
    /// MEDIUM ERROR, 0C/00 at `lba` (when it fits the INFORMATION field).
    public static func writeError(lba: UInt64? = nil) -> SenseData {
        SenseData(key: .mediumError, additional: .writeError, information: lba.flatMap { UInt32(exactly: $0) })
    }
    /// NOT READY, 04/00: the backing storage cannot be reached.
    public static let notReady = SenseData(key: .notReady, additional: .logicalUnitNotReady)
    /// NOT READY, 3A/00: there is no backing storage.
    public static let mediumNotPresent = SenseData(key: .notReady, additional: .mediumNotPresent)
    /// HARDWARE ERROR, 44/00.
    public static let internalTargetFailure = SenseData(key: .hardwareError, additional: .internalTargetFailure)
    /// NO SENSE: what REQUEST SENSE returns when nothing is pending.
    public static let noSense = SenseData(key: .noSense, additional: .noAdditionalSense)

    // MARK: Encoding and parsing

    /// The 18 bytes of the fixed format.
    func fixedFormat() -> InlineArray<18, UInt8> {
        var full = InlineArray<18, UInt8>(repeating: 0)
        full[0] = 0x70 | (information != nil ? 0x80 : 0)
        full[2] = key.rawValue
        if let info = information {
            for i in 0..<4 { full[3 + i] = UInt8(truncatingIfNeeded: info >> (8 * (3 - i))) }
        }
        full[7] = UInt8(Self.fixedSize - 8)
        full[12] = additional.code
        full[13] = additional.qualifier
        if let f = field {
            full[15] = 0x80 | (f.inCDB ? 0x40 : 0) | (f.bit.map { 0x08 | ($0 & 7) } ?? 0)
            full[16] = UInt8(truncatingIfNeeded: f.byte >> 8)
            full[17] = UInt8(truncatingIfNeeded: f.byte)
        }
        return full
    }

    /// Writes the fixed format (18 bytes, or the first `output.byteCount` of them) at the
    /// start of `output`; returns the bytes written.
    @discardableResult
    public func encodeFixed(into output: inout MutableRawSpan) -> Int {
        let n = min(Self.fixedSize, output.byteCount)
        let full = fixedFormat()
        for i in 0..<n { output.storeByte(full[i], at: i) }
        return n
    }

    /// The fixed format as inline bytes (what a STAT carries).
    public var fixedBytes: InlineBytes<252> {
        var b = InlineBytes<252>()
        let full = fixedFormat()
        for i in 0..<Self.fixedSize { b.append(full[i]) }
        return b
    }

    /// Reads sense data in the fixed (0x70, 0x71) or descriptor (0x72, 0x73) format; nil when
    /// it is neither or too short to hold the key and codes. Only the key, the codes, the
    /// fixed format's INFORMATION and field pointer are kept.
    public init?(parsing bytes: RawSpan) {
        guard bytes.byteCount >= 1 else { return nil }
        switch bytes.byte(0) & 0x7F {
        case 0x70, 0x71:
            guard bytes.byteCount >= 14, let key = SenseKey(rawValue: bytes.byte(2) & 0x0F) else { return nil }
            self.init(key: key, additional: AdditionalSense(bytes.byte(12), bytes.byte(13)))
            if bytes.byte(0) & 0x80 != 0 { information = bytes.loadBE(3) }
            if bytes.byteCount >= 18, bytes.byte(15) & 0x80 != 0 {
                let b15 = bytes.byte(15)
                field = FieldPointer(inCDB: b15 & 0x40 != 0, byte: bytes.loadBE(16),
                                     bit: b15 & 0x08 != 0 ? b15 & 7 : nil)
            }
        case 0x72, 0x73:
            guard bytes.byteCount >= 4, let key = SenseKey(rawValue: bytes.byte(1) & 0x0F) else { return nil }
            self.init(key: key, additional: AdditionalSense(bytes.byte(2), bytes.byte(3)))
        default:
            return nil
        }
    }

    public var description: String {
        var s = "\(key) \(additional)"
        if let information { s += " info \(information)" }
        if let field { s += " field \(field.inCDB ? "CDB" : "parameter") byte \(field.byte)" + (field.bit.map { " bit \($0)" } ?? "") }
        return s
    }
}
