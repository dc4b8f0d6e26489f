/// One request of the transmission phase: a 28-byte header (and, for a write, its payload).
public struct NBDRequest: Sendable, Hashable {
    public var flags: UInt16
    public var type: UInt16
    /// The client's handle, returned in the reply.
    public var handle: UInt64
    public var offset: UInt64
    public var length: UInt32

    public init(flags: UInt16 = 0, type: UInt16, handle: UInt64, offset: UInt64 = 0, length: UInt32 = 0) {
        self.flags = flags
        self.type = type
        self.handle = handle
        self.offset = offset
        self.length = length
    }

    /// Reads a request header; nil when `bytes` is shorter than 28 bytes or the magic is wrong
    /// (the connection is then dropped: nothing after it can be framed).
    public init?(parsing bytes: RawSpan) {
        guard bytes.byteCount >= NBDProtocol.requestSize,
              bytes.loadBE(0, as: UInt32.self) == NBDProtocol.requestMagic
        else { return nil }
        self.init(flags: bytes.loadBE(4), type: bytes.loadBE(6), handle: bytes.loadBE(8), offset: bytes.loadBE(16),
                  length: bytes.loadBE(24))
    }

    /// Writes the header at the start of `output` (28 bytes).
    public func encode(into output: inout MutableRawSpan) {
        output.storeBE(NBDProtocol.requestMagic, at: 0)
        output.storeBE(flags, at: 4)
        output.storeBE(type, at: 6)
        output.storeBE(handle, at: 8)
        output.storeBE(offset, at: 16)
        output.storeBE(length, at: 24)
    }

    /// Whether a payload of ``length`` bytes follows the header (writes only): it is read even
    /// when the request is refused, so the stream stays framed.
    public var hasPayload: Bool { type == NBDProtocol.cmdWrite }

    /// What the server does with this request on `export`, with payloads of at most `maxPayload`.
    public func plan(on export: NBDExport, maxPayload: Int) -> NBDPlan {
        let maxPayload = export.payloadLimit(maxPayload)
        let fua = flags & NBDProtocol.cmdFlagFUA != 0
        // FUA is valid on every command (it is offered); any other flag is refused.
        guard flags & ~NBDProtocol.cmdFlagFUA == 0 else { return .refuse(NBDProtocol.errInvalid) }
        let size = export.size
        let inRange = offset <= size && UInt64(length) <= size - offset
        let alignment = UInt64(export.blockSizes(maxPayload: maxPayload).minimum)
        let aligned = offset % alignment == 0 && UInt64(length) % alignment == 0
        switch type {
        case NBDProtocol.cmdRead:
            guard Int(length) <= maxPayload, inRange, aligned else { return .refuse(NBDProtocol.errInvalid) }
            return .read
        case NBDProtocol.cmdWrite:
            if export.readOnly { return .refuse(NBDProtocol.errPerm) }
            guard Int(length) <= maxPayload, aligned else { return .refuse(NBDProtocol.errInvalid) }
            guard inRange else { return .refuse(NBDProtocol.errNoSpace) }
            return .write(fua: fua)
        case NBDProtocol.cmdDisconnect:
            return .disconnect
        case NBDProtocol.cmdFlush:
            return .flush
        case NBDProtocol.cmdTrim:
            if export.readOnly { return .refuse(NBDProtocol.errPerm) }
            guard export.canTrim, inRange, aligned else { return .refuse(NBDProtocol.errInvalid) }
            return .trim(fua: fua)
        default:
            return .refuse(NBDProtocol.errInvalid)
        }
    }
}

/// What the server does with a request.
public enum NBDPlan: Sendable, Hashable {
    /// Answer with this error (after reading a write's payload).
    case refuse(UInt32)
    case read
    case write(fua: Bool)
    case flush
    /// Unmap the range; with `fua`, flush before answering.
    case trim(fua: Bool)
    /// NBD_CMD_DISC: no reply, close.
    case disconnect
}

extension NBDPlan {
    /// The NBD error of a device failure (writes out of space: ENOSPC; read-only: EPERM;
    /// requests the device refuses as malformed: EINVAL; anything else: EIO).
    static func error(for e: BlockIOError) -> UInt32 {
        switch e {
        case .readOnly: NBDProtocol.errPerm
        case .noSpace: NBDProtocol.errNoSpace
        case .outOfRange, .misaligned, .bufferTooSmall, .unsupported: NBDProtocol.errInvalid
        case .notReady, .io: NBDProtocol.errIO
        }
    }
}
