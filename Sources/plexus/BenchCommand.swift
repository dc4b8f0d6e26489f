import ArgumentParser
import Foundation
import PlexusBench
import PlexusCore
import PlexusRCLAN

/// `plexus bench SCENARIO`: Plexus against minimal UDP pairs, measured side by side in one run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the fabric core against raw UDP baselines in the same run.",
        discussion: """
            Every scenario runs between two processes on loopback (this one, pinned to CPU 0, and \
            a `plexus bench-peer` child it starts, pinned to CPU 1). Each figure is measured \
            alongside two baselines with no Plexus layers, in the same run, interleaved over \
            --rounds rounds (medians are reported):
              io_uring  batched IORING_OP_SEND (32 per submission) and multishot recv into a \
            provided-buffer ring, same ring flags as Plexus
              plain     send()/recv() on connected sockets
            vi-throughput also reports, outside the ratio, `plain_gso`: plain sendmsg with \
            UDP_SEGMENT batching (the kernel facility Plexus groups its sends with), and \
            `ratio_to_plain_gso`.
            `ratio` is Plexus ÷ the better baseline for throughput, and Plexus p50 ÷ the better \
            baseline p50 for latency.

            Scenarios:
              vi-throughput  --size N --seconds S     frames/s and GB/s one way, delivered and lost
              vi-latency     --size N --count C [--busy-poll]   round-trip p50/p99/p99.9 (µs)
              rdma-write     --size N --seconds S     GB/s landed in a remote region, against \
            vi-throughput at the same size in the same run
              vi-scale       --vis 16384 --size N     traffic over 16384 VIs against one VI

            Redundant VIs (the RCLAN layer: both fabrics, every message acknowledged):
              rvi-throughput --size N --seconds S     reliable messages one way, against the             raw pairs at the same size
              rvi-messages   --size 64 --seconds S    small messages per second with coalescing,             against one raw datagram per message
              rvi-latency    --size 64 --count C [--busy-poll]   round trip over an RVI
              rvi-failover   --size N [--link]        fabric A fails a third of the way in (fault             layer, or with --link a real `ip link set down` on a veth pair into a namespace;             needs root); reports gap_ms, lost, duplicated
              rvi-loss       --loss 5                 throughput with that loss on leg A, against             the lossless run

            Virtual LANs (root: two control nodes and two processing nodes in network \
            namespaces, each NIC a TAP device; real iperf3 and ping between the processing nodes, \
            against the same two namespaces joined directly by a kernel veth pair):
              vlan-tcp       --seconds S              iperf3 TCP Gbit/s; target ratio ≥ 0.30
              vlan-ping      --count C [--busy-poll]  ping p50/p99; target p50 ≤ 3 × veth
              vlan-failover  --seconds S              iperf3 with control node 1 stopped at 1/3 \
            and fabric A failed at 2/3: gap_ms (target ≤ 50) and whether TCP survived

            Processor failover (root; python3):
              failover       --rounds R               kill -9 of a web service's processor; \
            detect_ms, migrate_ms, total_ms to the first good reply from the spare (target ≤ 300) \
            and failed_requests, against the same service restarted in place
                             --nodes N (7...250): each round the same drill on a platform of N \
            processing nodes (the drill's 4, the rest idle members of its VLANs) and on the \
            drill's own platform of 4, in the same run (ratio = total_ms with N ÷ with 4; target \
            ≤ 1.5 and ≤ 300 ms), the service restarted in place measured on the N-node platform

            Storage (fio and nbdkit installed):
              storage        --pattern randread|randwrite|read|write --bs 4k|1m
                             --qd N --seconds S: the same fio job through NBD into a processor's disk (one processing \
            node, RVIs on both fabrics, two control nodes' storage targets over one backing file), \
            against nbdkit's file plugin on the same file (the baseline; ratio = Plexus IOPS ÷ \
            nbdkit IOPS) and fio with io_uring and O_DIRECT on the file itself (the limit); \
            --file PATH (default /var/tmp/plexus-bench-storage.img, --file-mib 1024, written once \
            and kept); --buffered: every side through the page cache instead; --lane-depth 32 \
            --slot-kib 1024: the processor's exporter's slots per NBD connection and their size

            The platform at rest:
              platform-idle  --nodes N --seconds S     an embedded platform (two control nodes, N \
            processing nodes on one VLAN, each node its own engine thread in blocking mode, on \
            loopback) left idle for S seconds: the CPU seconds per second the whole process uses, \
            the RVIs open and the heartbeats they send, against the same with 6 processing nodes \
            in the same run (ratio = CPU use with N ÷ with 6)

            With --json the last line of output is one JSON object: scenario, parameters, \
            `plexus`, `baseline`, `ratio`, machine and date.
            """)

    typealias Scenario = BenchScenario

    @Argument(help: "vi-throughput, vi-latency, rdma-write, vi-scale, rvi-throughput, rvi-messages, rvi-latency, rvi-failover, rvi-loss, vlan-tcp, vlan-ping, vlan-failover, failover, storage or platform-idle.")
    var scenario: Scenario
    @Option(help: "Payload bytes per frame (1...16896).")
    var size: Int = 16896
    @Option(help: "Seconds each measured stream runs.")
    var seconds: Double = 2
    @Option(help: "Round trips per latency measurement.")
    var count: Int = 20000
    @Option(help: "VIs for vi-scale.")
    var vis: Int = 16384
    @Option(help: "Interleaved rounds; medians are reported.")
    var rounds: Int = 3
    @Option(help: "Which fabric(s) Plexus streams over: a, b or both.")
    var fabric: FabricChoice = .a
    @Flag(help: "Spin instead of sleeping (both Plexus and the baselines).")
    var busyPoll = false
    @Option(help: "RVI load balancing: alternate, fewest-bytes, active-standby[:a|:b].")
    var policy: String = "alternate"
    @Option(help: "RVI heartbeat interval in microseconds (a leg is down after 5 missed).")
    var heartbeatUs: Int = 1000
    @Option(help: "Percent of frames lost on leg A (rvi-loss).")
    var loss: Double = 5
    @Flag(help: "rvi-failover: fail fabric A with `ip link set down` on a veth pair (needs root).")
    var link = false
    @Option(help: "storage: fio's access pattern: randread, randwrite, read or write.")
    var pattern: String = "randread"
    @Option(help: "storage: fio's block size (4k, 1m, or bytes).")
    var bs: String = "4k"
    @Option(help: "storage: fio's I/O depth.")
    var qd: Int = 32
    @Option(help: "storage: the backing file (on a real disk; written once, then kept).")
    var file: String = "/var/tmp/plexus-bench-storage.img"
    @Option(help: "storage: the backing file's size in MiB.")
    var fileMib: Int = 1024
    @Flag(help: "storage: every side through the page cache (no O_DIRECT, nbdkit without cache=none).")
    var buffered = false
    @Option(help: "storage: the processor's exporter's slots per NBD connection (requests in flight, 1...64).")
    var laneDepth: Int = 32
    @Option(help: "storage: the exporter's slot size in KiB (a multiple of 4; a larger request takes several slots).")
    var slotKib: Int = 1024
    @Option(help: "platform-idle: processing nodes of the measured platform (1...250; the baseline has 6). failover: processing nodes of the platform the drill also runs on (7...250; the drill's own platform has 4).")
    var nodes: Int = 6
    @Flag(help: "Print one JSON object as the last line.")
    var json = false
    @Option(name: .customLong("fault"), parsing: .singleValue,
            help: "Inject faults under the Plexus sender's fabric (repeatable): FABRIC:PLAN, e.g. a:drop=5,seed=7. Baselines run without.")
    var faults: [String] = []

    func validate() throws {
        guard (1...FrameLayout.maxPayload).contains(size) else { throw ValidationError("--size must be in 1...16896") }
        guard seconds > 0 && seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600]") }
        guard count > 0 && count <= 10_000_000 else { throw ValidationError("--count must be in 1...10000000") }
        guard (1...1_000_000).contains(vis) else { throw ValidationError("--vis must be in 1...1000000") }
        guard (1...50).contains(rounds) else { throw ValidationError("--rounds must be in 1...50") }
        try validateFaults(faults)
        do { _ = try LoadBalancing(parsing: policy) } catch { throw ValidationError("--policy: \(error)") }
        guard heartbeatUs >= 100 && heartbeatUs <= 10_000_000 else { throw ValidationError("--heartbeat-us must be in 100...10000000") }
        guard loss > 0 && loss < 100 else { throw ValidationError("--loss must be in (0, 100)") }
        if link && scenario != .rviFailover { throw ValidationError("--link applies to rvi-failover only") }
        guard StoragePattern(rawValue: pattern) != nil else { throw ValidationError("--pattern must be randread, randwrite, read or write") }
        guard let b = parseByteSize(bs), b % 512 == 0, b <= 8 << 20 else {
            throw ValidationError("--bs must be a multiple of 512 bytes up to 8m (4k, 1m, …)")
        }
        guard (1...1024).contains(qd) else { throw ValidationError("--qd must be in 1...1024") }
        guard (1...64).contains(laneDepth) else { throw ValidationError("--lane-depth must be in 1...64") }
        guard slotKib >= 4, slotKib % 4 == 0, slotKib <= 16 << 10 else { throw ValidationError("--slot-kib must be a multiple of 4 up to 16384") }
        guard let b2 = parseByteSize(bs), b2 <= laneDepth * slotKib << 10 else {
            throw ValidationError("--bs must fit in --lane-depth × --slot-kib")
        }
        guard (1...250).contains(nodes) else { throw ValidationError("--nodes must be in 1...250") }
        if scenario == .failover && nodes != 6 && nodes < 7 {
            throw ValidationError("failover: --nodes must be in 7...250 (the drill's own platform has 4 processing nodes)")
        }
        guard (16...(1 << 20)).contains(fileMib), fileMib << 20 >= b else { throw ValidationError("--file-mib must be in 16...1048576") }
    }

    func run() throws {
        var o = BenchOptions()
        (o.size, o.seconds, o.count, o.vis, o.rounds, o.fabric) = (size, seconds, count, vis, rounds, fabric)
        (o.busyPoll, o.policy, o.heartbeatUs, o.loss, o.link) = (busyPoll, policy, heartbeatUs, loss, link)
        (o.pattern, o.blockSize, o.queueDepth, o.storageFile, o.storageFileMiB, o.direct) =
            (pattern, parseByteSize(bs)!, qd, file, fileMib, !buffered)
        (o.laneDepth, o.slotKiB, o.nodes) = (laneDepth, slotKib, nodes)
        o.faults = faults.compactMap(FaultOption.init(argument:)).map { ($0.fabric, $0.plan) }
        switch scenario {
        case .viThroughput: try report(PlexusBench.viThroughput(o), o)
        case .viLatency: try report(PlexusBench.viLatency(o), o)
        case .rdmaWrite: try report(PlexusBench.rdmaWrite(o), o)
        case .viScale: try report(PlexusBench.viScale(o), o)
        case .rviThroughput: try report(PlexusBench.rviThroughput(o), o)
        case .rviMessages: try report(PlexusBench.rviMessages(o), o)
        case .rviLatency: try report(PlexusBench.rviLatency(o), o)
        case .rviFailover: try report(PlexusBench.rviFailover(o), o)
        case .rviLoss: try report(PlexusBench.rviLoss(o), o)
        case .vlanTCP: try report(PlexusBench.vlanTCP(o), o)
        case .vlanPing: try report(PlexusBench.vlanPing(o), o)
        case .vlanFailover: try report(PlexusBench.vlanFailover(o), o)
        case .failover: try report(PlexusBench.processorFailover(o), o)
        case .storage: try report(PlexusBench.storage(o), o)
        case .platformIdle: try report(PlexusBench.platformIdle(o), o)
        }
    }

    /// With --json, the scenario's result as the last line, with the run's particulars.
    func report<Result: Codable & Sendable>(_ result: Result, _ options: BenchOptions) {
        let command = (["plexus"] + CommandLine.arguments.dropFirst()).joined(separator: " ")
        let report = BenchReport(scenario, options: options, result: result, command: command, faults: faults)
        if json { print(report.jsonLine) }
    }
}

/// The second process of every benchmark, started by `plexus bench`. It speaks a line protocol
/// on stdin/stdout: READY {addresses} → PEER {addresses} → GO {region key} → STOP → RESULT {counts}.
struct BenchPeer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-peer",
        abstract: "The far end of a benchmark (started by `plexus bench`; not for direct use).",
        shouldDisplay: false)

    @Option var mode: PeerOptions.Mode = .plexus
    @Option var role: PeerOptions.Role = .sink
    @Option var vis: Int = 1
    @Option var fabric: FabricChoice = .a
    @Flag var busyPoll = false
    @Option var cpu: Int = 1
    @Option var node: UInt8 = 2
    @Option var regionBytes: Int = 64 << 20
    @Option var policy: String = "alternate"
    @Option var heartbeatUs: Int = 1000
    @Option var netns: String?

    func run() throws {
        var o = PeerOptions()
        (o.mode, o.role, o.vis, o.fabric, o.busyPoll, o.cpu, o.node) = (mode, role, vis, fabric, busyPoll, cpu, node)
        (o.regionBytes, o.policy, o.heartbeatUs, o.netns) = (regionBytes, policy, heartbeatUs, netns)
        try runPeer(o)
    }
}

extension BenchScenario: ExpressibleByArgument {}
extension FabricChoice: ExpressibleByArgument {}
extension PeerOptions.Mode: ExpressibleByArgument {}
extension PeerOptions.Role: ExpressibleByArgument {}
