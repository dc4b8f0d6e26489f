import Foundation
import PlexusCore

/// The scenarios `plexus bench` runs, by the name given on its command line.
public enum BenchScenario: String, CaseIterable, Sendable {
    case viThroughput = "vi-throughput"
    case viLatency = "vi-latency"
    case rdmaWrite = "rdma-write"
    case viScale = "vi-scale"
    case rviThroughput = "rvi-throughput"
    case rviMessages = "rvi-messages"
    case rviLatency = "rvi-latency"
    case rviFailover = "rvi-failover"
    case rviLoss = "rvi-loss"
    case vlanTCP = "vlan-tcp"
    case vlanPing = "vlan-ping"
    case vlanFailover = "vlan-failover"
    case failover
    case storage
    case platformIdle = "platform-idle"
}

/// Which fabrics a scenario uses.
public enum FabricChoice: String, CaseIterable, Sendable {
    case a, b, both
    public var fabrics: [Fabric] {
        switch self {
        case .a: [.a]
        case .b: [.b]
        case .both: [.a, .b]
        }
    }
}

/// Where a scenario writes while it runs: its progress (each round) and its summary lines.
public struct BenchOutput: Sendable {
    public var progress: @Sendable (String) -> Void
    public var summary: @Sendable (String) -> Void

    public init(progress: @escaping @Sendable (String) -> Void, summary: @escaping @Sendable (String) -> Void) {
        self.progress = progress
        self.summary = summary
    }

    /// Progress to standard error, summaries to standard output.
    public static let standard = BenchOutput(
        progress: { FileHandle.standardError.write(Data(($0 + "\n").utf8)) },
        summary: { print($0) })
}

/// What a scenario runs with; each scenario reads the fields its `plexus bench` flags name.
public struct BenchOptions: Sendable {
    /// Payload bytes per frame (1...16896).
    public var size = 16896
    /// Seconds each measured stream runs.
    public var seconds: Double = 2
    /// Round trips per latency measurement.
    public var count = 20000
    /// VIs for vi-scale.
    public var vis = 16384
    /// Interleaved rounds; medians are reported.
    public var rounds = 3
    /// Which fabric(s) Plexus streams over.
    public var fabric = FabricChoice.a
    /// Spin instead of sleeping (both Plexus and the baselines).
    public var busyPoll = false
    /// RVI load balancing, as ``LoadBalancing/init(parsing:)`` reads it.
    public var policy = "alternate"
    /// RVI heartbeat interval in microseconds.
    public var heartbeatUs = 1000
    /// Percent of frames lost on leg A (rvi-loss).
    public var loss: Double = 5
    /// rvi-failover: fail fabric A with `ip link set down` on a veth pair (needs root).
    public var link = false
    /// Faults under the Plexus sender's fabrics; the baselines run without.
    public var faults: [(fabric: Fabric, plan: FaultPlan)] = []
    /// storage: fio's access pattern (randread, randwrite, read, write), block size in bytes and
    /// I/O depth.
    public var pattern = "randread"
    public var blockSize = 4096
    public var queueDepth = 32
    /// storage: the backing file every side reads and writes (on a real disk), and its size.
    public var storageFile = "/var/tmp/plexus-bench-storage.img"
    public var storageFileMiB = 1024
    /// storage: bypass the page cache on every side (the control nodes' O_DIRECT, nbdkit's
    /// cache=none, fio --direct=1); false: every side through the page cache.
    public var direct = true
    /// storage: the processor's exporter, per NBD connection: slots (requests in flight, ≤ 64)
    /// and bytes per slot in KiB (a request takes as many slots as it needs).
    public var laneDepth = 32
    public var slotKiB = 1024
    /// platform-idle: processing nodes of the measured platform (the baseline has 6).
    public var nodes = 6
    public var output = BenchOutput.standard

    public init() {}

    /// A progress line.
    func note(_ s: String) { output.progress(s) }
    /// A summary line.
    func say(_ s: String) { output.summary(s) }
}

/// Why a benchmark could not run or finish.
public struct BenchError: Error, CustomStringConvertible {
    public let description: String
    init(_ s: String) { description = s }
}

/// Formats a byte rate for people.
func human(gbps: Double) -> String { String(format: "%.2f GB/s", gbps) }
func human(rate: Double) -> String {
    rate >= 1e6 ? String(format: "%.2f M/s", rate / 1e6) : String(format: "%.1f k/s", rate / 1e3)
}
