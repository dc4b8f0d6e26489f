import PlexusCore
import PlexusRCLAN
import PlexusStorage

extension ControlStorage {
    /// Every LUN the target serves, each processor named by its node number. On the engine thread.
    func statistics() -> [LUNStatistics] {
        var nodeOf: [Int: NodeNumber] = [:]
        for (n, p) in processors { nodeOf[p] = n }
        return target.statistics().compactMap { s in
            guard let n = nodeOf[Int(s.processor)] else { return nil }
            var s = s
            s.processor = n.rawValue
            return s
        }
    }
}

extension ControlNode {
    /// What this control node's storage target has served ("Management Interface Component"):
    /// per (processing node, target, LUN) of the maps it serves now, the I/O operations, reads,
    /// writes, bytes, errors, busy time and latency (``PlexusStorage/DiskStatistics``; merge
    /// them for a processor's or a PAN's figures). Read on the engine thread, which records
    /// them; empty on a node started without storage.
    public func storageStatistics() throws -> [LUNStatistics] {
        try thread.runAndWait { e in RCLAN.on(e)?.service(ControlStorage.self)?.statistics() ?? [] }
    }
}

extension LANPlatform {
    /// Control node `k`'s storage statistics (``ControlNode/storageStatistics()``).
    /// - Throws: when control node `k` is stopped or does not exist.
    public func storageStatistics(control k: Int) throws -> [LUNStatistics] {
        guard controlNodes.indices.contains(k), let c = controlNodes[k] else {
            throw PlexusError(.engineStopped, "control node \(k) is stopped or does not exist")
        }
        return try c.storageStatistics()
    }

    /// Both control nodes' storage statistics merged per (processing node, target, LUN): every
    /// command of the processors' disks, whichever control node served it. Stopped control
    /// nodes are left out.
    public func storageStatistics() throws -> [LUNStatistics] {
        var all: [LUNStatistics] = []
        for k in controlNodes.indices where controlNodes[k] != nil { all += try storageStatistics(control: k) }
        return LUNStatistics.mergedPerLUN(all)
    }
}
