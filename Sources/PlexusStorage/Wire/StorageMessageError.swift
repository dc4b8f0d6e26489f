/// Why bytes were refused as a storage message (decoding), or a message could not be written
/// (encoding). Each case names what is wrong. A receiver counts every refusal by ``kind``
/// (``StorageMessageCounters``) and drops the message; one whose header was readable
/// (``StorageHeader/init(parsing:)``) can still be answered.
public enum StorageMessageError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Fewer bytes than the header, or than the message's type needs.
    case short(needed: Int, available: Int)
    /// A version other than ``StorageLimits/version``.
    case badVersion(UInt8)
    /// A type byte that names no message type.
    case badType(UInt8)
    /// Reserved flag bits set, direction value 3, a data direction on a message other than a
    /// CMD, or the control flag on a BUF or TRAN.
    case badFlags(UInt16)
    /// The header's length field does not match the message's bytes, or the size its type and
    /// counts imply.
    case lengthMismatch(declared: UInt32, expected: Int)
    /// A CDB length over 16.
    case cdbTooLong(Int)
    /// A SCSI CMD with no CDB.
    case missingCDB
    /// A protocol-control CMD with a CDB.
    case cdbOnControl
    /// More segments than ``SegmentList/capacity``.
    case tooManySegments(Int)
    /// Sense data over ``StorageLimits/maxSense`` bytes.
    case senseTooLong(Int)
    /// A CMD whose transfer length is not the sum of its segments' lengths (or over 32 bits).
    case transferLengthMismatch(declared: UInt64, segments: UInt64)
    /// A CMD with segments and no data direction.
    case segmentsWithoutDirection
    /// A CMD with a data direction and no segments.
    case directionWithoutSegments
    /// A segment of length 0.
    case emptySegment(index: Int)
    /// An unknown control operation, one on a CMD without the control flag, or the wrong data
    /// direction for it.
    case badControlOperation(UInt8)
    /// A control argument on a CMD other than an abort.
    case unexpectedControlArgument(UInt64)
    /// An unknown control result, or a result other than done on a SCSI command's STAT.
    case badControlResult(UInt8)
    /// A reserved byte (or CDB padding) that is not zero, at this offset.
    case reservedNotZero(offset: Int)
    /// Encoding: the output has fewer bytes than the message needs.
    case outputTooSmall(needed: Int, available: Int)

    /// The error's kind without its values, for counting.
    public enum Kind: Int, Sendable, Hashable, CaseIterable {
        case short, badVersion, badType, badFlags, lengthMismatch, cdbTooLong, missingCDB, cdbOnControl,
             tooManySegments, senseTooLong, transferLengthMismatch, segmentsWithoutDirection,
             directionWithoutSegments, emptySegment, badControlOperation, unexpectedControlArgument,
             badControlResult, reservedNotZero, outputTooSmall
    }

    public var kind: Kind {
        switch self {
        case .short: .short
        case .badVersion: .badVersion
        case .badType: .badType
        case .badFlags: .badFlags
        case .lengthMismatch: .lengthMismatch
        case .cdbTooLong: .cdbTooLong
        case .missingCDB: .missingCDB
        case .cdbOnControl: .cdbOnControl
        case .tooManySegments: .tooManySegments
        case .senseTooLong: .senseTooLong
        case .transferLengthMismatch: .transferLengthMismatch
        case .segmentsWithoutDirection: .segmentsWithoutDirection
        case .directionWithoutSegments: .directionWithoutSegments
        case .emptySegment: .emptySegment
        case .badControlOperation: .badControlOperation
        case .unexpectedControlArgument: .unexpectedControlArgument
        case .badControlResult: .badControlResult
        case .reservedNotZero: .reservedNotZero
        case .outputTooSmall: .outputTooSmall
        }
    }

    public var description: String {
        switch self {
        case .short(let n, let a): "short: \(a) bytes, \(n) needed"
        case .badVersion(let v): "version \(v), not \(StorageLimits.version)"
        case .badType(let t): "unknown message type \(t)"
        case .badFlags(let f): "bad flags 0x\(String(f, radix: 16))"
        case .lengthMismatch(let d, let e): "length field \(d), \(e) expected"
        case .cdbTooLong(let n): "CDB length \(n) over \(CDB.maxLength)"
        case .missingCDB: "a SCSI command without a CDB"
        case .cdbOnControl: "a protocol-control command with a CDB"
        case .tooManySegments(let n): "\(n) segments, at most \(SegmentList.capacity)"
        case .senseTooLong(let n): "sense length \(n) over \(StorageLimits.maxSense)"
        case .transferLengthMismatch(let d, let s): "transfer length \(d) but the segments hold \(s) bytes"
        case .segmentsWithoutDirection: "segments without a data direction"
        case .directionWithoutSegments: "a data direction without segments"
        case .emptySegment(let i): "segment \(i) has length 0"
        case .badControlOperation(let o): "bad control operation \(o)"
        case .unexpectedControlArgument(let a): "control argument \(a) on an operation that takes none"
        case .badControlResult(let r): "bad control result \(r)"
        case .reservedNotZero(let o): "reserved byte at offset \(o) is not zero"
        case .outputTooSmall(let n, let a): "output of \(a) bytes, \(n) needed"
        }
    }
}

/// Refused storage messages, counted by kind. Plain counters: owned by the one thread that
/// decodes.
public struct StorageMessageCounters: Sendable, Hashable {
    public private(set) var byKind = [UInt64](repeating: 0, count: StorageMessageError.Kind.allCases.count)

    public init() {}

    /// Counts one refusal.
    public mutating func record(_ error: StorageMessageError) { byKind[error.kind.rawValue] &+= 1 }

    /// Refusals of `kind`.
    public subscript(kind: StorageMessageError.Kind) -> UInt64 { byKind[kind.rawValue] }

    /// Every refusal.
    public var total: UInt64 { byKind.reduce(0, &+) }
}
