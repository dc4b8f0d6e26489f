import PlexusCore

extension VirtualDiskExporter {
    /// Each disk's statistics, by name. On the engine thread.
    public func statistics() -> [String: DiskStatistics] {
        let now = nowNanos()
        var out: [String: DiskStatistics] = [:]
        for (i, d) in disks.enumerated() where i < recorders.count { out[d.name] = recorders[i].snapshot(now: now) }
        return out
    }
}

extension DiskRequest.Kind {
    /// How the disk's statistics count a request of this kind.
    var operation: DiskStatistics.Operation {
        switch self {
        case .read: .read
        case .write: .write
        case .flush: .flush
        case .trim: .trim
        case .refuse: .other
        }
    }
}
