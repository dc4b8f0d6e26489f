import CPlexus
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Block I/O on the engine's ring
//
// The backends of a storage target: reads, writes, flushes and discards on backing files and
// block devices, submitted as SQEs on the engine's own ring and completed on its thread, where
// the storage protocol runs. Each operation takes one of `blockIOQueueDepth` preallocated
// records (none free: `.busy`) and completes into the driver's `blockIOCompleted`. The memory
// is the engine's: a range of a registered region (kept registered while I/O on it is in
// flight) or a pool frame's payload (the engine holds the frame until the completion hands it
// back). Nothing allocates or locks per operation.

extension Engine {
    /// The largest read, write or discard: 1 GiB.
    public static let maxBlockIOLength = 1 << 30
    /// Backing files an engine can hold open at once.
    public static let maxBlockFiles = 1024

    // MARK: Opening and closing (control plane: may block briefly and allocate)

    /// Opens a backing file or block device for I/O on this engine's ring.
    ///
    /// With `direct` (the default) the file is opened with `O_DIRECT` where the file system does
    /// direct I/O, and buffered otherwise; ``BlockFile/isDirect`` and
    /// ``BlockFile/bufferedBecause`` say which and why. The path must exist and be a regular file
    /// or a block device; its size is read once, here.
    /// - Throws: ``PlexusError`` when the engine is stopping, the path cannot be opened or is
    ///   neither kind, or every slot is in use (``maxBlockFiles``).
    public func openBlockFile(_ path: String, access: BlockFile.Access = .readWrite, direct: Bool = true)
        throws(PlexusError) -> BlockFile
    {
        guard !stopping else { throw PlexusError(.engineStopped, "the engine is stopping") }
        var index = blockFiles.firstIndex { !$0.open && $0.fd < 0 }
        if index == nil && blockFiles.count >= Self.maxBlockFiles {
            throw PlexusError(.resourceExhausted, "all \(Self.maxBlockFiles) block file slots are in use")
        }
        let b = try OpenedBacking.open(path, access: access, direct: direct)
        let generation = index.map { blockFiles[$0].generation } ?? 0
        let slot = BlockFileSlot(
            fd: b.fd, generation: generation, open: true, kind: b.kind, readOnly: access == .readOnly, size: b.size,
            offsetAlignment: b.offsetAlignment, memoryAlignment: b.memoryAlignment)
        if let i = index {
            blockFiles[i] = slot
        } else {
            index = blockFiles.count
            blockFiles.append(slot)
        }
        return BlockFile(
            id: UInt32(generation) << 16 | UInt32(index!), path: path, kind: b.kind, access: access,
            isDirect: b.isDirect, bufferedBecause: b.bufferedBecause, size: b.size,
            logicalBlockSize: b.logicalBlockSize, physicalBlockSize: b.physicalBlockSize,
            offsetAlignment: b.offsetAlignment, memoryAlignment: b.memoryAlignment)
    }

    /// Closes a backing file: further requests on it are refused (``BlockIORefusal/noSuchFile``),
    /// what is in flight completes as usual, and the descriptor is closed after the last
    /// completion. Closing a file already closed does nothing.
    public func closeBlockFile(_ file: BlockFile) {
        guard let i = blockFileIndex(file) else { return }
        blockFiles[i].open = false
        closeBlockFileIfIdle(i)
    }

    /// The block I/O counters of this engine.
    public var blockIOCounters: BlockIOCounters { blockCounters }

    // MARK: Submission (data path: no allocation, no lock)

    /// Reads `length` bytes at `fileOffset` of `file` into `region` from `regionOffset`.
    ///
    /// Completes into ``EngineDriver/blockIOCompleted(token:result:engine:)`` with `token` and
    /// the bytes read: all of them, or fewer only where the file ends. The region stays
    /// registered until then (deregistering it is refused).
    /// - Throws: ``BlockIORefusal``; nothing was queued.
    /// - Complexity: O(1).
    public func read(_ file: BlockFile, at fileOffset: UInt64, length: Int, into region: RegionKey,
                     regionOffset: Int = 0, token: UInt32) throws(BlockIORefusal) {
        try submitOnRegion(.read, file, fileOffset, length, region, regionOffset, writeThrough: false, token)
    }

    /// Writes `length` bytes of `region` from `regionOffset` to `file` at `fileOffset`. With
    /// `writeThrough` (SCSI's FUA) the write completes only once its data is on stable storage
    /// (`RWF_DSYNC`).
    ///
    /// Completes into ``EngineDriver/blockIOCompleted(token:result:engine:)`` with `token` and
    /// the bytes written (all of them, or an error).
    /// - Throws: ``BlockIORefusal``; nothing was queued.
    /// - Complexity: O(1).
    public func write(_ file: BlockFile, at fileOffset: UInt64, length: Int, from region: RegionKey,
                      regionOffset: Int = 0, writeThrough: Bool = false, token: UInt32) throws(BlockIORefusal) {
        try submitOnRegion(.write, file, fileOffset, length, region, regionOffset, writeThrough: writeThrough, token)
    }

    /// Reads `length` bytes (at most a frame's capacity) at `fileOffset` of `file` into a pool
    /// frame's payload.
    ///
    /// On success `frame` is left nil: the engine holds it until the completion hands it back to
    /// ``EngineDriver/blockIOCompleted(returning:token:result:engine:)``, its ``Frame/length``
    /// set to the bytes read. On an error it still holds the frame. A payload is 64-byte aligned,
    /// so a file whose direct I/O needs more refuses it (``BlockIORefusal/misaligned``).
    /// - Complexity: O(1).
    public func read(_ file: BlockFile, at fileOffset: UInt64, length: Int, into frame: inout Frame?,
                     token: UInt32) throws(BlockIORefusal) {
        try submitOnFrame(.read, file, fileOffset, length: length, &frame, writeThrough: false, token)
    }

    /// Writes a pool frame's ``Frame/length`` payload bytes to `file` at `fileOffset`, and hands
    /// the frame back, unchanged, to ``EngineDriver/blockIOCompleted(returning:token:result:engine:)``.
    /// On success `frame` is left nil; on an error it still holds the frame.
    /// - Complexity: O(1).
    public func write(_ file: BlockFile, at fileOffset: UInt64, from frame: inout Frame?, writeThrough: Bool = false,
                      token: UInt32) throws(BlockIORefusal) {
        try submitOnFrame(.write, file, fileOffset, length: nil, &frame, writeThrough: writeThrough, token)
    }

    /// Makes the file's written data durable (`fdatasync`): completes with 0 or -errno.
    /// - Complexity: O(1).
    public func flush(_ file: BlockFile, token: UInt32) throws(BlockIORefusal) {
        if stopping { throw .stopping }
        guard let f = blockFileIndex(file) else { throw .noSuchFile }
        try queue(BlockIORecord(token: token, file: UInt16(f), operation: .flush))
    }

    /// Discards `length` bytes at `fileOffset`: a file gets a hole punched there
    /// (`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`: it reads back as zeros and keeps its size),
    /// a block device a discard (`BLOCK_URING_CMD_DISCARD`, kernel 6.12 and later; an older
    /// kernel, or a device without discard, completes it with -EOPNOTSUPP or -EINVAL, and what
    /// a discarded range then reads is the device's). Completes with 0 or -errno.
    /// - Complexity: O(1).
    public func discard(_ file: BlockFile, at fileOffset: UInt64, length: Int, token: UInt32) throws(BlockIORefusal) {
        if stopping { throw .stopping }
        guard let f = blockFileIndex(file) else { throw .noSuchFile }
        let s = blockFiles[f]
        if s.readOnly { throw .readOnly }
        // A block device discards whole logical blocks; a file punches any range.
        let alignment = s.kind == .blockDevice ? max(s.offsetAlignment, 512) : 1
        if let e = BlockIOPlan.refusal(fileOffset: fileOffset, length: length, fileSize: s.size,
                                       offsetAlignment: alignment, memoryAddress: 0, memoryAlignment: 1) {
            throw e
        }
        try queue(BlockIORecord(token: token, file: UInt16(f), operation: .discard, fileOffset: fileOffset,
                                length: UInt32(length)))
    }

    // MARK: Internals

    /// The slot of an open file named by `file`, or nil.
    @inline(__always)
    func blockFileIndex(_ file: BlockFile) -> Int? {
        let i = Int(file.id & 0xFFFF)
        guard i < blockFiles.count, blockFiles[i].open, blockFiles[i].generation == UInt16(file.id >> 16) else {
            return nil
        }
        return i
    }

    /// Checks what every read and write needs; returns the file's slot.
    @inline(__always)
    func admitTransfer(_ op: BlockIOOperation, _ file: BlockFile, _ fileOffset: UInt64, _ length: Int,
                       address: () -> UInt) throws(BlockIORefusal) -> Int {
        if stopping { throw .stopping }
        guard let f = blockFileIndex(file) else { throw .noSuchFile }
        let s = blockFiles[f]
        if op == .write && s.readOnly { throw .readOnly }
        if let e = BlockIOPlan.refusal(fileOffset: fileOffset, length: length, fileSize: s.size,
                                       offsetAlignment: s.offsetAlignment, memoryAddress: address(),
                                       memoryAlignment: s.memoryAlignment) {
            throw e
        }
        return f
    }

    func submitOnRegion(_ op: BlockIOOperation, _ file: BlockFile, _ fileOffset: UInt64, _ length: Int,
                        _ key: RegionKey, _ regionOffset: Int, writeThrough: Bool, _ token: UInt32) throws(BlockIORefusal) {
        if stopping { throw .stopping }
        guard length > 0, length <= Self.maxBlockIOLength else { throw .badLength }
        guard let region = regions.lookup(key.rawValue) else { throw .noSuchRegion }
        guard regionOffset >= 0, regionOffset <= region.size, length <= region.size - regionOffset else {
            throw .outsideMemory
        }
        let f = try admitTransfer(op, file, fileOffset, length) {
            UInt(bitPattern: region.memory.base) &+ UInt(regionOffset)
        }
        try queue(BlockIORecord(token: token, file: UInt16(f), operation: op, memory: .region,
                                writeThrough: writeThrough, memoryID: key.rawValue, memoryOffset: regionOffset,
                                fileOffset: fileOffset, length: UInt32(length)))
        region.blockIOInFlight += 1
    }

    func submitOnFrame(_ op: BlockIOOperation, _ file: BlockFile, _ fileOffset: UInt64, length: Int?,
                       _ frame: inout Frame?, writeThrough: Bool, _ token: UInt32) throws(BlockIORefusal) {
        guard let f = frame.take() else { throw .noFrame }
        precondition(f.pool === pool, "block I/O: the frame comes from another engine's pool")
        let slot = f.poolSlot
        let bytes = length ?? f.length
        do throws(BlockIORefusal) {
            if bytes > FrameLayout.maxPayload { throw .outsideMemory }
            let fi = try admitTransfer(op, file, fileOffset, bytes) { UInt(bitPattern: pool.payloadPointer(slot)) }
            try queue(BlockIORecord(token: token, file: UInt16(fi), operation: op, memory: .frame,
                                    writeThrough: writeThrough, memoryID: slot, fileOffset: fileOffset,
                                    length: UInt32(bytes)))
        } catch {
            frame = consume f
            throw error
        }
        _ = f.surrender()  // the engine holds the slot until the completion hands the frame back
    }

    /// Takes a record for `r` and queues its SQE (the last check: no record free is `.busy`).
    @inline(__always)
    func queue(_ r: BlockIORecord) throws(BlockIORefusal) {
        guard let i = blockFree.pop() else {
            blockCounters.busy &+= 1
            throw .busy
        }
        blockRecords[i] = r
        blockFiles[Int(r.file)].inFlight += 1
        blockCounters.inFlight += 1
        prepareBlockSQE(i)
    }

    /// Queues the SQE of record `i`, from its `done` bytes on.
    func prepareBlockSQE(_ i: Int) {
        let r = blockRecords[i]
        let fd = blockFiles[Int(r.file)].fd
        let sqe = nextSQE()
        switch r.operation {
        case .read, .write:
            let bytes = r.length - r.done
            let offset = r.fileOffset + UInt64(r.done)
            let fixed = r.memory == .frame && fixedBuffers
            let address: UnsafeMutableRawPointer
            if r.memory == .frame {
                address = pool.payloadPointer(r.memoryID) + Int(r.done)
            } else {
                address = regions.lookup(r.memoryID)!.memory.base + r.memoryOffset + Int(r.done)
            }
            if r.operation == .read {
                if fixed {
                    io_uring_prep_read_fixed(sqe, fd, address, bytes, offset, 0)
                } else {
                    io_uring_prep_read(sqe, fd, address, bytes, offset)
                }
            } else {
                if fixed {
                    io_uring_prep_write_fixed(sqe, fd, address, bytes, offset, 0)
                } else {
                    io_uring_prep_write(sqe, fd, address, bytes, offset)
                }
                if r.writeThrough { sqe.pointee.rw_flags = UInt32(plx_RWF_DSYNC) }
            }
        case .flush:
            io_uring_prep_fsync(sqe, fd, UInt32(plx_IORING_FSYNC_DATASYNC))
        case .discard:
            if blockFiles[Int(r.file)].kind == .blockDevice {
                plx_prep_block_discard(sqe, fd, r.fileOffset, UInt64(r.length))
            } else {
                io_uring_prep_fallocate(sqe, fd, Int32(plx_FALLOC_FL_PUNCH_HOLE | plx_FALLOC_FL_KEEP_SIZE),
                                        Int(r.fileOffset), Int(r.length))
            }
        }
        io_uring_sqe_set_data64(sqe, Self.data(.blockIO, UInt64(i)))
        inflight += 1
    }

    /// A completion of record `i`'s SQE: continue a short transfer, or finish the operation.
    func onBlockIO(_ i: Int, res: Int32) {
        inflight -= 1
        var r = blockRecords[i]
        var result = res
        if r.operation == .read || r.operation == .write {
            switch BlockIOPlan.step(done: r.done, length: r.length, res: res, stopping: stopping) {
            case .resubmit(let done):
                r.done = done
                blockRecords[i] = r
                blockCounters.resubmissions &+= 1
                prepareBlockSQE(i)
                return
            case .complete(let total):
                result = total
            }
        }
        blockFree.push(i)
        blockCounters.inFlight -= 1
        blockFiles[Int(r.file)].inFlight -= 1
        countBlockIO(r, result: result)
        if r.memory == .region { regions.lookup(r.memoryID)?.blockIOInFlight -= 1 }
        closeBlockFileIfIdle(Int(r.file))
        if r.memory == .frame {
            var frame = Frame(pool: pool, slot: r.memoryID)
            frame.length = r.operation == .read ? Int(max(result, 0)) : Int(r.length)
            if let driver {
                driver.blockIOCompleted(returning: frame, token: r.token, result: result, engine: self)
            }
        } else {
            driver?.blockIOCompleted(token: r.token, result: result, engine: self)
        }
    }

    @inline(__always)
    func countBlockIO(_ r: BlockIORecord, result: Int32) {
        if result < 0 { blockCounters.errors &+= 1 }
        let bytes = UInt64(max(result, 0))
        switch r.operation {
        case .read:
            blockCounters.reads &+= 1
            blockCounters.bytesRead &+= bytes
            if result >= 0 && UInt32(result) < r.length { blockCounters.shortReads &+= 1 }
        case .write:
            blockCounters.writes &+= 1
            blockCounters.bytesWritten &+= bytes
        case .flush: blockCounters.flushes &+= 1
        case .discard: blockCounters.discards &+= 1
        }
    }

    func closeBlockFileIfIdle(_ i: Int) {
        guard !blockFiles[i].open, blockFiles[i].inFlight == 0, blockFiles[i].fd >= 0 else { return }
        _ = Glibc.close(blockFiles[i].fd)
        blockFiles[i].fd = -1
        blockFiles[i].generation &+= 1
    }

    /// At shutdown, after every completion: close what is still open.
    func closeAllBlockFiles() {
        for i in blockFiles.indices where blockFiles[i].fd >= 0 {
            blockFiles[i].open = false
            closeBlockFileIfIdle(i)
        }
    }
}
