import Histogram
import PlexusCore

/// What one disk has done ("Management Interface Component": I/O operations, bytes, reads,
/// writes, the time I/O was in progress), with the latency of its commands.
///
/// One type for both ends of the storage protocol: a processor's disk
/// (``VirtualDiskExporter/statistics()``, latency as the processor sees it, re-issues included)
/// and a LUN as a control node serves it to one processor (``StorageTarget/statistics()``,
/// latency from the CMD's start in a staging slot to its STAT). Snapshots add up with ``merge(_:)``: the
/// counters and the busy time are summed and the latency histograms added, so the percentiles
/// of a processor's or a PAN's LUNs are computed over every command, never averaged.
public struct DiskStatistics: Sendable, Hashable, Codable {
    public var operations: UInt64 = 0
    public var reads: UInt64 = 0
    public var writes: UInt64 = 0
    public var flushes: UInt64 = 0
    /// Ranges released (NBD TRIM, sent as UNMAP).
    public var trims: UInt64 = 0
    public var bytesRead: UInt64 = 0
    public var bytesWritten: UInt64 = 0
    /// Commands that ended with an error (at a control node, also commands dropped without a
    /// STAT because the processor's RVIs failed, its map changed or its data never came).
    public var errors: UInt64 = 0
    /// Seconds during which at least one command of the disk was in flight; for merged
    /// statistics, the sum over the disks merged.
    public var busySeconds: Double = 0
    /// Command latency percentiles in microseconds (0 before the first command).
    public var p50Microseconds: Double = 0
    public var p99Microseconds: Double = 0
    /// Every command's latency, for merging (``LatencyHistogram``).
    public var latency = LatencyHistogram()

    public init() {}

    /// What an I/O command was, for counting.
    public enum Operation: Sendable, Hashable {
        case read, write, flush, trim
        /// A command counted only as an operation (and an error when it failed).
        case other
    }

    /// Adds `other`'s figures to these: counters and busy time summed, latency histograms
    /// added, percentiles recomputed from the sum.
    public mutating func merge(_ other: DiskStatistics) {
        operations &+= other.operations
        reads &+= other.reads
        writes &+= other.writes
        flushes &+= other.flushes
        trims &+= other.trims
        bytesRead &+= other.bytesRead
        bytesWritten &+= other.bytesWritten
        errors &+= other.errors
        busySeconds += other.busySeconds
        take(LatencyHistogram.histogram(of: [latency.buckets, other.latency.buckets]))
    }

    /// The latency of `histogram` (built from buckets): its buckets and its percentiles, read
    /// from the one histogram.
    mutating func take(_ histogram: Histogram<UInt64>) {
        latency = LatencyHistogram(histogram)
        let empty = latency.buckets.isEmpty
        p50Microseconds = empty ? 0 : Double(histogram.valueAtPercentile(50))
        p99Microseconds = empty ? 0 : Double(histogram.valueAtPercentile(99))
    }

    /// The sum of `all` (zero when empty).
    public static func merged(_ all: some Sequence<DiskStatistics>) -> DiskStatistics {
        var s = DiskStatistics()
        for x in all { s.merge(x) }
        return s
    }
}

/// Command latencies in microseconds as the buckets of an HdrHistogram (two significant
/// digits, up to 60 s) that hold any: each bucket's highest value and its count. Two of them add
/// exactly (the same buckets), which averaging percentiles would not.
public struct LatencyHistogram: Sendable, Hashable, Codable {
    /// Microseconds (the highest value of the bucket, as HdrHistogram reports a percentile)
    /// and how many commands took that long.
    public struct Bucket: Sendable, Hashable, Codable {
        public var microseconds: UInt64
        public var count: UInt64
        public init(microseconds: UInt64, count: UInt64) {
            self.microseconds = microseconds
            self.count = count
        }
    }

    /// Non-empty buckets, by increasing latency.
    public var buckets: [Bucket] = []

    public init() {}

    /// The buckets of `histogram`.
    init(_ histogram: Histogram<UInt64>) {
        for v in histogram.recordedValues() {
            buckets.append(Bucket(microseconds: histogram.highestEquivalentForValue(v.value), count: v.count))
        }
    }

    /// Commands counted.
    public var count: UInt64 { buckets.reduce(0) { $0 &+ $1.count } }

    /// The histogram these buckets describe (values beyond its range are clamped to it).
    func histogram() -> Histogram<UInt64> { Self.histogram(of: [buckets]) }

    /// One histogram of every bucket of `lists`. A bucket that would take the total count, or
    /// the sum of count × latency that HdrHistogram's iteration keeps, past `UInt64.max` (no
    /// real disk gets there: 584,000 years of summed latency) is left out rather than trap.
    static func histogram(of lists: [[Bucket]]) -> Histogram<UInt64> {
        var h = DiskRecorder.makeHistogram()
        var total: UInt64 = 0, weighted: UInt64 = 0
        for list in lists {
            for b in list {
                let v = min(b.microseconds, DiskRecorder.highestMicroseconds)
                let (t, countOverflow) = total.addingReportingOverflow(b.count)
                let (p, productOverflow) = b.count.multipliedReportingOverflow(by: h.highestEquivalentForValue(v))
                let (w, sumOverflow) = weighted.addingReportingOverflow(p)
                guard !countOverflow, !productOverflow, !sumOverflow else { continue }
                total = t
                weighted = w
                h.record(v, count: b.count)
            }
        }
        return h
    }

    /// Adds `other`'s counts.
    public mutating func merge(_ other: LatencyHistogram) {
        guard !other.buckets.isEmpty else { return }
        self = LatencyHistogram(Self.histogram(of: [buckets, other.buckets]))
    }

    /// The latency at `percentile` (0…100) in microseconds; 0 when empty.
    public func percentile(_ percentile: Double) -> Double {
        guard !buckets.isEmpty else { return 0 }
        return Double(histogram().valueAtPercentile(percentile))
    }
}

/// A disk's counters and latency histogram on the engine thread: recording allocates nothing
/// and takes no lock (the histogram's buckets are made once, with the recorder).
struct DiskRecorder {
    static let highestMicroseconds: UInt64 = 60_000_000
    static func makeHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(highestTrackableValue: highestMicroseconds, numberOfSignificantValueDigits: .two)
    }

    var statistics = DiskStatistics()
    var latency = DiskRecorder.makeHistogram()
    /// Commands in flight, and since when the disk has been busy.
    var inFlight = 0
    var busySince: UInt64 = 0
    var busyNanos: UInt64 = 0

    mutating func started(at now: UInt64) {
        if inFlight == 0 { busySince = now }
        inFlight += 1
    }

    /// A command started at `startedAt` ended at `now`; `length` bytes moved when it did not
    /// fail.
    mutating func finished(_ operation: DiskStatistics.Operation, length: UInt64, failed: Bool, startedAt: UInt64,
                           now: UInt64) {
        if inFlight > 0 {
            inFlight -= 1
            if inFlight == 0 { busyNanos &+= now &- busySince }
        }
        statistics.operations &+= 1
        switch operation {
        case .read:
            statistics.reads &+= 1
            if !failed { statistics.bytesRead &+= length }
        case .write:
            statistics.writes &+= 1
            if !failed { statistics.bytesWritten &+= length }
        case .flush:
            statistics.flushes &+= 1
        case .trim:
            statistics.trims &+= 1
        case .other:
            break
        }
        if failed { statistics.errors &+= 1 }
        latency.record(min(Self.highestMicroseconds, max(1, (now &- startedAt) / 1000)))
    }

    /// The counters with the busy time (up to `now`), the histogram and the percentiles filled in.
    func snapshot(now: UInt64) -> DiskStatistics {
        var s = statistics
        let busy = busyNanos &+ (inFlight > 0 ? now &- busySince : 0)
        s.busySeconds = Double(busy) / 1e9
        if latency.totalCount > 0 {
            // The percentiles of the buckets kept, so that a merge of one snapshot gives the same.
            s.take(LatencyHistogram.histogram(of: [LatencyHistogram(latency).buckets]))
        }
        return s
    }
}
