import PlexusCore
import PlexusRCLAN

/// Why a command failed below SCSI: its control node, or the way to it, is gone. A
/// ``StorageInitiator`` re-issues such a command to the other control node.
public enum TransportFailure: Sendable, Hashable, CustomStringConvertible {
    /// One of the adapter's RVIs failed the command's messages (``PlexusRCLAN/RVIFailure``).
    case rviFailed(RVIFailure)
    /// The control node's end of an RVI restarted or was reset: its state for the command is gone.
    case reset
    /// No STAT within the adapter's timeout.
    case timeout
    /// The adapter is not attached to its RVIs.
    case detached

    public var description: String {
        switch self {
        case .rviFailed(let f): "RVI failed (\(f))"
        case .reset: "control node reset"
        case .timeout: "no status within the timeout"
        case .detached: "adapter not attached"
        }
    }
}

/// How a command submitted to a ``HostAdapter`` (or a ``StorageInitiator``) ended.
public enum StorageOutcome: Sendable, Hashable {
    /// The control node's STAT: SCSI status, residual, sense (with CHECK CONDITION) and, for a
    /// protocol-control operation, its result.
    case status(scsiStatus: UInt8, residual: UInt32, sense: InlineBytes<252>, control: ControlResult)
    /// No STAT will come (see ``TransportFailure``).
    case transportFailure(TransportFailure)
}

/// A completed command: the caller's tag, the sequence number it travelled with, its outcome.
public struct StorageCompletion: Sendable, Hashable {
    public var tag: UInt64
    public var sequence: UInt64
    public var outcome: StorageOutcome

    /// GOOD status (and, for a control operation, ``ControlResult/done``).
    public var isGood: Bool {
        if case .status(let s, _, _, let c) = outcome { return s == SCSIStatus.good.rawValue && c == .done }
        return false
    }

    /// The sense key and additional sense code of a CHECK CONDITION, read in place from fixed or
    /// descriptor-format sense (no allocation); nil for any other outcome.
    public var senseCode: (key: SenseKey?, asc: UInt8)? {
        guard case .status(let status, _, let sense, _) = outcome, status == SCSIStatus.checkCondition.rawValue,
              sense.count >= 3 else { return nil }
        if sense[0] & 0x7F >= 0x72 { return (SenseKey(rawValue: sense[1] & 0x0F), sense[2]) }
        return (SenseKey(rawValue: sense[2] & 0x0F), sense.count >= 13 ? sense[12] : 0)
    }

    /// The sense data of a CHECK CONDITION, parsed.
    public var sense: SenseData? {
        guard case .status(_, _, let sense, _) = outcome, !sense.isEmpty else { return nil }
        var bytes = [UInt8](repeating: 0, count: sense.count)
        for i in 0..<sense.count { bytes[i] = sense[i] }
        return bytes.withUnsafeBytes { SenseData(parsing: $0.bytes) }
    }
}

/// Gets the completions of a ``HostAdapter`` or ``StorageInitiator``, on the engine thread.
public protocol StorageCompletionHandler: AnyObject {
    func completed(_ completion: StorageCompletion, layer: RCLAN)
}

/// Why a submission was refused; each case names what is wrong.
public enum StorageSubmitError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Every command slot is in use: try again after a completion.
    case full
    /// The adapter has no RVIs (``HostAdapter/attach(command:data:region:layer:)`` first).
    case detached
    /// The command would not encode (no CDB, segments without a direction …).
    case invalid(StorageMessageError)
    /// A segment names memory outside the adapter's region, or another region.
    case segmentOutsideRegion(index: Int)

    public var description: String {
        switch self {
        case .full: "every command slot is in use"
        case .detached: "the adapter is not attached"
        case .invalid(let e): "invalid command: \(e)"
        case .segmentOutsideRegion(let i): "segment \(i) is not inside the adapter's region"
        }
    }
}

/// Counters of a host adapter.
public struct HostAdapterCounters: Sendable, Hashable, Codable {
    public var submitted: UInt64 = 0
    public var completed: UInt64 = 0
    /// Commands that ended with a transport failure, by cause.
    public var timeouts: UInt64 = 0
    public var rviFailures: UInt64 = 0
    public var resets: UInt64 = 0
    /// BUFs answered (segments RDMA-written) and their RDMA WRITEs.
    public var buffersAnswered: UInt64 = 0
    public var rdmaWrites: UInt64 = 0
    /// STATs or BUFs for no command in flight (late, after a timeout) and undecodable messages.
    public var stale: UInt64 = 0
    public var malformed: UInt64 = 0
    public init() {}
}
