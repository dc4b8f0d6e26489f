// The Plexus frame header. Every datagram on a fabric starts with one. See docs/wire-format.md.
//
// The seed ("RCLAN layer", "Giganet Driver") carries frames between registered buffers with
// no checksum: the fabric is trusted to detect corruption. Plexus keeps that (no checksum on
// internal frames) but bounds-checks every field on receipt, so a malformed frame is rejected
// and counted, never trusted.

/// Sizes and limits of Plexus frames.
public enum FrameLayout {
    /// The largest payload of one frame: the internal MTU of the platform (seed: 16896 bytes).
    public static let maxPayload = 16896
    /// The size of the fixed frame header, in bytes.
    public static let headerSize = 64
    /// The wire protocol version this build speaks. Version 2 added the RVI flags
    /// (`sequenced`, `coalesced`, `control`) of the reliability layer; version 3 the receive
    /// overrun counts in the reliability layer's control payload; version 4 the `rdma` flag
    /// (RDMA WRITE carried in an RVI's sequence).
    public static let version: UInt8 = 4
    /// The magic number that opens every frame ("PL").
    public static let magic: UInt16 = 0x504C
    /// The largest UDP payload IPv4 carries.
    public static let maxDatagram = 65507
    /// The smallest path MTU Plexus accepts (IPv4's minimum reassembly size).
    public static let minimumPathMTU = 576
    /// The smallest MTU a peer's adapter may have (IPv6's minimum link MTU): the engine keeps
    /// segment records for frames cut to this size, so a peer with a smaller MTU than the
    /// engine's path MTU never runs them out.
    public static let smallestPeerMTU = 1280
    /// IPv4 + UDP header bytes taken from a path MTU.
    public static let ipUDPOverhead = 28
}

/// What a frame carries.
public enum FrameType: UInt8, Sendable, CaseIterable {
    /// A message for the receive queue of the destination VI.
    case data = 1
    /// An emulated RDMA WRITE into a region registered at the destination.
    case rdmaWrite = 2
    /// The target's answer to an RDMA WRITE it refused (protection error).
    case rdmaNak = 3
}

/// Header flag bits.
public struct FrameFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// The `immediate` field is valid and completes a receive at the target (RDMA WRITE only).
    public static let immediate = FrameFlags(rawValue: 1 << 0)
    /// The frame is one segment of a larger message (`messageLength`, `segmentOffset` valid).
    public static let segment = FrameFlags(rawValue: 1 << 1)
    /// The frame belongs to a redundant VI (RCLAN layer): `sequence`, `acknowledgement`,
    /// `epoch` are valid, `immediate` carries the receiver's credit and the top 32 bits of
    /// `remoteOffset` the epoch the sender believes its peer has. Data frames only.
    public static let sequenced = FrameFlags(rawValue: 1 << 2)
    /// The payload is a run of records, each a 16-bit big-endian length and that many bytes:
    /// several small messages in one frame. Requires `sequenced`.
    public static let coalesced = FrameFlags(rawValue: 1 << 3)
    /// An RVI control frame (acknowledgements, heartbeat probe or echo); its sequence number is
    /// not consumed. Requires `sequenced`, excludes `coalesced`.
    public static let control = FrameFlags(rawValue: 1 << 4)
    /// An RDMA WRITE, or the refusal of one, carried in an RVI's sequence: the payload ends with
    /// the reliability layer's 32-byte RDMA trailer (region key, offset, immediate, kind). Requires
    /// `sequenced`, excludes `coalesced` and `control`.
    public static let rdma = FrameFlags(rawValue: 1 << 5)
    /// The flags the reliability layer sets through ``ReliabilityFields/flags``.
    public static let reliability: FrameFlags = [.sequenced, .coalesced, .control, .rdma]
    /// Every flag this version defines; any other bit is a malformed frame.
    public static let known: FrameFlags = [.immediate, .segment, .sequenced, .coalesced, .control, .rdma]
}

/// The 64-byte frame header, decoded. All fields are big-endian on the wire.
public struct FrameHeader: Sendable, Hashable {
    public var type: FrameType
    public var flags: FrameFlags
    /// The VI number at the receiver.
    public var destinationVI: UInt32
    /// The VI number at the sender.
    public var sourceVI: UInt32
    /// Connection epoch (used by the reliability layer; zero in the fabric core).
    public var epoch: UInt32
    /// Bytes of payload that follow the header in this datagram.
    public var payloadLength: UInt32
    /// Sequence number (reliability layer).
    public var sequence: UInt64
    /// Acknowledgement (reliability layer).
    public var acknowledgement: UInt64
    /// RDMA region key (rdmaWrite), message identifier (segmented data), or zero.
    public var key: UInt32
    /// RDMA immediate data, or the error code of an rdmaNak.
    public var immediate: UInt32
    /// Byte offset into the remote region (rdmaWrite).
    public var remoteOffset: UInt64
    /// Total payload of the message this datagram belongs to.
    public var messageLength: UInt32
    /// Offset of this datagram's payload inside its message.
    public var segmentOffset: UInt32

    public init(
        type: FrameType, flags: FrameFlags = [], destinationVI: UInt32, sourceVI: UInt32,
        epoch: UInt32 = 0, payloadLength: UInt32, sequence: UInt64 = 0, acknowledgement: UInt64 = 0,
        key: UInt32 = 0, immediate: UInt32 = 0, remoteOffset: UInt64 = 0,
        messageLength: UInt32? = nil, segmentOffset: UInt32 = 0
    ) {
        self.type = type
        self.flags = flags
        self.destinationVI = destinationVI
        self.sourceVI = sourceVI
        self.epoch = epoch
        self.payloadLength = payloadLength
        self.sequence = sequence
        self.acknowledgement = acknowledgement
        self.key = key
        self.immediate = immediate
        self.remoteOffset = remoteOffset
        self.messageLength = messageLength ?? payloadLength
        self.segmentOffset = segmentOffset
    }
}

/// Why a received datagram was rejected before it reached any VI.
public enum FrameDecodeError: Error, Sendable, Hashable, CaseIterable {
    /// Shorter than a header.
    case truncated
    /// The first two bytes are not the Plexus magic.
    case badMagic
    /// A protocol version this build does not speak.
    case unsupportedVersion
    /// The header-length field is not 64.
    case badHeaderLength
    /// An unknown frame type.
    case unknownType
    /// A flag bit this version does not define, or a flag not valid for the type.
    case badFlags
    /// The payload-length field disagrees with the datagram's size, or exceeds 16896.
    case badPayloadLength
    /// Segment offset/length fields out of bounds.
    case badSegment
    /// RDMA offset + length overflows.
    case badRemoteOffset
}

// MARK: - Encoding and decoding (raw memory, no allocation)

extension FrameHeader {
    /// Writes the header into the first 64 bytes at `p`.
    @inlinable
    public func encode(into p: UnsafeMutableRawPointer) {
        p.storeBytes(of: FrameLayout.magic.bigEndian, toByteOffset: 0, as: UInt16.self)
        p.storeBytes(of: FrameLayout.version, toByteOffset: 2, as: UInt8.self)
        p.storeBytes(of: type.rawValue, toByteOffset: 3, as: UInt8.self)
        p.storeBytes(of: flags.rawValue.bigEndian, toByteOffset: 4, as: UInt16.self)
        p.storeBytes(of: UInt16(FrameLayout.headerSize).bigEndian, toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: destinationVI.bigEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: sourceVI.bigEndian, toByteOffset: 12, as: UInt32.self)
        p.storeBytes(of: epoch.bigEndian, toByteOffset: 16, as: UInt32.self)
        p.storeBytes(of: payloadLength.bigEndian, toByteOffset: 20, as: UInt32.self)
        p.storeBytes(of: sequence.bigEndian, toByteOffset: 24, as: UInt64.self)
        p.storeBytes(of: acknowledgement.bigEndian, toByteOffset: 32, as: UInt64.self)
        p.storeBytes(of: key.bigEndian, toByteOffset: 40, as: UInt32.self)
        p.storeBytes(of: immediate.bigEndian, toByteOffset: 44, as: UInt32.self)
        p.storeBytes(of: remoteOffset.bigEndian, toByteOffset: 48, as: UInt64.self)
        p.storeBytes(of: messageLength.bigEndian, toByteOffset: 56, as: UInt32.self)
        p.storeBytes(of: segmentOffset.bigEndian, toByteOffset: 60, as: UInt32.self)
    }

    /// Decodes and validates the header of a datagram of `length` bytes at `p`.
    ///
    /// Every field is bounds-checked against the datagram and the protocol's limits; nothing
    /// after the header is read.
    @inlinable
    public static func decode(
        from p: UnsafeRawPointer, length: Int
    ) -> Result<FrameHeader, FrameDecodeError> {
        if length < FrameLayout.headerSize { return .failure(.truncated) }
        @inline(__always) func u16(_ o: Int) -> UInt16 { UInt16(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
        @inline(__always) func u32(_ o: Int) -> UInt32 { UInt32(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        @inline(__always) func u64(_ o: Int) -> UInt64 { UInt64(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        if u16(0) != FrameLayout.magic { return .failure(.badMagic) }
        if p.load(fromByteOffset: 2, as: UInt8.self) != FrameLayout.version { return .failure(.unsupportedVersion) }
        guard let type = FrameType(rawValue: p.load(fromByteOffset: 3, as: UInt8.self)) else {
            return .failure(.unknownType)
        }
        let flags = FrameFlags(rawValue: u16(4))
        if !FrameFlags.known.isSuperset(of: flags) { return .failure(.badFlags) }
        if flags.contains(.immediate) && type != .rdmaWrite { return .failure(.badFlags) }
        if flags.contains(.segment) && type != .data { return .failure(.badFlags) }
        if !flags.isDisjoint(with: .reliability) {
            if type != .data || !flags.contains(.sequenced) { return .failure(.badFlags) }
            if flags.contains(.coalesced) && flags.contains(.control) { return .failure(.badFlags) }
            if flags.contains(.rdma) && !flags.isDisjoint(with: [.coalesced, .control]) { return .failure(.badFlags) }
        }
        if Int(u16(6)) != FrameLayout.headerSize { return .failure(.badHeaderLength) }
        let payloadLength = u32(20)
        if Int(payloadLength) != length - FrameLayout.headerSize || Int(payloadLength) > FrameLayout.maxPayload {
            return .failure(.badPayloadLength)
        }
        let messageLength = u32(56)
        let segmentOffset = u32(60)
        if flags.contains(.segment) {
            if Int(messageLength) > FrameLayout.maxPayload || payloadLength == 0
                || UInt64(segmentOffset) + UInt64(payloadLength) > UInt64(messageLength)
            {
                return .failure(.badSegment)
            }
        } else if messageLength != payloadLength || segmentOffset != 0 {
            return .failure(.badSegment)
        }
        let remoteOffset = u64(48)
        if type == .rdmaWrite && remoteOffset > UInt64.max - UInt64(payloadLength) {
            return .failure(.badRemoteOffset)
        }
        return .success(
            FrameHeader(
                type: type, flags: flags, destinationVI: u32(8), sourceVI: u32(12), epoch: u32(16),
                payloadLength: payloadLength, sequence: u64(24), acknowledgement: u64(32), key: u32(40),
                immediate: u32(44), remoteOffset: remoteOffset, messageLength: messageLength,
                segmentOffset: segmentOffset))
    }
}

extension FrameHeader {
    /// Encodes into a fresh 64-byte array (tests and tools; the data path encodes in place).
    public var bytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: FrameLayout.headerSize) { buf, n in
            encode(into: UnsafeMutableRawPointer(buf.baseAddress!))
            n = FrameLayout.headerSize
        }
    }

    /// Decodes a datagram held in an array (tests and tools).
    public static func decode(_ datagram: [UInt8]) -> Result<FrameHeader, FrameDecodeError> {
        datagram.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return .failure(.truncated) }
            return decode(from: base, length: raw.count)
        }
    }
}
