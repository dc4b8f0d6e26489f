import PlexusCore
import PlexusRCLAN

/// One LUN's statistics as a control node serves it to one processor ("Management Interface
/// Component").
public struct LUNStatistics: Sendable, Hashable, Codable {
    /// The processor: its node number from a control node's readers
    /// (`ControlNode.storageStatistics()`), the target's processor index from
    /// ``StorageTarget/statistics()``.
    public var processor: UInt32
    public var target: UInt32
    public var lun: UInt32
    /// The mapping's path: a file, a block device or an iSCSI URL.
    public var path: String
    public var statistics: DiskStatistics

    public init(processor: UInt32, target: UInt32, lun: UInt32, path: String, statistics: DiskStatistics) {
        self.processor = processor
        self.target = target
        self.lun = lun
        self.path = path
        self.statistics = statistics
    }

    /// `all` (several control nodes' figures) added per (processor, target, LUN), by processor,
    /// target and LUN; each LUN's path is the first one seen, its percentiles computed from
    /// its added histograms.
    public static func mergedPerLUN(_ all: some Sequence<LUNStatistics>) -> [LUNStatistics] {
        var merged: [LUNStatistics] = []
        for s in all {
            if let i = merged.firstIndex(where: { $0.processor == s.processor && $0.target == s.target && $0.lun == s.lun }) {
                merged[i].statistics.merge(s.statistics)
            } else {
                var first = s
                first.statistics = DiskStatistics.merged([s.statistics])
                merged.append(first)
            }
        }
        return merged.sorted { ($0.processor, $0.target, $0.lun) < ($1.processor, $1.target, $1.lun) }
    }
}

// What a storage target records per (processor, target, LUN): a command is counted from its
// start in a staging slot (its CMD's arrival, or the moment a CMD that queued for a slot got
// one), once the unit has named a block operation (READ, WRITE, SYNCHRONIZE CACHE, UNMAP), until
// its STAT is posted, or until it is dropped without one (counted as an error).
// Commands a unit answers itself (INQUIRY, READ CAPACITY, TEST UNIT READY …), refusals before
// the unit (unmapped LUN, TASK SET FULL) and protocol control are not I/O and are not counted
// here (``StorageTargetCounters`` counts them). On the engine thread; nothing allocates and
// nothing locks per command: the histogram belongs to the mapped unit and is made with the map.
extension StorageTarget {
    /// Every mapped LUN's statistics, by processor index and map order. On the engine thread
    /// (it allocates: a reader's call, not the I/O path).
    public func statistics() -> [LUNStatistics] {
        let now = nowNanos()
        var out: [LUNStatistics] = []
        for s in sessions {
            for u in s.units {
                out.append(LUNStatistics(processor: UInt32(s.index), target: u.target, lun: u.lun, path: u.path,
                                         statistics: u.recorder.snapshot(now: now)))
            }
        }
        return out
    }

    /// The slot's command has a block step: it is counted from now.
    func beginRecording(_ session: TargetSession, slot: Int) {
        let u = session.slots[slot].unit
        guard u >= 0, u < session.units.count else { return }
        let now = nowNanos()
        session.slots[slot].startedAt = now
        session.slots[slot].recording = true
        session.units[u].recorder.started(at: now)
    }

    /// The slot's command ended (its STAT posted, or dropped: `failed`).
    func endRecording(_ session: TargetSession, slot: Int, failed: Bool) {
        guard session.slots[slot].recording else { return }
        session.slots[slot].recording = false
        let u = session.slots[slot].unit
        guard u >= 0, u < session.units.count, let step = session.slots[slot].step else { return }
        let operation: DiskStatistics.Operation
        switch step.operation {
        case .read: operation = .read
        case .write: operation = .write
        case .flush: operation = .flush
        case .unmap: operation = .trim
        }
        session.units[u].recorder.finished(operation, length: UInt64(step.length), failed: failed,
                                           startedAt: session.slots[slot].startedAt, now: nowNanos())
    }

    /// A new map keeps the figures of each (target, LUN) it maps to the same path as `old`
    /// did (every command of the old map has ended: ``abandon(_:)`` ran).
    func keepStatistics(of old: [MappedUnit], in units: inout [MappedUnit]) {
        for i in units.indices {
            if let o = old.first(where: { $0.target == units[i].target && $0.lun == units[i].lun && $0.path == units[i].path }) {
                units[i].recorder = o.recorder
                units[i].recorder.inFlight = 0
            }
        }
    }
}
