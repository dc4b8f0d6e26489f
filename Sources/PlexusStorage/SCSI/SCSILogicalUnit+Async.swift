// The start/finish form of command execution, for a thread that must never block (the
// engine thread): ``SCSILogicalUnit/begin(_:buffer:transferLength:)`` parses and checks a CDB
// and either completes it at once or names the one block operation to submit;
// ``SCSILogicalUnit/finish(_:result:)`` turns that operation's completion into the result.

/// The block operation a command needs, as ``SCSILogicalUnit/begin(_:buffer:transferLength:)``
/// returns it: submit it (into or out of the command's staging memory, from its start), then
/// hand its completion to ``SCSILogicalUnit/finish(_:result:)``.
public struct SCSIBlockStep: Sendable, Hashable {
    /// Read, write (with FUA) or flush.
    public var operation: BlockOperation
    /// The byte offset on the device.
    public var offset: UInt64
    /// The bytes to move (0 for a flush).
    public var length: Int
    /// The first LBA (for the sense data of a failure).
    public var lba: UInt64
    /// The CDB byte where the transfer length starts (the field pointer of a refusal).
    public var lengthField: Int

    public init(operation: BlockOperation, offset: UInt64, length: Int, lba: UInt64, lengthField: Int) {
        self.operation = operation
        self.offset = offset
        self.length = length
        self.lba = lba
        self.lengthField = lengthField
    }
}

/// What ``SCSILogicalUnit/begin(_:buffer:transferLength:)`` decided.
public enum SCSIStart: Sendable, Hashable {
    /// The command is complete: status, sense, and (data-in) the bytes written to the buffer.
    case complete(SCSIResult)
    /// The command needs this block operation before it completes.
    case block(SCSIBlockStep)
}

extension SCSILogicalUnit {
    /// Starts `cdb`. Commands answered from the unit itself (INQUIRY, READ CAPACITY, TEST UNIT
    /// READY, REQUEST SENSE, REPORT LUNS) and every refusal (a bad CDB, an LBA out of range, a
    /// write to a read-only unit, a transfer longer than `transferLength`) complete at once, a
    /// data-in answer written at the start of `buffer`. READ, WRITE and SYNCHRONIZE CACHE
    /// return the block operation to submit; the device itself is never called, so nothing
    /// blocks. UNMAP returns an ``BlockOperation/unmap`` step of no range whose `length` is its
    /// parameter list's: the caller receives the list (data-out) and hands it to
    /// ``unmapStep(list:)``, which returns the range to release.
    public func begin(_ cdb: CDB, buffer: inout IOBuffer?, transferLength: Int) -> SCSIStart {
        let command: SCSICommand
        do throws(SCSICommandError) {
            command = try SCSICommand(parsing: cdb)
        } catch {
            return settle(.complete(.checkCondition(error.sense)))
        }
        let lengthField = cdb.count == 16 ? 10 : 7
        switch command {
        case .read(let lba, let blocks, _):
            return settle(step(read: true, lba: lba, blocks: blocks, fua: false, lengthField: lengthField,
                               transferLength: transferLength))
        case .write(let lba, let blocks, let fua):
            return settle(step(read: false, lba: lba, blocks: blocks, fua: fua, lengthField: lengthField,
                               transferLength: transferLength))
        case .synchronizeCache(let lba, let blocks, _):
            if let failure = readinessFailure() { return settle(.complete(failure)) }
            let count = device.geometry.blockCount
            guard lba < count, UInt64(blocks) <= count - lba else { return settle(.complete(.checkCondition(.lbaOutOfRange))) }
            return .block(SCSIBlockStep(operation: .flush, offset: 0, length: 0, lba: lba, lengthField: lengthField))
        case .unmap(let listLength):
            guard canUnmap else {
                return settle(.complete(.checkCondition(readOnly ? .writeProtected : .invalidOperationCode)))
            }
            if let failure = readinessFailure() { return settle(.complete(failure)) }
            guard listLength > 0 else { return settle(.complete(.good())) }
            guard Int(listLength) <= transferLength else { return settle(.complete(.checkCondition(.parameterListLengthError))) }
            return .block(SCSIBlockStep(operation: .unmap, offset: 0, length: Int(listLength), lba: 0, lengthField: 7))
        default:
            return settle(.complete(run(command, lengthField: lengthField, buffer: &buffer,
                                        transferLength: transferLength)))
        }
    }

    /// Completes a command that ``begin(_:buffer:transferLength:)`` returned `step` for:
    /// `result` is the bytes the operation moved, or its error. GOOD with the bytes moved, or
    /// CHECK CONDITION with the error's sense (kept for REQUEST SENSE).
    public func finish(_ step: SCSIBlockStep, result: Result<Int, BlockIOError>) -> SCSIResult {
        let out: SCSIResult
        switch result {
        case .success(let n):
            if case .flush = step.operation { out = .good() } else { out = .good(n) }
        case .failure(let e):
            let read: Bool
            if case .read = step.operation { read = true } else { read = false }
            out = .checkCondition(sense(for: e, read: read, lba: step.lba, lengthField: step.lengthField))
        }
        if out.status == .checkCondition { pendingSense = out.sense }
        return out
    }

    /// The range an UNMAP releases, from its parameter list (`list`, the data-out of the step
    /// ``begin(_:buffer:transferLength:)`` returned): an ``BlockOperation/unmap`` step of that
    /// range, GOOD for a list that releases nothing, or CHECK CONDITION for a bad list or range.
    /// On this path a list carries at most one descriptor (the block limits VPD page says so).
    public func unmapStep(list: RawSpan) -> SCSIStart {
        let parsed: UnmapParameterList
        do throws(SenseData) {
            parsed = try UnmapParameterList(parsing: list, length: list.byteCount, maxDescriptors: 1)
        } catch {
            return settle(.complete(.checkCondition(error)))
        }
        guard parsed.count == 1 else { return .complete(.good()) }
        let d = parsed.descriptor(0, in: list)
        let g = device.geometry
        guard d.lba < g.blockCount || d.blocks == 0, UInt64(d.blocks) <= g.blockCount - min(d.lba, g.blockCount) else {
            return settle(.complete(.checkCondition(.lbaOutOfRange)))
        }
        guard d.blocks <= limits.maxUnmapBlocks else { return settle(.complete(.checkCondition(.invalidFieldInParameterList(byte: 16)))) }
        guard d.blocks > 0 else { return .complete(.good()) }
        return .block(SCSIBlockStep(operation: .unmap, offset: d.lba * UInt64(g.blockSize), length: Int(d.blocks) * g.blockSize,
                                    lba: d.lba, lengthField: 7))
    }

    /// Clears the sense data REQUEST SENSE would return (a protocol-control reset).
    public func clearPendingSense() { pendingSense = nil }

    /// The checks of ``transfer(read:lba:blocks:fua:lengthField:buffer:transferLength:)``,
    /// returning the operation instead of performing it.
    func step(read: Bool, lba: UInt64, blocks: UInt32, fua: Bool, lengthField: Int, transferLength: Int) -> SCSIStart {
        if let failure = readinessFailure() { return .complete(failure) }
        let g = device.geometry
        guard lba < g.blockCount, UInt64(blocks) <= g.blockCount - lba else { return .complete(.checkCondition(.lbaOutOfRange)) }
        if !read && readOnly { return .complete(.checkCondition(.writeProtected)) }
        guard blocks > 0 else { return .complete(.good()) }
        guard blocks <= limits.maxTransferBlocks else {
            return .complete(.checkCondition(.invalidFieldInCDB(byte: lengthField)))
        }
        let bytes = Int(blocks) * g.blockSize
        guard bytes <= transferLength else { return .complete(.checkCondition(.invalidFieldInCDB(byte: lengthField))) }
        return .block(SCSIBlockStep(operation: read ? .read : .write(fua: fua), offset: lba * UInt64(g.blockSize),
                                    length: bytes, lba: lba, lengthField: lengthField))
    }

    /// Keeps the sense of a CHECK CONDITION for REQUEST SENSE.
    func settle(_ start: SCSIStart) -> SCSIStart {
        if case .complete(let r) = start, r.status == .checkCondition { pendingSense = r.sense }
        return start
    }
}
