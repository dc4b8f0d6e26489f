/// A parsed CDB: one of the commands a ``SCSILogicalUnit`` executes (SPC-4, SBC-3).
///
/// READ and WRITE (10 and 16), and SYNCHRONIZE CACHE (10 and 16), parse to one case each: the
/// CDB's size only bounds its fields. ``cdb`` builds the shortest CDB that holds the fields.
public enum SCSICommand: Sendable, Hashable {
    case testUnitReady
    /// REQUEST SENSE: the pending sense data, at most `allocationLength` bytes.
    case requestSense(allocationLength: UInt8)
    /// INQUIRY: the standard data, or with `vitalProductData` the VPD page `page`.
    case inquiry(vitalProductData: Bool, page: UInt8, allocationLength: UInt16)
    case readCapacity10
    /// READ CAPACITY(16) (SERVICE ACTION IN(16), service action 0x10).
    case readCapacity16(allocationLength: UInt32)
    /// READ(10)/(16): `blocks` logical blocks from `lba`; `fua` asks for the medium, not a cache.
    case read(lba: UInt64, blocks: UInt32, fua: Bool)
    /// WRITE(10)/(16); with `fua` the data is on stable storage before the command completes.
    case write(lba: UInt64, blocks: UInt32, fua: Bool)
    /// SYNCHRONIZE CACHE(10)/(16) of `blocks` from `lba` (0 blocks: to the end).
    case synchronizeCache(lba: UInt64, blocks: UInt32, immediate: Bool)
    /// REPORT LUNS with SELECT REPORT `selectReport` (0, 1 or 2).
    case reportLUNs(selectReport: UInt8, allocationLength: UInt32)
    /// UNMAP with a parameter list of `parameterListLength` bytes in the data-out buffer.
    case unmap(parameterListLength: UInt16)

    /// Which way the command's data moves.
    public var direction: DataDirection {
        switch self {
        case .testUnitReady, .synchronizeCache: .noData
        case .requestSense, .inquiry, .readCapacity10, .readCapacity16, .read, .reportLUNs: .dataIn
        case .write, .unmap: .dataOut
        }
    }

    /// The bytes the command transfers (data-in: at most this many) with logical blocks of
    /// `blockSize` bytes.
    public func transferLength(blockSize: Int) -> UInt64 {
        switch self {
        case .testUnitReady, .synchronizeCache: 0
        case .requestSense(let n): UInt64(n)
        case .inquiry(_, _, let n): UInt64(n)
        case .readCapacity10: 8
        case .readCapacity16(let n): UInt64(n)
        case .read(_, let blocks, _), .write(_, let blocks, _): UInt64(blocks) * UInt64(blockSize)
        case .reportLUNs(_, let n): UInt64(n)
        case .unmap(let n): UInt64(n)
        }
    }
}

/// Why a CDB was refused. ``sense`` is the CHECK CONDITION it is answered with.
public enum SCSICommandError: Error, Sendable, Hashable {
    /// No bytes.
    case empty
    /// An operation code this logical unit does not execute.
    case unsupportedOperation(UInt8)
    /// Fewer bytes than the operation code's CDB has.
    case cdbTooShort(operation: UInt8, length: Int)
    /// A field (byte, and bit when it is one bit) with a value that is invalid or not supported.
    case invalidField(byte: Int, bit: Int?)

    /// The sense data the command completes with (ILLEGAL REQUEST).
    public var sense: SenseData {
        switch self {
        case .empty, .unsupportedOperation: .invalidOperationCode
        case .cdbTooShort(_, let length): .invalidFieldInCDB(byte: max(0, length - 1))
        case .invalidField(let byte, let bit): .invalidFieldInCDB(byte: byte, bit: bit)
        }
    }
}

extension SCSICommand {
    /// Parses `cdb`, refusing operation codes it does not know, CDBs shorter than their
    /// operation's, and fields this implementation does not support: protection information,
    /// NACA, an UNMAP anchor, descriptor-format sense, a nonzero LBA in READ CAPACITY(10), EVPD
    /// clear with a page code, other SERVICE ACTION IN service actions, REPORT LUNS selections
    /// above 2 or allocation lengths below 16.
    public init(parsing cdb: CDB) throws(SCSICommandError) {
        guard !cdb.isEmpty else { throw .empty }
        let op = cdb.operationCode
        guard let length = Self.length(of: op) else { throw .unsupportedOperation(op) }
        guard cdb.count >= length else { throw .cdbTooShort(operation: op, length: cdb.count) }
        // NACA (bit 2 of the control byte, the CDB's last): auto contingent allegiance is not supported.
        guard cdb[length - 1] & 0x04 == 0 else { throw .invalidField(byte: length - 1, bit: 2) }
        switch op {
        case SCSIOperation.testUnitReady:
            self = .testUnitReady
        case SCSIOperation.requestSense:
            guard cdb[1] & 1 == 0 else { throw .invalidField(byte: 1, bit: 0) }
            self = .requestSense(allocationLength: cdb[4])
        case SCSIOperation.inquiry:
            guard cdb[1] & 0x02 == 0 else { throw .invalidField(byte: 1, bit: 1) }  // CMDDT (obsolete)
            let evpd = cdb[1] & 1 != 0
            guard evpd || cdb[2] == 0 else { throw .invalidField(byte: 2, bit: nil) }
            self = .inquiry(vitalProductData: evpd, page: cdb[2], allocationLength: UInt16(cdb.field(3, width: 2)))
        case SCSIOperation.readCapacity10:
            guard cdb[8] & 1 != 0 || cdb.field(2, width: 4) == 0 else { throw .invalidField(byte: 2, bit: nil) }
            self = .readCapacity10
        case SCSIOperation.serviceActionIn16:
            guard cdb[1] & 0x1F == SCSIOperation.readCapacity16ServiceAction else { throw .invalidField(byte: 1, bit: 4) }
            self = .readCapacity16(allocationLength: UInt32(cdb.field(10, width: 4)))
        case SCSIOperation.read10, SCSIOperation.write10, SCSIOperation.read16, SCSIOperation.write16:
            // RDPROTECT / WRPROTECT: no protection information.
            guard cdb[1] & 0xE0 == 0 else { throw .invalidField(byte: 1, bit: 7) }
            let ten = op == SCSIOperation.read10 || op == SCSIOperation.write10
            let lba = ten ? cdb.field(2, width: 4) : cdb.field(2, width: 8)
            let blocks = UInt32(ten ? cdb.field(7, width: 2) : cdb.field(10, width: 4))
            let fua = cdb[1] & 0x08 != 0
            self = op == SCSIOperation.read10 || op == SCSIOperation.read16
                ? .read(lba: lba, blocks: blocks, fua: fua) : .write(lba: lba, blocks: blocks, fua: fua)
        case SCSIOperation.synchronizeCache10:
            self = .synchronizeCache(lba: cdb.field(2, width: 4), blocks: UInt32(cdb.field(7, width: 2)),
                                     immediate: cdb[1] & 0x02 != 0)
        case SCSIOperation.synchronizeCache16:
            self = .synchronizeCache(lba: cdb.field(2, width: 8), blocks: UInt32(cdb.field(10, width: 4)),
                                     immediate: cdb[1] & 0x02 != 0)
        case SCSIOperation.reportLUNs:
            guard cdb[2] <= 2 else { throw .invalidField(byte: 2, bit: nil) }
            let allocation = UInt32(cdb.field(6, width: 4))
            guard allocation >= 16 else { throw .invalidField(byte: 6, bit: nil) }
            self = .reportLUNs(selectReport: cdb[2], allocationLength: allocation)
        case SCSIOperation.unmap:
            guard cdb[1] & 1 == 0 else { throw .invalidField(byte: 1, bit: 0) }  // ANCHOR
            self = .unmap(parameterListLength: UInt16(cdb.field(7, width: 2)))
        default:
            throw .unsupportedOperation(op)
        }
    }

    /// The CDB length of the operations this parser knows, nil for any other.
    static func length(of op: UInt8) -> Int? {
        switch op {
        case SCSIOperation.testUnitReady, SCSIOperation.requestSense, SCSIOperation.inquiry: 6
        case SCSIOperation.readCapacity10, SCSIOperation.read10, SCSIOperation.write10,
             SCSIOperation.synchronizeCache10, SCSIOperation.unmap: 10
        case SCSIOperation.reportLUNs: 12
        case SCSIOperation.read16, SCSIOperation.write16, SCSIOperation.synchronizeCache16,
             SCSIOperation.serviceActionIn16: 16
        default: nil
        }
    }

    /// The shortest CDB that carries this command (READ(10) when the LBA fits 32 bits and the
    /// length 16, else READ(16); the same for WRITE and SYNCHRONIZE CACHE).
    public var cdb: CDB {
        switch self {
        case .testUnitReady: return .testUnitReady()
        case .requestSense(let n): return .requestSense(allocationLength: n)
        case .inquiry(let evpd, let page, let n):
            return evpd ? .inquiry(page: page, allocationLength: n) : .inquiry(allocationLength: n)
        case .readCapacity10: return .readCapacity10()
        case .readCapacity16(let n): return .readCapacity16(allocationLength: n)
        case .read(let lba, let blocks, let fua):
            if let l = UInt32(exactly: lba), let b = UInt16(exactly: blocks) { return .read10(lba: l, blocks: b, fua: fua) }
            return .read16(lba: lba, blocks: blocks, fua: fua)
        case .write(let lba, let blocks, let fua):
            if let l = UInt32(exactly: lba), let b = UInt16(exactly: blocks) { return .write10(lba: l, blocks: b, fua: fua) }
            return .write16(lba: lba, blocks: blocks, fua: fua)
        case .synchronizeCache(let lba, let blocks, let immediate):
            if let l = UInt32(exactly: lba), let b = UInt16(exactly: blocks) {
                return .synchronizeCache10(lba: l, blocks: b, immediate: immediate)
            }
            return .synchronizeCache16(lba: lba, blocks: blocks, immediate: immediate)
        case .reportLUNs(let select, let n): return .reportLUNs(selectReport: select, allocationLength: n)
        case .unmap(let n): return .unmap(parameterListLength: n)
        }
    }
}
