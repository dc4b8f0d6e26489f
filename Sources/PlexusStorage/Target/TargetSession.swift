import PlexusCore
import PlexusRCLAN

/// Where one command of a storage target is.
enum TargetPhase: Sendable, Hashable {
    case free
    /// Its block operation is on the engine's ring.
    case blockIO
    /// A write: BUFs are being sent (``TargetSlot/cursor`` is the next segment).
    case sendingBuffers
    /// A write: every BUF is out; waiting for the segments' TRANs.
    case awaitingTransfers
    /// Data-in: RDMA WRITEs are being posted (``TargetSlot/cursor`` bytes are out).
    case sendingData
    /// Data-in: every write is posted; waiting for the data RVI's acknowledgement to cover the last.
    case awaitingAcknowledgement
    /// The STAT is ready to go on the command RVI.
    case sendingStatus
}

/// One command in flight at a storage target: a staging slot and the command's state. Held in
/// a fixed table; nothing in it allocates.
struct TargetSlot {
    var phase = TargetPhase.free
    var command = StorageCommand(sequence: 0, target: 0, lun: 0, direction: .noData, cdb: CDB())
    /// The unit it runs on (an index in the session's units), or -1.
    var unit = -1
    /// An UNMAP whose parameter list is still to arrive (its step names no range yet).
    var unmapListPending = false
    var step: SCSIBlockStep?
    var result = SCSIResult.good()
    /// Data-in bytes staged in the slot, to RDMA-WRITE into the command's segments.
    var dataLength = 0
    /// Bytes posted (data-in) or the next BUF's segment index (data-out).
    var cursor = 0
    /// The segments whose TRAN has arrived (bit i: segment i).
    var transferred: UInt32 = 0
    /// The data RVI's message number of the last RDMA WRITE posted.
    var lastDataMessage: UInt64 = 0
    /// The STAT's control result (``ControlResult/done`` for SCSI commands).
    var controlResult = ControlResult.done
    /// The processor's RVIs failed or reset while the block operation was on the ring: the
    /// slot is freed when it completes, and nothing is sent.
    var abandoned = false
    /// ``PlexusCore/nowNanos()`` after which a write still waiting for TRANs is dropped.
    var transferDeadline: UInt64 = 0
    /// ``PlexusCore/nowNanos()`` after which a command on an iSCSI LUN that has not answered
    /// ends with NOT READY (and its session is taken down).
    var sanDeadline: UInt64 = 0
    /// The command is counted in its unit's statistics (it has a block step), since
    /// ``PlexusCore/nowNanos()`` `startedAt` (StorageTarget+Statistics.swift).
    var recording = false
    var startedAt: UInt64 = 0
}

/// What serves a mapped unit's I/O.
enum UnitBackend {
    /// A file or block device on the engine's ring.
    case file(BlockFile)
    /// A LUN on an iSCSI SAN.
    case san(ISCSISession)
}

/// One logical unit a processor's map names.
struct MappedUnit {
    let target: UInt32
    let lun: UInt32
    let unit: SCSILogicalUnit
    let backend: UnitBackend
    /// The mapping's path (a file, a device or an iSCSI URL).
    let path: String
    /// What the unit has done for this processor (made with the map, kept by a new map that
    /// keeps the same (target, LUN, path)).
    var recorder = DiskRecorder()

    /// The backing file, for a unit on the engine's ring.
    var file: BlockFile? {
        if case .file(let f) = backend { return f }
        return nil
    }

    /// The iSCSI session, for a unit on a SAN.
    var san: ISCSISession? {
        if case .san(let s) = backend { return s }
        return nil
    }
}

/// The state a storage target holds for one processor: its two RVIs, its map, its staging
/// region and slots, and the CMDs waiting for a slot.
final class TargetSession {
    let index: Int
    let command: RVI
    let data: RVI
    /// The units of its map (replaced whole by ``StorageTarget/setMap(ofProcessor:_:layer:)``).
    var units: [MappedUnit]
    let staging: StagingMemory
    /// The first block I/O token of the slots of this processor's session (token = first + slot).
    let firstToken: UInt32
    var slots: [TargetSlot]
    /// CMDs waiting for a slot: a ring over preallocated storage.
    var waiting: [StorageCommand]
    var waitingHead = 0
    var waitingCount = 0
    /// The data RVI's acknowledged message number.
    var dataAcknowledged: UInt64 = 0

    init(index: Int, command: RVI, data: RVI, units: [MappedUnit], staging: StagingMemory, slots: Int,
         queueDepth: Int, firstToken: UInt32) {
        self.index = index
        self.command = command
        self.data = data
        self.units = units
        self.staging = staging
        self.firstToken = firstToken
        self.slots = Array(repeating: TargetSlot(), count: slots)
        self.waiting = Array(repeating: StorageCommand(sequence: 0, target: 0, lun: 0, direction: .noData, cdb: CDB()),
                             count: queueDepth)
    }

    /// The unit mapped at (target, LUN), or -1.
    func unitIndex(target: UInt32, lun: UInt32) -> Int {
        for (i, u) in units.enumerated() where u.target == target && u.lun == lun { return i }
        return -1
    }

    func freeSlot() -> Int? {
        for i in slots.indices where slots[i].phase == .free { return i }
        return nil
    }

    /// Queues `command`; false when the queue is full.
    func enqueue(_ command: StorageCommand) -> Bool {
        guard waitingCount < waiting.count else { return false }
        waiting[(waitingHead + waitingCount) % waiting.count] = command
        waitingCount += 1
        return true
    }

    func dequeue() -> StorageCommand? {
        guard waitingCount > 0 else { return nil }
        let c = waiting[waitingHead]
        waitingHead = (waitingHead + 1) % waiting.count
        waitingCount -= 1
        return c
    }

    /// Removes the queued command with `sequence` (an abort); false when none is queued.
    func removeQueued(sequence: UInt64) -> Bool {
        var found = false
        var kept = 0
        for k in 0..<waitingCount {
            let c = waiting[(waitingHead + k) % waiting.count]
            if !found && c.sequence == sequence { found = true; continue }
            waiting[(waitingHead + kept) % waiting.count] = c
            kept += 1
        }
        waitingCount = kept
        return found
    }

    /// Removes every queued command for (target, LUN) (a reset); how many.
    func removeQueued(target: UInt32, lun: UInt32) -> Int {
        var kept = 0
        for k in 0..<waitingCount {
            let c = waiting[(waitingHead + k) % waiting.count]
            if c.target == target && c.lun == lun { continue }
            waiting[(waitingHead + kept) % waiting.count] = c
            kept += 1
        }
        defer { waitingCount = kept }
        return waitingCount - kept
    }
}
