// The results of the scenarios, as their JSON lines hold them (snake_case keys).

/// One measured stream: frames and bytes per second, and what was sent and delivered.
public struct StreamFigures: Codable, Sendable, Hashable {
    public var framesPerSecond: Double
    public var gbytesPerSecond: Double
    public var sent: UInt64
    public var delivered: UInt64
    public var lost: UInt64
    /// rdma-write: the bytes landed in the remote region per second.
    public var gbytesLandedPerSecond: Double?
    /// vi-scale: the VIs streamed over.
    public var vis: Int?

    enum CodingKeys: String, CodingKey {
        case framesPerSecond = "frames_per_s", gbytesPerSecond = "gbytes_per_s", sent, delivered, lost
        case gbytesLandedPerSecond = "gbytes_landed_per_s", vis
    }
}

/// A round-trip distribution in microseconds.
public struct LatencyFigures: Codable, Sendable, Hashable {
    public var p50: Double, p99: Double, p999: Double, samples: Int

    enum CodingKeys: String, CodingKey { case p50 = "p50_us", p99 = "p99_us", p999 = "p99_9_us", samples }
}

/// The raw UDP pairs of a scenario: the better one's figures (which `ratio` divides by, by
/// frames/s for a stream, by p50 for round trips), its method, and each pair's own.
public struct RawBaseline<Figures: Codable & Sendable & Hashable>: Codable, Sendable, Hashable {
    public var best: Figures
    public var method: String
    public var ioUring: Figures
    public var plain: Figures
    /// vi-throughput: plain sendmsg with UDP_SEGMENT, outside the ratio.
    public var plainGSO: Figures?

    enum CodingKeys: String, CodingKey { case method, ioUring = "io_uring", plain, plainGSO = "plain_gso" }

    public init(best: Figures, method: String, ioUring: Figures, plain: Figures, plainGSO: Figures? = nil) {
        (self.best, self.method, self.ioUring, self.plain, self.plainGSO) = (best, method, ioUring, plain, plainGSO)
    }

    public init(from decoder: any Decoder) throws {
        best = try Figures(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        method = try c.decode(String.self, forKey: .method)
        ioUring = try c.decode(Figures.self, forKey: .ioUring)
        plain = try c.decode(Figures.self, forKey: .plain)
        plainGSO = try c.decodeIfPresent(Figures.self, forKey: .plainGSO)
    }

    public func encode(to encoder: any Encoder) throws {
        try best.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(method, forKey: .method)
        try c.encode(ioUring, forKey: .ioUring)
        try c.encode(plain, forKey: .plain)
        try c.encodeIfPresent(plainGSO, forKey: .plainGSO)
    }
}

/// rdma-write and vi-scale: Plexus against itself in another shape (one VI; VI sends), with
/// the raw pairs beside.
public struct ReferenceBaseline: Codable, Sendable, Hashable {
    /// rdma-write: VI sends of the same size.
    public var viSend: StreamFigures?
    /// vi-scale: one VI.
    public var singleVI: StreamFigures?
    public var raw: RawBaseline<StreamFigures>
    public var note: String

    enum CodingKeys: String, CodingKey { case viSend = "vi_send", singleVI = "single_vi", raw, note }
}

/// One RVI stream: the stream's figures with what the receiver checked (loss, duplicates, the
/// longest gap) and the sender's legs.
public struct RVIFigures: Codable, Sendable, Hashable {
    public var framesPerSecond: Double
    public var gbytesPerSecond: Double
    public var sent: UInt64
    public var delivered: UInt64
    public var lost: UInt64
    public var duplicated: UInt64
    public var gapMs: Double
    public var retransmissions: UInt64
    public var failed: UInt64
    public var events: [String]?
    public var legs: [Leg]
    /// rvi-loss: the loss set on leg A.
    public var lossPercentOnA: Double?
    /// rvi-failover: the worst round's gap, and how fabric A was failed.
    public var gapMsWorst: Double?
    public var method: String?

    /// A leg as the sender's RVI statistics count it, with the receiving socket's overruns.
    public struct Leg: Codable, Sendable, Hashable {
        public var fabric: String
        public var state: String
        public var demoted: Bool
        public var retransmissions: UInt64
        public var lost: UInt64
        public var lossPercent: Double
        public var spuriousRetransmissions: UInt64
        public var overruns: UInt64
        public var peerReceiveOverruns: UInt64
        public var receiverSocketOverruns: UInt64

        enum CodingKeys: String, CodingKey {
            case fabric, state, demoted, retransmissions, lost, lossPercent = "loss_percent"
            case spuriousRetransmissions = "spurious_retransmissions", overruns
            case peerReceiveOverruns = "peer_receive_overruns", receiverSocketOverruns = "receiver_socket_overruns"
        }
    }

    enum CodingKeys: String, CodingKey {
        case framesPerSecond = "frames_per_s", gbytesPerSecond = "gbytes_per_s", sent, delivered, lost, duplicated
        case gapMs = "gap_ms", retransmissions, failed, events, legs, lossPercentOnA = "loss_percent_on_a"
        case gapMsWorst = "gap_ms_worst", method
    }
}

/// Plexus against a baseline measured in the same run: `ratio` is Plexus ÷ the baseline (or
/// ÷ a target, where `note` says so).
public struct Comparison<Figures: Codable & Sendable & Hashable, Baseline: Codable & Sendable & Hashable>:
    Codable, Sendable, Hashable
{
    public var plexus: Figures
    public var baseline: Baseline
    public var ratio: Double
    public var target: Double?
    /// vi-throughput: Plexus ÷ the plain UDP_SEGMENT sender.
    public var ratioToPlainGSO: Double?
    /// rdma-write, vi-scale: Plexus ÷ the better raw pair.
    public var ratioToRaw: Double?
    public var note: String?

    enum CodingKeys: String, CodingKey {
        case plexus, baseline, ratio, target, ratioToPlainGSO = "ratio_to_plain_gso", ratioToRaw = "ratio_to_raw", note
    }
}

/// vi-throughput.
public typealias StreamComparison = Comparison<StreamFigures, RawBaseline<StreamFigures>>
/// vi-latency and rvi-latency.
public typealias LatencyComparison = Comparison<LatencyFigures, RawBaseline<LatencyFigures>>
/// rdma-write and vi-scale.
public typealias ReferenceComparison = Comparison<StreamFigures, ReferenceBaseline>
/// rvi-throughput and rvi-messages.
public typealias RVIComparison = Comparison<RVIFigures, RawBaseline<StreamFigures>>
/// rvi-loss (against the lossless run) and rvi-failover (against an undisturbed stream).
public typealias RVIAgainstRVI = Comparison<RVIFigures, RVIFigures>

// MARK: - Virtual LANs and processor failover

/// iperf3 TCP throughput: the median and each run's.
public struct TCPFigures: Codable, Sendable, Hashable {
    public var gbitsPerSecond: Double
    public var runsGbitsPerSecond: [Double]
    /// Over the virtual LAN: TCP's retransmissions in each run.
    public var tcpRetransmits: [Int]?

    enum CodingKeys: String, CodingKey {
        case gbitsPerSecond = "gbits_per_s", runsGbitsPerSecond = "runs_gbits_per_s", tcpRetransmits = "tcp_retransmits"
    }
}

/// vlan-tcp's baseline: the veth pair joining the same namespaces.
public struct VethBaseline: Codable, Sendable, Hashable {
    public var veth: TCPFigures
}

/// vlan-tcp.
public typealias VLANTCPComparison = Comparison<TCPFigures, VethBaseline>

/// vlan-failover: the longest pauses after each failure, and whether the TCP connection lived.
public struct VLANFailoverFigures: Codable, Sendable, Hashable {
    public var gapMs: Double
    public var gapControlNodeMs: Double
    public var gapFabricMs: Double
    public var tcpConnectionSurvived: Bool
    public var iperf3Exit: Int
    public var gbitsPerSecond: Double
    public var tcpRetransmits: Int

    enum CodingKeys: String, CodingKey {
        case gapMs = "gap_ms", gapControlNodeMs = "gap_control_node_ms", gapFabricMs = "gap_fabric_ms"
        case tcpConnectionSurvived = "tcp_connection_survived", iperf3Exit = "iperf3_exit", gbitsPerSecond = "gbits_per_s"
        case tcpRetransmits = "tcp_retransmits"
    }
}

/// vlan-failover's baseline: the longest pause of an undisturbed stream.
public struct UndisturbedBaseline: Codable, Sendable, Hashable {
    public var undisturbedGapMs: Double

    enum CodingKeys: String, CodingKey { case undisturbedGapMs = "undisturbed_gap_ms" }
}

/// vlan-failover.
public typealias VLANFailoverComparison = Comparison<VLANFailoverFigures, UndisturbedBaseline>

/// vlan-ping: ping over the virtual LAN against the veth pair, the kernel's TAP turnaround, and
/// the bare overlay's floor (`floorRatio` is nil, written as null, where the overlay could not
/// run).
public struct VLANPingResult: Codable, Sendable, Hashable {
    public var plexus: LatencyFigures
    public var baseline: Baseline
    public var ratio: Double
    public var target: Double
    public var tapFloorRatio: Double
    public var floorRatio: Double?
    public var floorTarget: Double?
    public var note: String

    public struct Baseline: Codable, Sendable, Hashable {
        public var veth: LatencyFigures
        public var tapTurnaround: LatencyFigures
        public var bareOverlay: LatencyFigures?
        public var vethWithOverlay: LatencyFigures?

        enum CodingKeys: String, CodingKey {
            case veth, tapTurnaround = "tap_turnaround", bareOverlay = "bare_overlay", vethWithOverlay = "veth_with_overlay"
        }
    }

    enum CodingKeys: String, CodingKey {
        case plexus, baseline, ratio, target, tapFloorRatio = "tap_floor_ratio", floorRatio = "floor_ratio"
        case floorTarget = "floor_target", note
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(plexus, forKey: .plexus)
        try c.encode(baseline, forKey: .baseline)
        try c.encode(ratio, forKey: .ratio)
        try c.encode(target, forKey: .target)
        try c.encode(tapFloorRatio, forKey: .tapFloorRatio)
        try c.encode(floorRatio, forKey: .floorRatio)  // null when not measured
        try c.encodeIfPresent(floorTarget, forKey: .floorTarget)
        try c.encode(note, forKey: .note)
    }
}

/// failover: kill -9 of a web service's processor to the spare's first good reply, in
/// milliseconds.
///
/// Two shapes, by `--nodes`:
/// - without it, the drill's own platform (4 processing nodes) against the same service restarted
///   in place (`baseline` is ``Baseline``, `ratio` is `total_ms` ÷ the 300 ms `target`);
/// - with `--nodes N`, the drill on a platform of N processing nodes against the drill on the
///   4-node platform in the same run (`baseline` is that platform's ``Figures``, `ratio` is
///   N nodes' `total_ms` ÷ 4 nodes', `target` 1.5 and `target_ms` 300), the service restarted in
///   place on the N-node platform beside them (`restart_in_place`).
public struct FailoverResult: Codable, Sendable, Hashable {
    public var plexus: Figures
    public var baseline: Reference
    public var ratio: Double
    public var target: Double
    /// With `--nodes`: the ceiling on `plexus.total_ms`, in milliseconds.
    public var targetMs: Double?
    public var ratioToRestartInPlace: Double
    /// With `--nodes`: the service restarted in place on the N-node platform.
    public var restartInPlace: Baseline?
    public var note: String

    /// The medians over the rounds, each round's figures and the first round's timeline.
    public struct Figures: Codable, Sendable, Hashable {
        /// With `--nodes`: the platform's processing nodes.
        public var nodes: Int?
        public var detectMs: Double
        public var migrateMs: Double
        public var totalMs: Double
        public var failedRequests: Int
        public var rounds: Rounds
        public var timelineRound1: [String]

        public struct Rounds: Codable, Sendable, Hashable {
            public var detectMs: [Double]
            public var migrateMs: [Double]
            public var totalMs: [Double]
            public var failedRequests: [Int]

            enum CodingKeys: String, CodingKey {
                case detectMs = "detect_ms", migrateMs = "migrate_ms", totalMs = "total_ms", failedRequests = "failed_requests"
            }
        }

        enum CodingKeys: String, CodingKey {
            case nodes, detectMs = "detect_ms", migrateMs = "migrate_ms", totalMs = "total_ms", failedRequests = "failed_requests"
            case rounds, timelineRound1 = "timeline_round_1"
        }
    }

    /// The service restarted in place on the spare: the median, each round's, and the
    /// requests that failed in each.
    public struct Baseline: Codable, Sendable, Hashable {
        public var serviceRestartInPlaceMs: Double
        public var roundsMs: [Double]
        public var failedRequests: [Int]

        enum CodingKeys: String, CodingKey {
            case serviceRestartInPlaceMs = "service_restart_in_place_ms", roundsMs = "rounds_ms", failedRequests = "failed_requests"
        }
    }

    /// What `plexus` is compared with: the service restarted in place (without `--nodes`), or
    /// the drill on the 4-node platform (with it). Encoded as the object it holds.
    public enum Reference: Codable, Sendable, Hashable {
        case restartInPlace(Baseline)
        case drill(Figures)

        public init(from decoder: any Decoder) throws {
            let keys = try decoder.container(keyedBy: Figures.CodingKeys.self)
            self = keys.contains(.totalMs) ? .drill(try Figures(from: decoder)) : .restartInPlace(try Baseline(from: decoder))
        }

        public func encode(to encoder: any Encoder) throws {
            switch self {
            case .restartInPlace(let b): try b.encode(to: encoder)
            case .drill(let f): try f.encode(to: encoder)
            }
        }
    }

    enum CodingKeys: String, CodingKey {
        case plexus, baseline, ratio, target, targetMs = "target_ms", ratioToRestartInPlace = "ratio_to_restart_in_place"
        case restartInPlace = "restart_in_place", note
    }
}

// MARK: - Storage

/// One side of the storage scenario: fio's figures for the pattern's direction (the median
/// round by IOPS), each round's IOPS, and what the side is.
public struct StorageFigures: Codable, Sendable, Hashable {
    public var iops: Double
    public var mbytesPerSecond: Double
    /// fio's completion latency (clat) percentiles, in microseconds.
    public var p50: Double
    public var p99: Double
    /// I/Os fio completed in the median round.
    public var ios: UInt64
    public var runsIOPS: [Double]
    public var method: String
    /// Plexus: the SCSI commands the exporter submitted in the median round, and those that failed.
    public var scsiCommands: UInt64?
    public var failed: UInt64?

    enum CodingKeys: String, CodingKey {
        case iops, mbytesPerSecond = "mbytes_per_s", p50 = "p50_us", p99 = "p99_us", ios, runsIOPS = "runs_iops", method
        case scsiCommands = "scsi_commands", failed
    }
}

/// storage: fio through NBD into a processor's disk, against nbdkit's file plugin on the same
/// file (`baseline`, `ratio` = Plexus IOPS ÷ nbdkit IOPS) and fio with io_uring on the file
/// itself (`limit`).
public struct StorageResult: Codable, Sendable, Hashable {
    public var plexus: StorageFigures
    public var baseline: StorageFigures
    public var limit: StorageFigures
    public var ratio: Double
    public var ratioToLimit: Double
    public var target: Double?
    public var note: String

    enum CodingKeys: String, CodingKey {
        case plexus, baseline, limit, ratio, ratioToLimit = "ratio_to_limit", target, note
    }
}
