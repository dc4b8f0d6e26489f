import PlexusCore

extension StorageMessage {
    /// Writes this message at the start of `output` (a frame's payload in registered memory, or
    /// any buffer) and returns its size. Allocates nothing.
    ///
    /// Throws ``StorageMessageError/outputTooSmall(needed:available:)`` when `output` is shorter
    /// than ``encodedSize``, and the decoder's own error for a value the other end would refuse
    /// (a SCSI command without a CDB, segments without a direction, a transfer over 32 bits …);
    /// nothing is written then.
    @discardableResult
    public func encode(into output: inout MutableRawSpan) throws(StorageMessageError) -> Int {
        let size = encodedSize
        guard output.byteCount >= size else { throw .outputTooSmall(needed: size, available: output.byteCount) }
        if case .command(let c) = self { try c.validate() }
        if case .status(let s) = self, !s.isControl && s.controlResult != .done {
            throw .badControlResult(s.controlResult.rawValue)
        }
        let h = header
        output.storeByte(StorageLimits.version, at: 0)
        output.storeByte(h.type.rawValue, at: 1)
        output.storeLE(h.flags, at: 2)
        output.storeLE(UInt32(size), at: 4)
        output.storeLE(h.sequence, at: 8)
        output.storeLE(h.target, at: 16)
        output.storeLE(h.lun, at: 20)
        switch self {
        case .command(let c):
            output.storeByte(UInt8(c.cdb.count), at: 24)
            output.storeByte(UInt8(c.segments.count), at: 25)
            output.storeByte(c.control?.rawValue ?? 0, at: 26)
            output.storeByte(0, at: 27)
            output.storeLE(UInt32(c.transferLength), at: 28)
            for i in 0..<CDB.maxLength { output.storeByte(c.cdb[i], at: 32 + i) }
            output.storeLE(c.controlArgument, at: 48)
            for (i, s) in c.segments.enumerated() {
                let o = StorageLimits.commandFixedSize + StorageLimits.segmentSize * i
                output.storeLE(s.key.rawValue, at: o)
                output.storeLE(s.length, at: o + 4)
                output.storeLE(s.offset, at: o + 8)
            }
        case .status(let s):
            output.storeByte(s.scsiStatus, at: 24)
            output.storeByte(UInt8(s.sense.count), at: 25)
            output.storeByte(s.controlResult.rawValue, at: 26)
            output.storeByte(0, at: 27)
            output.storeLE(s.residual, at: 28)
            for i in 0..<s.sense.count { output.storeByte(s.sense[i], at: StorageLimits.statusFixedSize + i) }
        case .buffer(let b):
            output.storeLE(b.index, at: 24)
            output.storeLE(b.region.key.rawValue, at: 28)
            output.storeLE(b.region.offset, at: 32)
            output.storeLE(b.region.length, at: 40)
            output.storeLE(UInt32(0), at: 44)
        case .transfer(let t):
            output.storeLE(t.index, at: 24)
            output.storeLE(t.length, at: 28)
        }
        return size
    }

    /// ``encode(into:)`` into raw memory (a frame's payload from
    /// ``PlexusCore/Frame/withUnsafeMutablePayload(_:)``).
    @discardableResult
    public func encode(into output: UnsafeMutableRawBufferPointer) throws(StorageMessageError) -> Int {
        var span = output.mutableBytes
        return try encode(into: &span)
    }

    /// The encoding as a new array (tests, tools; allocates).
    public func encoded() throws(StorageMessageError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: encodedSize)
        var failure: StorageMessageError?
        out.withUnsafeMutableBytes { raw in
            do throws(StorageMessageError) { try encode(into: raw) } catch { failure = error }
        }
        if let failure { throw failure }
        return out
    }
}
