/// Counters of one VI. Every frame in or out and every kind of drop has a counter.
public struct VICounters: Sendable, Hashable, Codable {
    public var framesOut: UInt64 = 0
    public var bytesOut: UInt64 = 0
    public var framesIn: UInt64 = 0
    public var bytesIn: UInt64 = 0
    /// Sends the kernel reported failed (e.g. the peer's port is closed).
    public var sendErrors: UInt64 = 0
    /// Frames that arrived with no receive posted on this VI, and were dropped.
    public var receiveQueueEmptyDrops: UInt64 = 0
    /// RDMA WRITE datagrams that landed in a region through this VI, and their bytes.
    public var rdmaWritesLanded: UInt64 = 0
    public var rdmaBytesLanded: UInt64 = 0
    /// RDMA WRITE datagrams refused at this end (bad key, wrong peer, out of bounds, no permission).
    public var rdmaRejected: UInt64 = 0
    /// Protection errors the target reported for writes sent from this VI.
    public var rdmaProtectionErrors: UInt64 = 0
    /// Receives completed by RDMA immediate data.
    public var immediates: UInt64 = 0
    public init() {}
}

/// Counters of one port (one fabric).
public struct PortCounters: Sendable, Hashable, Codable {
    /// Datagrams and bytes (headers included) the port sent and received.
    public var datagramsOut: UInt64 = 0
    public var wireBytesOut: UInt64 = 0
    public var datagramsIn: UInt64 = 0
    public var wireBytesIn: UInt64 = 0
    /// Frames (messages, after reassembly) delivered to or sent from VIs.
    public var framesOut: UInt64 = 0
    public var framesIn: UInt64 = 0
    /// Segments sent and received for messages larger than the path MTU.
    public var segmentsOut: UInt64 = 0
    public var segmentsIn: UInt64 = 0
    /// Malformed datagrams, by reason.
    public var malformedTruncated: UInt64 = 0
    public var malformedBadMagic: UInt64 = 0
    public var malformedUnsupportedVersion: UInt64 = 0
    public var malformedBadHeaderLength: UInt64 = 0
    public var malformedUnknownType: UInt64 = 0
    public var malformedBadFlags: UInt64 = 0
    public var malformedBadPayloadLength: UInt64 = 0
    public var malformedBadSegment: UInt64 = 0
    public var malformedBadRemoteOffset: UInt64 = 0
    /// Frames for a VI number that is not established on this port.
    public var unknownVI: UInt64 = 0
    /// Frames for an established VI but from another address or VI than its peer.
    public var wrongPeer: UInt64 = 0
    /// Frames dropped because the target VI had no receive posted.
    public var receiveQueueEmpty: UInt64 = 0
    /// Times the kernel found the provided-buffer ring empty (`ENOBUFS`): receiving stalled
    /// until a buffer came back (the datagrams wait in the socket; not a drop by itself).
    public var bufferRingEmpty: UInt64 = 0
    /// Datagrams the kernel dropped at this port's socket because its receive queue was full
    /// (receive-buffer overruns: this end read too slowly; not loss on the fabric). Counted
    /// from the kernel's own drop count, which arrives with the next datagram read (SO_RXQ_OVFL).
    public var receiveOverruns: UInt64 = 0
    /// Datagrams larger than a receive buffer (cut by the kernel) and dropped.
    public var truncatedDatagrams: UInt64 = 0
    /// Failed sends (kernel errors).
    public var sendErrors: UInt64 = 0
    /// RDMA WRITEs refused at this port.
    public var rdmaRejected: UInt64 = 0
    /// Segments received twice and ignored.
    public var duplicateSegments: UInt64 = 0
    /// Partial messages abandoned (a newer message replaced them, no context was free, or the
    /// pool had no frame to spare: ``Engine/reassemblyReserve``).
    public var reassemblyDropped: UInt64 = 0
    /// sendmsg calls that carried several datagrams with UDP GSO, and the datagrams they carried.
    public var gsoBatches: UInt64 = 0
    public var gsoDatagrams: UInt64 = 0
    /// Injected faults: frames dropped (out, or in while down/partitioned), sent twice, delayed,
    /// and held back to be overtaken.
    public var faultDropped: UInt64 = 0
    public var faultDuplicated: UInt64 = 0
    public var faultDelayed: UInt64 = 0
    public var faultReordered: UInt64 = 0
    /// Zero-copy sends issued, and those the kernel reported it had copied anyway.
    public var zeroCopySends: UInt64 = 0
    public var zeroCopyCopied: UInt64 = 0
    public init() {}

    /// All malformed datagrams, whatever the reason.
    public var malformed: UInt64 {
        malformedTruncated + malformedBadMagic + malformedUnsupportedVersion + malformedBadHeaderLength
            + malformedUnknownType + malformedBadFlags + malformedBadPayloadLength + malformedBadSegment
            + malformedBadRemoteOffset
    }

    /// Every datagram or frame Plexus dropped at the port, whatever the reason (receive overruns,
    /// which the kernel dropped before Plexus saw them, are counted apart).
    public var dropped: UInt64 {
        malformed + unknownVI + wrongPeer + receiveQueueEmpty + truncatedDatagrams
            + rdmaRejected + reassemblyDropped
    }

    mutating func countMalformed(_ e: FrameDecodeError) {
        switch e {
        case .truncated: malformedTruncated &+= 1
        case .badMagic: malformedBadMagic &+= 1
        case .unsupportedVersion: malformedUnsupportedVersion &+= 1
        case .badHeaderLength: malformedBadHeaderLength &+= 1
        case .unknownType: malformedUnknownType &+= 1
        case .badFlags: malformedBadFlags &+= 1
        case .badPayloadLength: malformedBadPayloadLength &+= 1
        case .badSegment: malformedBadSegment &+= 1
        case .badRemoteOffset: malformedBadRemoteOffset &+= 1
        }
    }
}
