import PlexusCore
import PlexusRCLAN

/// How a processor may use a mapped logical unit.
public enum StorageAccess: String, Sendable, Hashable, Codable, CaseIterable {
    case readWrite = "read-write"
    case readOnly = "read-only"
}

/// One entry of a processor's storage map (seed 004, "Configuration Component"): the
/// (target, LUN) the processor uses, in its PAN's own numbering, and the backing file or block
/// device on the control node that serves it, with the processor's access.
public struct StorageMapping: Sendable, Hashable {
    public var target: UInt32
    public var lun: UInt32
    /// The backing file or block device, opened on the engine's ring; or a LUN on an iSCSI
    /// SAN, `iscsi://host[:port]/target-iqn/lun` (``ISCSIURL``), its block size the SAN's.
    public var path: String
    public var access: StorageAccess
    /// The logical block size the processor sees.
    public var blockSize: Int
    /// Open with O_DIRECT where the file system allows it.
    public var direct: Bool

    public init(target: UInt32, lun: UInt32, path: String, access: StorageAccess = .readWrite, blockSize: Int = 512,
                direct: Bool = false) {
        self.target = target
        self.lun = lun
        self.path = path
        self.access = access
        self.blockSize = blockSize
        self.direct = direct
    }
}

extension StorageMapping {
    /// A mapping written `TARGET:LUN=PATH`, with `:ro` after the path for read-only (the form
    /// of definition files); nil when it is not that.
    public init?(entry: String) {
        let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return nil }
        let tl = parts[0].split(separator: ":").map(String.init)
        guard tl.count == 2, let t = UInt32(tl[0]), let l = UInt32(tl[1]) else { return nil }
        var path = parts[1]
        var access = StorageAccess.readWrite
        if path.hasSuffix(":ro") {
            path.removeLast(3)
            access = .readOnly
        }
        guard !path.isEmpty else { return nil }
        self.init(target: t, lun: l, path: path, access: access)
    }

    /// The mapping as a definition file writes it.
    public var entry: String { "\(target):\(lun)=\(path)\(access == .readOnly ? ":ro" : "")" }
}

/// In JSON (the platform store's personalities, the management API): `target`, `lun`,
/// `storage` (the path or SAN address) and `access`; the block size and O_DIRECT take their
/// defaults.
extension StorageMapping: Codable {
    enum CodingKeys: String, CodingKey { case target, lun, storage, access }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(target: try c.decode(UInt32.self, forKey: .target), lun: try c.decode(UInt32.self, forKey: .lun),
                  path: try c.decode(String.self, forKey: .storage), access: try c.decode(StorageAccess.self, forKey: .access))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(target, forKey: .target)
        try c.encode(lun, forKey: .lun)
        try c.encode(path, forKey: .storage)
        try c.encode(access, forKey: .access)
    }
}

/// Errors of the storage target's and host adapter's setup, each naming what is wrong.
public enum StorageSetupError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The engine could not open the backing file.
    case cannotOpen(path: String, reason: String)
    /// Two entries of one map name the same (target, LUN).
    case duplicateMapping(target: UInt32, lun: UInt32)
    /// An RVI is not open on this layer, or is already used by another processor.
    case rviUnavailable(RVI)
    /// The staging region could not be registered, or no block I/O tokens were left.
    case resources(String)
    /// A size or count is out of its bounds.
    case badParameter(String)

    public var description: String {
        switch self {
        case .cannotOpen(let p, let r): "cannot open \(p): \(r)"
        case .duplicateMapping(let t, let l): "(target \(t), LUN \(l)) is mapped twice"
        case .rviUnavailable(let r): "\(r) is not open or is already in use"
        case .resources(let s): "out of resources: \(s)"
        case .badParameter(let s): s
        }
    }
}

/// Counters of a storage target, over all its processors.
public struct StorageTargetCounters: Sendable, Hashable, Codable {
    /// CMDs decoded and accepted (SCSI and protocol-control).
    public var commands: UInt64 = 0
    /// STATs sent.
    public var statuses: UInt64 = 0
    /// READ and WRITE commands that reached the backend, and their bytes.
    public var reads: UInt64 = 0
    public var writes: UInt64 = 0
    public var bytesRead: UInt64 = 0
    public var bytesWritten: UInt64 = 0
    /// SYNCHRONIZE CACHE commands that reached the backend.
    public var flushes: UInt64 = 0
    /// Commands for a (target, LUN) outside the processor's map: refused, never sent to a backend.
    public var unmappedRefused: UInt64 = 0
    /// Commands completed with DATA PROTECT (a write to a read-only mapping).
    public var dataProtectRefused: UInt64 = 0
    /// CHECK CONDITION completions of any cause.
    public var checkConditions: UInt64 = 0
    /// Messages that could not be decoded, or arrived on the wrong RVI, or named no command.
    public var malformed: UInt64 = 0
    /// Malformed CMDs answered with a control STAT ``ControlResult/malformedCommand``.
    public var malformedAnswered: UInt64 = 0
    /// CMDs that waited in the queue for a staging slot.
    public var queued: UInt64 = 0
    /// CMDs refused with TASK SET FULL (the queue was full too).
    public var taskSetFull: UInt64 = 0
    /// Block I/O operations that failed or were refused by the engine.
    public var backendErrors: UInt64 = 0
    /// RDMA WRITEs of read data, and TRANs received.
    public var rdmaWrites: UInt64 = 0
    public var transfers: UInt64 = 0
    /// Protocol-control operations handled.
    public var controls: UInt64 = 0
    /// Commands dropped because the processor's RVIs failed or reset (its end of them is gone).
    public var abandoned: UInt64 = 0
    /// UNMAPs whose range was released (holes punched).
    public var unmaps: UInt64 = 0
    /// Maps replaced (a personality moved to or from a processor).
    public var mapChanges: UInt64 = 0
    /// iSCSI sessions that went down (connection lost, a command timed out, a reconnection
    /// that failed); ``StorageTarget/sanStatus`` names the LUN and the last error.
    public var sanFailures: UInt64 = 0
    /// Commands on an iSCSI LUN that ended in an error (answered with CHECK CONDITION).
    public var sanCommandErrors: UInt64 = 0
    /// Turns in which commands on an iSCSI LUN passed ``StorageTarget/sanTimeout``.
    public var sanTimeouts: UInt64 = 0
    /// iSCSI sessions that logged in again after going down.
    public var sanReconnections: UInt64 = 0

    public init() {}
}
