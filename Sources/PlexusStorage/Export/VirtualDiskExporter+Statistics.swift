import Histogram
import PlexusCore

/// What one disk of a processor has done ("Management Interface Component": I/O operations,
/// bytes, reads, writes, the time I/O was in progress), with the latency of its commands as the
/// processor sees them (submitted to the initiator until the STAT, re-issues included).
public struct DiskStatistics: Sendable, Hashable, Codable {
    public var operations: UInt64 = 0
    public var reads: UInt64 = 0
    public var writes: UInt64 = 0
    public var flushes: UInt64 = 0
    /// Ranges released (NBD TRIM, sent as UNMAP).
    public var trims: UInt64 = 0
    public var bytesRead: UInt64 = 0
    public var bytesWritten: UInt64 = 0
    /// Commands that ended with an error.
    public var errors: UInt64 = 0
    /// Seconds during which at least one command of the disk was in flight.
    public var busySeconds: Double = 0
    /// Command latency percentiles in microseconds (0 before the first command).
    public var p50Microseconds: Double = 0
    public var p99Microseconds: Double = 0
    public init() {}
}

/// A disk's counters and latency histogram on the engine thread: recording allocates nothing
/// (the histogram's buckets are made once).
struct DiskRecorder {
    var statistics = DiskStatistics()
    var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .two)
    /// Commands in flight, and since when the disk has been busy.
    var inFlight = 0
    var busySince: UInt64 = 0
    var busyNanos: UInt64 = 0

    mutating func started(at now: UInt64) {
        if inFlight == 0 { busySince = now }
        inFlight += 1
    }

    mutating func finished(_ kind: DiskRequest.Kind, length: UInt32, error: UInt32, startedAt: UInt64, now: UInt64) {
        inFlight -= 1
        if inFlight == 0 { busyNanos &+= now &- busySince }
        statistics.operations &+= 1
        switch kind {
        case .read:
            statistics.reads &+= 1
            if error == 0 { statistics.bytesRead &+= UInt64(length) }
        case .write:
            statistics.writes &+= 1
            if error == 0 { statistics.bytesWritten &+= UInt64(length) }
        case .flush:
            statistics.flushes &+= 1
        case .trim:
            statistics.trims &+= 1
        case .refuse:
            break
        }
        if error != 0 { statistics.errors &+= 1 }
        latency.record(max(1, (now &- startedAt) / 1000))
    }

    /// The counters with the busy time (up to `now`) and the percentiles filled in.
    func snapshot(now: UInt64) -> DiskStatistics {
        var s = statistics
        let busy = busyNanos &+ (inFlight > 0 ? now &- busySince : 0)
        s.busySeconds = Double(busy) / 1e9
        if latency.totalCount > 0 {
            s.p50Microseconds = Double(latency.valueAtPercentile(50))
            s.p99Microseconds = Double(latency.valueAtPercentile(99))
        }
        return s
    }
}

extension VirtualDiskExporter {
    /// Each disk's statistics, by name. On the engine thread.
    public func statistics() -> [String: DiskStatistics] {
        let now = nowNanos()
        var out: [String: DiskStatistics] = [:]
        for (i, d) in disks.enumerated() where i < recorders.count { out[d.name] = recorders[i].snapshot(now: now) }
        return out
    }
}
