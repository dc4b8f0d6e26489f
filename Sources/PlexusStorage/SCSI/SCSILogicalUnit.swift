/// How a SCSI command completed: its status, its sense data with CHECK CONDITION, and the
/// bytes of data it moved.
public struct SCSIResult: Sendable, Hashable, CustomStringConvertible {
    public var status: SCSIStatus
    /// The sense data (autosense) when the status is CHECK CONDITION.
    public var sense: SenseData?
    /// Data-in: the bytes written at the buffer's start; data-out: the bytes consumed from it.
    public var dataLength: Int

    public init(status: SCSIStatus, sense: SenseData? = nil, dataLength: Int = 0) {
        self.status = status
        self.sense = sense
        self.dataLength = dataLength
    }

    public static func good(_ dataLength: Int = 0) -> SCSIResult { SCSIResult(status: .good, dataLength: dataLength) }
    public static func checkCondition(_ sense: SenseData) -> SCSIResult { SCSIResult(status: .checkCondition, sense: sense) }

    /// Data-in written by `body` into `buffer`, at most `limit` bytes (nothing without a buffer
    /// or with a limit of 0): GOOD with the bytes written.
    static func dataIn(_ buffer: inout IOBuffer?, limit: Int, _ body: (inout MutableRawSpan, Int) -> Int) -> SCSIResult {
        guard limit > 0, var b = buffer.take() else { return .good() }
        let cut = min(limit, b.capacity)
        var out = b.mutableBytes
        let n = body(&out, cut)
        buffer = consume b
        return .good(n)
    }

    /// The bytes of `transferLength` that were not transferred (a STAT's residual).
    public func residual(of transferLength: Int) -> Int { max(0, transferLength - dataLength) }

    public var description: String { "\(status)" + (sense.map { " \($0)" } ?? "") + " \(dataLength) bytes" }
}

/// One logical unit: executes parsed CDBs against a ``BlockDevice``, as seed 004's control
/// node-side logic does for the storage a processor's (target, LUN) maps to.
///
/// It answers INQUIRY (standard data and the VPD pages 0x00, 0x80, 0x83, 0xB0, and 0xB2 when the
/// device can unmap), TEST UNIT READY, READ CAPACITY(10/16), READ/WRITE(10/16) with FUA,
/// SYNCHRONIZE CACHE(10/16), REPORT LUNS (its own LUN: the control node's map answers for a
/// whole target), REQUEST SENSE and UNMAP. Errors are CHECK CONDITION with fixed-format sense:
/// ILLEGAL REQUEST for a bad opcode, field or LBA; DATA PROTECT for a write to a read-only
/// mapping (``readOnly``, or a read-only device); MEDIUM ERROR when the device fails a read or
/// write; NOT READY when it is not ready. The sense of the last CHECK CONDITION is kept for
/// REQUEST SENSE, which returns it once.
///
/// Each command waits for its own device requests (``BlockDevice/perform(_:)``): a unit is used
/// by one thread, one command at a time. Nothing allocates per command.
public final class SCSILogicalUnit {
    public let device: any BlockDevice
    public let identity: LogicalUnitIdentity
    /// This unit's LUN (what REPORT LUNS lists).
    public let lun: UInt32
    /// Writes and unmaps are refused with DATA PROTECT.
    public let readOnly: Bool
    public let limits: BlockLimits
    /// The sense data REQUEST SENSE returns next (the last CHECK CONDITION's).
    public internal(set) var pendingSense: SenseData?
    var nextTag: UInt64 = 1

    /// A unit over `device`. `limits` default to 32 MiB transfers (or fewer blocks when the
    /// device is smaller) and 1 MiB optimal transfers.
    public init(device: any BlockDevice, identity: LogicalUnitIdentity, lun: UInt32 = 0, readOnly: Bool = false,
                limits: BlockLimits? = nil) {
        self.device = device
        self.identity = identity
        self.lun = lun
        self.readOnly = readOnly || device.geometry.readOnly
        let bs = UInt32(device.geometry.blockSize)
        self.limits = limits ?? BlockLimits(maxTransferBlocks: (32 << 20) / bs, optimalTransferBlocks: (1 << 20) / bs)
    }

    /// Whether UNMAP is offered (the device can, and the unit is writable).
    public var canUnmap: Bool { device.geometry.canUnmap && !readOnly }

    /// Executes `cdb`. Data-in commands write their data at the start of `buffer` (at most
    /// `transferLength` bytes, the initiator's allocation, and never past the buffer); data-out
    /// commands read theirs from it. A READ or WRITE whose blocks do not fit the transfer length
    /// is refused (INVALID FIELD IN CDB, at the transfer length field). `buffer` is the same
    /// buffer afterwards.
    public func execute(_ cdb: CDB, buffer: inout IOBuffer?, transferLength: Int) -> SCSIResult {
        let result: SCSIResult
        do throws(SCSICommandError) {
            result = run(try SCSICommand(parsing: cdb), lengthField: cdb.count == 16 ? 10 : 7, buffer: &buffer,
                         transferLength: transferLength)
        } catch {
            result = .checkCondition(error.sense)
        }
        if result.status == .checkCondition { pendingSense = result.sense }
        return result
    }

    /// Executes an already parsed command (see ``execute(_:buffer:transferLength:)``).
    public func execute(_ command: SCSICommand, buffer: inout IOBuffer?, transferLength: Int) -> SCSIResult {
        let result = run(command, lengthField: command.cdb.count == 16 ? 10 : 7, buffer: &buffer,
                         transferLength: transferLength)
        if result.status == .checkCondition { pendingSense = result.sense }
        return result
    }

    /// `lengthField`: the CDB byte where a READ or WRITE's transfer length starts (the field
    /// pointer of a refused length).
    func run(_ command: SCSICommand, lengthField: Int, buffer: inout IOBuffer?, transferLength: Int) -> SCSIResult {
        // The initiator's allocation, cut to the buffer that holds it.
        let transferLength = max(0, min(transferLength, capacity(of: buffer)))
        switch command {
        case .testUnitReady:
            return readinessFailure() ?? .good()
        case .requestSense(let n):
            let sense = pendingSense ?? .noSense
            pendingSense = nil
            return .dataIn(&buffer, limit: min(Int(n), transferLength)) { out, limit in
                sense.encodeFixed(into: &out, limit: limit)
            }
        case .inquiry(let evpd, let page, let n):
            return inquiry(evpd: evpd, page: page, limit: min(Int(n), transferLength), buffer: &buffer)
        case .readCapacity10:
            let g = device.geometry
            return .dataIn(&buffer, limit: min(8, transferLength)) { out, limit in
                SCSIData.writeReadCapacity10(lastLBA: g.blockCount - 1, blockSize: UInt32(g.blockSize), into: &out, limit: limit)
            }
        case .readCapacity16(let n):
            let g = device.geometry
            let data = ReadCapacityData(lastLBA: g.blockCount - 1, blockSize: UInt32(g.blockSize),
                                        provisioningEnabled: canUnmap, unmappedReadZero: canUnmap && g.unmapReadsZeroes)
            return .dataIn(&buffer, limit: min(Int(n), transferLength)) { out, limit in
                SCSIData.writeReadCapacity16(data, into: &out, limit: limit)
            }
        case .reportLUNs(_, let n):
            let own = CollectionOfOne(lun)
            return .dataIn(&buffer, limit: min(Int(n), transferLength)) { out, limit in
                SCSIData.writeReportLUNs(own, into: &out, limit: limit)
            }
        case .read(let lba, let blocks, _):
            return transfer(read: true, lba: lba, blocks: blocks, fua: false, lengthField: lengthField,
                            buffer: &buffer, transferLength: transferLength)
        case .write(let lba, let blocks, let fua):
            return transfer(read: false, lba: lba, blocks: blocks, fua: fua, lengthField: lengthField,
                            buffer: &buffer, transferLength: transferLength)
        case .synchronizeCache(let lba, let blocks, _):
            if let failure = readinessFailure() { return failure }
            let count = device.geometry.blockCount
            guard lba < count, UInt64(blocks) <= count - lba else { return .checkCondition(.lbaOutOfRange) }
            return complete(device.perform(BlockRequest(.flush, tag: takeTag())), buffer: &buffer, read: false, lba: lba,
                            lengthField: lengthField)
        case .unmap(let length):
            return unmap(parameterListLength: Int(length), buffer: &buffer, transferLength: transferLength)
        }
    }

    // MARK: Data-in commands answered from the unit itself

    func inquiry(evpd: Bool, page: UInt8, limit: Int, buffer: inout IOBuffer?) -> SCSIResult {
        let identity = self.identity, limits = self.limits, unmap = canUnmap
        guard evpd else {
            return .dataIn(&buffer, limit: limit) { out, limit in
                SCSIData.writeStandardInquiry(identity, into: &out, limit: limit)
            }
        }
        guard SCSIData.vpdPages(unmap: unmap).contains(page) else { return .checkCondition(.invalidFieldInCDB(byte: 2)) }
        return .dataIn(&buffer, limit: limit) { out, limit in
            switch page {
            case 0x00: SCSIData.writeSupportedPages(unmap: unmap, into: &out, limit: limit)
            case 0x80: SCSIData.writeSerialNumber(identity, into: &out, limit: limit)
            case 0x83: SCSIData.writeDeviceIdentification(identity, into: &out, limit: limit)
            case 0xB0: SCSIData.writeBlockLimits(limits, unmap: unmap, into: &out, limit: limit)
            default: SCSIData.writeProvisioning(into: &out, limit: limit)
            }
        }
    }


    func readinessFailure() -> SCSIResult? {
        switch device.readiness {
        case .ready: nil
        case .notReady: .checkCondition(.notReady)
        case .mediumNotPresent: .checkCondition(.mediumNotPresent)
        }
    }

    func takeTag() -> UInt64 {
        defer { nextTag &+= 1 }
        return nextTag
    }
}

/// The capacity of `buffer`, 0 without one.
func capacity(of buffer: borrowing IOBuffer?) -> Int {
    switch buffer {
    case .some(let b): b.capacity
    case .none: 0
    }
}

extension SenseData {
    /// ``encodeFixed(into:)`` cut at `limit` bytes.
    func encodeFixed(into output: inout MutableRawSpan, limit: Int) -> Int {
        let full = fixedFormat()
        let n = min(limit, Self.fixedSize, output.byteCount)
        for i in 0..<n { output.storeByte(full[i], at: i) }
        return n
    }
}
