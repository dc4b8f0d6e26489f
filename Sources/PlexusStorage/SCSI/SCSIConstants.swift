// The SCSI values Plexus uses (SPC-4 for the primary commands, status and sense; SBC-3 for the
// block commands). Everything multi-byte in a CDB or in SCSI data is big-endian.

/// Operation codes of the commands a ``SCSILogicalUnit`` executes.
public enum SCSIOperation {
    public static let testUnitReady: UInt8 = 0x00
    public static let requestSense: UInt8 = 0x03
    public static let inquiry: UInt8 = 0x12
    public static let readCapacity10: UInt8 = 0x25
    public static let read10: UInt8 = 0x28
    public static let write10: UInt8 = 0x2A
    public static let synchronizeCache10: UInt8 = 0x35
    public static let unmap: UInt8 = 0x42
    public static let read16: UInt8 = 0x88
    public static let write16: UInt8 = 0x8A
    public static let synchronizeCache16: UInt8 = 0x91
    /// SERVICE ACTION IN(16); READ CAPACITY(16) is its service action 0x10.
    public static let serviceActionIn16: UInt8 = 0x9E
    public static let readCapacity16ServiceAction: UInt8 = 0x10
    public static let reportLUNs: UInt8 = 0xA0

    /// The CDB length of `opcode` from its group code (top three bits): 6, 10, 12 or 16 bytes,
    /// nil for the reserved and vendor-specific groups.
    public static func cdbLength(_ opcode: UInt8) -> Int? {
        switch opcode >> 5 {
        case 0: 6
        case 1, 2: 10
        case 4: 16
        case 5: 12
        default: nil
        }
    }
}

/// The status byte a command completes with.
public enum SCSIStatus: UInt8, Sendable, Hashable, CaseIterable {
    case good = 0x00
    case checkCondition = 0x02
    case busy = 0x08
    case reservationConflict = 0x18
    case taskSetFull = 0x28
    case taskAborted = 0x40
}

/// The sense key: the class of a CHECK CONDITION.
public enum SenseKey: UInt8, Sendable, Hashable, CaseIterable {
    case noSense = 0x0
    case recoveredError = 0x1
    case notReady = 0x2
    case mediumError = 0x3
    case hardwareError = 0x4
    case illegalRequest = 0x5
    case unitAttention = 0x6
    case dataProtect = 0x7
    case abortedCommand = 0xB
}

/// An additional sense code and its qualifier (ASC/ASCQ): what exactly went wrong.
public struct AdditionalSense: Sendable, Hashable, CustomStringConvertible {
    public var code: UInt8
    public var qualifier: UInt8

    public init(_ code: UInt8, _ qualifier: UInt8) {
        self.code = code
        self.qualifier = qualifier
    }

    public static let noAdditionalSense = AdditionalSense(0x00, 0x00)
    /// 04/00: LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE.
    public static let logicalUnitNotReady = AdditionalSense(0x04, 0x00)
    /// 0C/00: WRITE ERROR.
    public static let writeError = AdditionalSense(0x0C, 0x00)
    /// 11/00: UNRECOVERED READ ERROR.
    public static let unrecoveredReadError = AdditionalSense(0x11, 0x00)
    /// 1A/00: PARAMETER LIST LENGTH ERROR.
    public static let parameterListLengthError = AdditionalSense(0x1A, 0x00)
    /// 20/00: INVALID COMMAND OPERATION CODE.
    public static let invalidOperationCode = AdditionalSense(0x20, 0x00)
    /// 21/00: LOGICAL BLOCK ADDRESS OUT OF RANGE.
    public static let lbaOutOfRange = AdditionalSense(0x21, 0x00)
    /// 24/00: INVALID FIELD IN CDB.
    public static let invalidFieldInCDB = AdditionalSense(0x24, 0x00)
    /// 25/00: LOGICAL UNIT NOT SUPPORTED.
    public static let logicalUnitNotSupported = AdditionalSense(0x25, 0x00)
    /// 26/00: INVALID FIELD IN PARAMETER LIST.
    public static let invalidFieldInParameterList = AdditionalSense(0x26, 0x00)
    /// 27/00: WRITE PROTECTED.
    public static let writeProtected = AdditionalSense(0x27, 0x00)
    /// 27/07: SPACE ALLOCATION FAILED WRITE PROTECT (a thin-provisioned unit out of space).
    public static let spaceAllocationFailed = AdditionalSense(0x27, 0x07)
    /// 3A/00: MEDIUM NOT PRESENT.
    public static let mediumNotPresent = AdditionalSense(0x3A, 0x00)
    /// 44/00: INTERNAL TARGET FAILURE.
    public static let internalTargetFailure = AdditionalSense(0x44, 0x00)

    public var description: String {
        func hex(_ b: UInt8) -> String { (b < 16 ? "0" : "") + String(b, radix: 16, uppercase: true) }
        return "\(hex(code))/\(hex(qualifier))"
    }
}
