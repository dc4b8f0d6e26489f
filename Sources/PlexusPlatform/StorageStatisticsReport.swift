import PlexusCore
import PlexusStorage

/// The storage statistics the control nodes published, per LUN, per processor and per PAN
/// ("Management Interface Component": I/O operations, bytes, reads, writes, the time I/O was
/// in progress; with errors and latency p50/p99). `GET /v1/storage/stats` and
/// `plexus storage stats` answer with it.
///
/// Each figure adds the two control nodes' (a processor's commands go to one or the other, and
/// to the other when one dies): counters and busy time are summed and latency histograms added,
/// so every percentile is computed over the commands it covers. A LUN's PAN and personality are
/// the store's map now: the personality whose processor holds that (target, LUN); a processor
/// that holds no personality, or a LUN no longer mapped, counts under no PAN.
public struct StorageStatisticsReport: Sendable, Hashable, Codable {
    /// A control node that published, and when (ms since 1970): a control node that stopped
    /// leaves its last figures; one that restarts starts again from zero.
    public struct Source: Sendable, Hashable, Codable {
        public var control: NodeNumber
        public var updatedMs: Int64
    }

    /// One (processor, target, LUN), both control nodes' figures added.
    public struct LUN: Sendable, Hashable, Codable {
        public var processor: NodeNumber
        public var target: UInt32
        public var lun: UInt32
        public var path: String
        public var pan: String?
        public var personality: String?
        public var statistics: DiskStatistics
    }

    /// One processor's LUNs added.
    public struct ProcessorTotal: Sendable, Hashable, Codable {
        public var processor: NodeNumber
        public var pan: String?
        public var personality: String?
        public var statistics: DiskStatistics
    }

    /// One PAN's LUNs added.
    public struct PANTotal: Sendable, Hashable, Codable {
        public var pan: String
        public var statistics: DiskStatistics
    }

    /// The control nodes whose rows were read.
    public var controls: [Source]
    /// Every (processor, target, LUN) selected, by processor, target and LUN.
    public var luns: [LUN]
    /// The selected LUNs added per processor, in processor order.
    public var processors: [ProcessorTotal]
    /// The selected LUNs added per PAN (LUNs under no PAN are left out), by name.
    public var pans: [PANTotal]

    /// Adds up `published` (rows of both control nodes) with the PANs of `map` (the store's
    /// storage map), keeping only PAN `pan` or processor `processor` when given.
    public init(published: [PublishedLUNStatistics], map: [StorageAssignment], pan: String? = nil,
                processor: NodeNumber? = nil) {
        var sources: [NodeNumber: Int64] = [:]
        for row in published { sources[row.control] = max(sources[row.control] ?? 0, row.updatedMs) }
        var luns = LUNStatistics.mergedPerLUN(published.map(\.lun)).map { s in
            let owner = map.first { $0.node?.rawValue == s.processor && $0.mapping.target == s.target && $0.mapping.lun == s.lun }
            return LUN(processor: NodeNumber(s.processor), target: s.target, lun: s.lun, path: s.path,
                       pan: owner?.pan, personality: owner?.personality, statistics: s.statistics)
        }
        luns = luns.filter { l in (pan.map { l.pan == $0 } ?? true) && (processor.map { l.processor == $0 } ?? true) }
        controls = sources.map { Source(control: $0.key, updatedMs: $0.value) }.sorted { $0.control < $1.control }
        self.luns = luns
        var byProcessor: [ProcessorTotal] = []
        for l in luns {
            if let i = byProcessor.firstIndex(where: { $0.processor == l.processor }) {
                byProcessor[i].statistics.merge(l.statistics)
                if byProcessor[i].pan == nil { byProcessor[i].pan = l.pan }
                if byProcessor[i].personality == nil { byProcessor[i].personality = l.personality }
            } else {
                byProcessor.append(ProcessorTotal(processor: l.processor, pan: l.pan, personality: l.personality,
                                                  statistics: l.statistics))
            }
        }
        processors = byProcessor
        var byPAN: [PANTotal] = []
        for l in luns {
            guard let p = l.pan else { continue }
            if let i = byPAN.firstIndex(where: { $0.pan == p }) {
                byPAN[i].statistics.merge(l.statistics)
            } else {
                byPAN.append(PANTotal(pan: p, statistics: l.statistics))
            }
        }
        pans = byPAN.sorted { $0.pan < $1.pan }
    }
}
