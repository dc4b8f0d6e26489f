// The commands of a logical unit that go to its block device: READ, WRITE, SYNCHRONIZE CACHE
// (in SCSILogicalUnit.swift) and UNMAP, and how a device error becomes sense data.

extension SCSILogicalUnit {
    /// READ or WRITE of `blocks` from `lba`, into or from the start of `buffer`.
    func transfer(read: Bool, lba: UInt64, blocks: UInt32, fua: Bool, lengthField: Int, buffer: inout IOBuffer?,
                  transferLength: Int) -> SCSIResult {
        if let failure = readinessFailure() { return failure }
        let g = device.geometry
        guard lba < g.blockCount, UInt64(blocks) <= g.blockCount - lba else { return .checkCondition(.lbaOutOfRange) }
        if !read && readOnly { return .checkCondition(.writeProtected) }
        guard blocks > 0 else { return .good() }
        guard blocks <= limits.maxTransferBlocks else { return .checkCondition(.invalidFieldInCDB(byte: lengthField)) }
        let bytes = Int(blocks) * g.blockSize
        // The initiator's buffer must hold the whole transfer.
        guard bytes <= transferLength, bytes <= capacity(of: buffer) else {
            return .checkCondition(.invalidFieldInCDB(byte: lengthField))
        }
        let request = BlockRequest(read ? .read : .write(fua: fua), offset: lba * UInt64(g.blockSize), length: bytes,
                                   buffer: buffer.take(), tag: takeTag())
        return complete(device.perform(request), buffer: &buffer, read: read, lba: lba, lengthField: lengthField)
    }

    /// UNMAP: releases every range of the parameter list at the start of `buffer`, after
    /// checking them all (a list with one bad range releases nothing).
    func unmap(parameterListLength: Int, buffer: inout IOBuffer?, transferLength: Int) -> SCSIResult {
        guard device.geometry.canUnmap else { return .checkCondition(.invalidOperationCode) }
        if readOnly { return .checkCondition(.writeProtected) }
        if let failure = readinessFailure() { return failure }
        guard parameterListLength > 0 else { return .good() }
        guard parameterListLength <= transferLength, let b = buffer.take() else {
            return .checkCondition(.parameterListLengthError)
        }
        let result = unmapRanges(listIn: b, parameterListLength: parameterListLength)
        buffer = consume b
        return result
    }

    func unmapRanges(listIn b: borrowing IOBuffer, parameterListLength: Int) -> SCSIResult {
        let list: UnmapParameterList
        do throws(SenseData) {
            list = try UnmapParameterList(parsing: b.bytes, length: parameterListLength,
                                          maxDescriptors: Int(limits.maxUnmapDescriptors))
        } catch {
            return .checkCondition(error)
        }
        let g = device.geometry
        var total: UInt64 = 0
        for i in 0..<list.count {
            let d = list.descriptor(i, in: b.bytes)
            guard d.lba < g.blockCount || d.blocks == 0, UInt64(d.blocks) <= g.blockCount - min(d.lba, g.blockCount) else {
                return .checkCondition(.lbaOutOfRange)
            }
            total += UInt64(d.blocks)
            guard total <= UInt64(limits.maxUnmapBlocks) else {
                return .checkCondition(.invalidFieldInParameterList(byte: 16 + 16 * i))
            }
        }
        for i in 0..<list.count {
            let d = list.descriptor(i, in: b.bytes)
            guard d.blocks > 0 else { continue }
            var none: IOBuffer? = nil
            let result = complete(device.perform(BlockRequest(.unmap, offset: d.lba * UInt64(g.blockSize),
                                                              length: Int(d.blocks) * g.blockSize, tag: takeTag())),
                                  buffer: &none, read: false, lba: d.lba, lengthField: 7)
            guard result.status == .good else { return result }
        }
        return .good(parameterListLength)
    }

    /// The result of a device request: GOOD with the bytes it moved (0 for a flush or unmap),
    /// or CHECK CONDITION with the sense its error maps to. Puts the request's buffer (if it
    /// carried one) back into `buffer`.
    func complete(_ completion: consuming BlockCompletion, buffer: inout IOBuffer?, read: Bool, lba: UInt64,
                  lengthField: Int) -> SCSIResult {
        let result = completion.result
        // Only a read or write carried the buffer; a flush or unmap leaves the caller's alone.
        var moved = false
        if let b = completion.buffer.take() {
            buffer = consume b
            moved = true
        }
        switch result {
        case .success(let n):
            return .good(moved ? n : 0)
        case .failure(let e):
            return .checkCondition(sense(for: e, read: read, lba: lba, lengthField: lengthField))
        }
    }

    /// The sense data of a device error.
    func sense(for error: BlockIOError, read: Bool, lba: UInt64, lengthField: Int) -> SenseData {
        switch error {
        case .outOfRange: .lbaOutOfRange
        case .readOnly: .writeProtected
        case .misaligned: .invalidFieldInCDB(byte: 2)
        case .bufferTooSmall: .invalidFieldInCDB(byte: lengthField)
        case .unsupported: .invalidOperationCode
        case .noSpace: .spaceAllocationFailed
        case .notReady: .notReady
        case .io: read ? .unrecoveredReadError(lba: lba) : .writeError(lba: lba)
        }
    }
}
