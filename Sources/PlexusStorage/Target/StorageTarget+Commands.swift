import PlexusCore
import PlexusRCLAN

// A storage target's commands: admission, access control, the start of SCSI execution, the
// block I/O on the engine's ring, TRANs and the protocol-control operations.

extension StorageTarget {
    /// A decoded CMD: into a free slot, or the queue, or refused with TASK SET FULL.
    func accept(_ c: StorageCommand, session: TargetSession, layer: RCLAN) {
        counters.commands += 1
        guard let slot = session.freeSlot() else {
            if session.enqueue(c) {
                counters.queued += 1
            } else {
                counters.taskSetFull += 1
                var s = StorageStatus(sequence: c.sequence, target: c.target, lun: c.lun, isControl: c.control != nil,
                                      scsiStatus: SCSIStatus.taskSetFull.rawValue)
                s.residual = UInt32(clamping: c.transferLength)
                _ = sendDirect(.status(s), on: session.command, layer: layer)
            }
            return
        }
        start(c, session: session, slot: slot, layer: layer)
    }

    /// Starts `c` in `slot`.
    func start(_ c: StorageCommand, session: TargetSession, slot: Int, layer: RCLAN) {
        session.slots[slot] = TargetSlot()
        session.slots[slot].command = c
        if let op = c.control {
            control(op, c, session: session, slot: slot, layer: layer)
            return
        }
        let u = session.unitIndex(target: c.target, lun: c.lun)
        guard u >= 0 else {
            // Access control: never reaches a backend.
            counters.unmappedRefused += 1
            complete(session, slot: slot, .checkCondition(.logicalUnitNotSupported))
            return
        }
        session.slots[slot].unit = u
        let unit = session.units[u].unit
        let transferLength = Int(min(c.transferLength, UInt64(slotSize)))
        var answer = answers.take()
        let started = unit.begin(c.cdb, buffer: &answer, transferLength: c.segments.totalLength > UInt64(slotSize) ? 0 : transferLength)
        switch started {
        case .complete(let r):
            if c.direction == .dataIn, r.status == .good, r.dataLength > 0, let b = answer.take() {
                let n = min(r.dataLength, transferLength)
                b.withUnsafeBytes { src in
                    _ = session.staging.copy(from: src.baseAddress!, count: n, to: session.staging.offset(ofSlot: slot))
                }
                session.slots[slot].dataLength = n
            }
            complete(session, slot: slot, r)
        case .block(let step):
            session.slots[slot].step = step
            beginRecording(session, slot: slot)
            if case .unmap = step.operation { session.slots[slot].unmapListPending = true }
            switch step.operation {
            case .write, .unmap:
                guard c.direction == .dataOut else {
                    complete(session, slot: slot, .checkCondition(.invalidFieldInCDB(byte: 0)))
                    return
                }
                session.slots[slot].phase = .sendingBuffers
            case .read:
                guard c.direction == .dataIn else {
                    complete(session, slot: slot, .checkCondition(.invalidFieldInCDB(byte: 0)))
                    return
                }
                submit(session, slot: slot, layer: layer)
            default:
                submit(session, slot: slot, layer: layer)
            }
        }
    }

    /// Puts the slot's block operation on the engine's ring. An UNMAP's parameter list is in the
    /// slot now: it becomes the range to release first.
    func submit(_ session: TargetSession, slot: Int, layer: RCLAN) {
        guard var step = session.slots[slot].step else { return }
        if session.slots[slot].unmapListPending {
            session.slots[slot].unmapListPending = false
            let unit = session.units[session.slots[slot].unit].unit
            guard let list = session.staging.bytes(at: session.staging.offset(ofSlot: slot), length: step.length) else {
                complete(session, slot: slot, .checkCondition(.parameterListLengthError))
                return
            }
            switch unit.unmapStep(list: UnsafeRawBufferPointer(list).bytes) {
            case .complete(let r):
                complete(session, slot: slot, r)
                return
            case .block(let range):
                step = range
                session.slots[slot].step = range
            }
        }
        let backend = session.units[session.slots[slot].unit].backend
        guard case .file(let file) = backend else {
            if case .san(let san) = backend { submitSAN(san, step: step, session: session, slot: slot, layer: layer) }
            return
        }
        let token = session.firstToken + UInt32(slot)
        let at = session.staging.offset(ofSlot: slot)
        session.slots[slot].phase = .blockIO
        do throws(BlockIORefusal) {
            switch step.operation {
            case .read:
                try layer.engine.read(file, at: step.offset, length: step.length, into: session.staging.key,
                                      regionOffset: at, token: token)
            case .write(let fua):
                try layer.engine.write(file, at: step.offset, length: step.length, from: session.staging.key,
                                       regionOffset: at, writeThrough: fua, token: token)
            case .flush:
                try layer.engine.flush(file, token: token)
            case .unmap:
                try layer.engine.discard(file, at: step.offset, length: step.length, token: token)
            }
        } catch {
            counters.backendErrors += 1
            let unit = session.units[session.slots[slot].unit].unit
            complete(session, slot: slot, unit.finish(step, result: .failure(Self.blockError(error))))
        }
    }

    /// The engine finished the slot's block operation.
    func blockDone(_ session: TargetSession, slot: Int, result: Int32, layer: RCLAN) {
        guard session.slots[slot].phase == .blockIO, session.slots[slot].step != nil else { return }
        if session.slots[slot].abandoned {
            session.slots[slot].phase = .free
            post(session, layer: layer)
            return
        }
        finishBlock(session, slot: slot, outcome: result >= 0 ? .success(Int(result)) : .failure(.io(-result)),
                    layer: layer)
    }

    /// The slot's block operation (on the ring or the SAN) ended: the bytes it moved, or why not.
    func finishBlock(_ session: TargetSession, slot: Int, outcome result: Result<Int, BlockIOError>, layer: RCLAN) {
        guard let step = session.slots[slot].step else { return }
        let unit = session.units[session.slots[slot].unit].unit
        var outcome = result
        var releases = false
        if case .unmap = step.operation { releases = true }
        if case .success(let n) = outcome, step.length > 0, n != step.length, !releases {
            // A short transfer: the backing file ended (it shrank) or the device failed part way.
            outcome = .failure(.io(5))
        }
        if case .failure = outcome { counters.backendErrors += 1 }
        let r = unit.finish(step, result: outcome)
        if r.status == .good {
            switch step.operation {
            case .read:
                counters.reads += 1
                counters.bytesRead += UInt64(step.length)
                session.slots[slot].dataLength = r.dataLength
            case .write:
                counters.writes += 1
                counters.bytesWritten += UInt64(step.length)
            case .flush:
                counters.flushes += 1
            case .unmap:
                counters.unmaps += 1
            }
        }
        complete(session, slot: slot, r)
        post(session, layer: layer)
    }

    /// A TRAN: segment `index` of a write is in the slot.
    func transferArrived(_ t: StorageTransfer, session: TargetSession, layer: RCLAN) {
        guard let slot = session.slots.firstIndex(where: {
            ($0.phase == .awaitingTransfers || $0.phase == .sendingBuffers) && $0.command.sequence == t.sequence
        }) else {
            counters.malformed += 1
            return
        }
        let c = session.slots[slot].command
        let bit = UInt32(1) << UInt32(t.index & 31)
        guard t.index < c.segments.count, t.index < UInt32(session.slots[slot].cursor),
              t.length == c.segments[Int(t.index)].length, session.slots[slot].transferred & bit == 0
        else {
            counters.malformed += 1
            return
        }
        counters.transfers += 1
        session.slots[slot].transferred |= bit
        let all: UInt32 = c.segments.count == 32 ? .max : (UInt32(1) << UInt32(c.segments.count)) - 1
        if session.slots[slot].transferred == all && session.slots[slot].phase == .awaitingTransfers {
            submit(session, slot: slot, layer: layer)
        }
    }

    /// The slot's command has its result: data-in goes out first, then the STAT.
    func complete(_ session: TargetSession, slot: Int, _ r: SCSIResult) {
        session.slots[slot].result = r
        if r.status == .checkCondition {
            counters.checkConditions += 1
            if r.sense?.key == .dataProtect { counters.dataProtectRefused += 1 }
        }
        let dataIn = session.slots[slot].command.direction == .dataIn && session.slots[slot].dataLength > 0
        session.slots[slot].cursor = 0
        session.slots[slot].phase = dataIn ? .sendingData : .sendingStatus
    }

    // MARK: Protocol control

    /// listLUNs answers with the map's entries (data-in); abort removes a queued command (a
    /// command already holding a slot runs to completion and is answered as usual); reset
    /// drops the (target, LUN)'s queued commands and its pending sense.
    func control(_ op: ControlOperation, _ c: StorageCommand, session: TargetSession, slot: Int, layer: RCLAN) {
        counters.controls += 1
        switch op {
        case .listLUNs:
            let room = Int(min(c.transferLength, UInt64(slotSize)))
            var n = 0
            if let out = session.staging.bytes(at: session.staging.offset(ofSlot: slot), length: room) {
                for u in session.units where n + StorageLimits.lunEntrySize <= room {
                    out.storeBytes(of: u.target.littleEndian, toByteOffset: n, as: UInt32.self)
                    out.storeBytes(of: u.lun.littleEndian, toByteOffset: n + 4, as: UInt32.self)
                    n += StorageLimits.lunEntrySize
                }
            }
            session.slots[slot].dataLength = n
        case .abortCommand:
            session.slots[slot].controlResult = session.removeQueued(sequence: c.controlArgument) ? .done
                : session.slots.contains(where: { $0.phase != .free && $0.command.sequence == c.controlArgument })
                    ? .done : .noSuchCommand
        case .resetLUN:
            let u = session.unitIndex(target: c.target, lun: c.lun)
            if u < 0 {
                session.slots[slot].controlResult = .noSuchLUN
            } else {
                _ = session.removeQueued(target: c.target, lun: c.lun)
                session.units[u].unit.clearPendingSense()
            }
        }
        complete(session, slot: slot, .good(session.slots[slot].dataLength))
    }

    /// A CMD or other message that could not be decoded: counted; a CMD whose header is
    /// readable is answered with a control STAT ``ControlResult/malformedCommand``.
    func refuse(_ message: RawSpan, error: StorageMessageError, session: TargetSession, layer: RCLAN) {
        counters.malformed += 1
        malformedByKind[error.kind.rawValue] += 1
        guard let h = try? StorageHeader(parsing: message), h.type == .command else { return }
        let s = StorageStatus(sequence: h.sequence, target: h.target, lun: h.lun, isControl: true,
                              scsiStatus: SCSIStatus.checkCondition.rawValue, controlResult: .malformedCommand)
        if sendDirect(.status(s), on: session.command, layer: layer) { counters.malformedAnswered += 1 }
    }

    /// The processor's end of its RVIs is gone (they failed its messages, or reset): its queued
    /// commands are dropped, its slots freed (a slot whose block operation is on the ring when
    /// that completes), nothing more is sent for them.
    func abandon(_ session: TargetSession) {
        counters.abandoned += UInt64(session.waitingCount)
        session.waitingCount = 0
        for i in session.slots.indices {
            endRecording(session, slot: i, failed: true)
            switch session.slots[i].phase {
            case .free: continue
            case .blockIO: session.slots[i].abandoned = true
            default: session.slots[i].phase = .free
            }
            counters.abandoned += 1
        }
    }

    static func blockError(_ refusal: BlockIORefusal) -> BlockIOError {
        switch refusal {
        case .readOnly: .readOnly
        case .outOfRange, .badLength: .outOfRange
        case .misaligned: .misaligned
        case .stopping, .noSuchFile: .notReady
        default: .io(11)
        }
    }
}
