#if canImport(Glibc)
import Glibc
#endif

/// A control-plane or set-up error: what failed, and the errno behind it when there is one.
///
/// Errors on the data path are narrower enums (``SendError``, ``RDMAError``); this one is for
/// the things an operator fixes: a port that cannot bind, a ring the kernel refuses, bad
/// configuration.
public struct PlexusError: Error, CustomStringConvertible, Sendable, Hashable {
    /// The kind of failure. Opaque so that new kinds do not break callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: String
        public var description: String { raw }
        public static let configuration = Code(raw: "configuration")
        public static let system = Code(raw: "system")
        public static let ioUring = Code(raw: "io_uring")
        public static let noSuchVI = Code(raw: "no-such-vi")
        public static let viInUse = Code(raw: "vi-in-use")
        public static let noSuchRegion = Code(raw: "no-such-region")
        public static let resourceExhausted = Code(raw: "resource-exhausted")
        public static let engineStopped = Code(raw: "engine-stopped")
        public static let timedOut = Code(raw: "timed-out")
        /// The thing cannot be removed while it is in use (a region with block I/O in flight).
        public static let inUse = Code(raw: "in-use")
    }

    public let code: Code
    public let message: String
    /// The errno value behind a system failure, if any.
    public let errno: Int32?

    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String {
        if let errno {
            return "\(code): \(message): \(String(cString: strerror(errno))) (errno \(errno))"
        }
        return "\(code): \(message)"
    }

    static func system(_ what: String, _ err: Int32 = Glibc.errno) -> PlexusError {
        PlexusError(.system, what, errno: err)
    }
}

/// The header fields a reliability layer sets on a data frame (zero in the fabric core's own
/// sends). They travel in the frame header and come back on ``InboundFrame``.
public struct ReliabilityFields: Sendable, Hashable {
    public var sequence: UInt64
    public var acknowledgement: UInt64
    /// The sender's connection epoch.
    public var epoch: UInt32
    /// Frames the receiver of this frame may still send beyond `acknowledgement` (RVI credit;
    /// carried in the header's `immediate` field).
    public var credit: UInt32
    /// The epoch the sender believes its peer has, 0 when it has not heard from it (carried in
    /// the top 32 bits of `remoteOffset`).
    public var peerEpoch: UInt32
    /// The RVI flags of the frame: a subset of ``FrameFlags/reliability``.
    public var flags: FrameFlags
    public init(sequence: UInt64 = 0, acknowledgement: UInt64 = 0, epoch: UInt32 = 0, credit: UInt32 = 0,
                peerEpoch: UInt32 = 0, flags: FrameFlags = []) {
        self.sequence = sequence
        self.acknowledgement = acknowledgement
        self.epoch = epoch
        self.credit = credit
        self.peerEpoch = peerEpoch
        self.flags = flags.intersection(.reliability)
    }

    /// The fields of a received header.
    @usableFromInline
    init(header h: FrameHeader) {
        self.init(sequence: h.sequence, acknowledgement: h.acknowledgement, epoch: h.epoch, credit: h.immediate,
                  peerEpoch: UInt32(truncatingIfNeeded: h.remoteOffset >> 32), flags: h.flags)
    }
}

/// Why a send was refused. The frame is returned to the pool; nothing was put on the wire.
public enum SendError: Error, Sendable, Hashable {
    /// The VI is not established on this engine.
    case notEstablished
    /// The payload length is larger than ``FrameLayout/maxPayload``.
    case tooLarge
    /// The engine is shutting down.
    case stopping
    /// An RDMA WRITE whose remote offset plus length does not fit in 64 bits.
    case offsetOverflow
    /// A scatter-gather RDMA WRITE with no frames in its list.
    case emptyGather
    /// ``ReliabilityFields/flags`` name `coalesced`, `control` or `rdma` without `sequenced`,
    /// `coalesced` with `control`, or `rdma` with either.
    case invalidFlags
    /// A send to a peer address the VI was not established with.
    case noSuchPeerAddress
}

/// An RDMA WRITE failure, as reported to the writer or counted at the target.
public enum RDMAError: UInt32, Error, Sendable, Hashable, CaseIterable {
    /// No region with that key exists at the target.
    case badKey = 1
    /// The region exists but was not registered for the VI the write came from.
    case wrongPeer = 2
    /// The write would run past the end of the region.
    case outOfBounds = 3
    /// The region does not grant write permission.
    case noPermission = 4
}
