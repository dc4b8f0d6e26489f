import PlexusCore

/// The last 32 bytes of an RVI frame flagged `rdma`: an RDMA WRITE carried in the RVI's
/// sequence (the bytes before the trailer land in the peer's region), or the refusal of one (the
/// trailer is the whole payload), as docs/wire-format.md lays it out:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | region key |
/// | 4 | 4 | immediate data (a write with the `immediate` bit), else 0 |
/// | 8 | 8 | byte offset in the region |
/// | 16 | 1 | kind: 1 write, 2 refusal |
/// | 17 | 1 | flags: bit 0 `immediate` (writes only) |
/// | 18 | 2 | reserved, zero |
/// | 20 | 4 | a refusal's ``RDMAError`` code; 0 on a write |
/// | 24 | 4 | bytes written: on a write, exactly the bytes before the trailer; on a refusal, the refused write's |
/// | 28 | 4 | reserved, zero |
///
/// Integers big-endian, like the frame header. A trailer at the end (not a header at the front)
/// lets a caller fill a frame's payload from its first byte and send it as it is.
public struct RDMATrailer: Sendable, Hashable {
    public static let size = 32

    public enum Kind: UInt8, Sendable, Hashable {
        case write = 1
        case refusal = 2
    }

    public var kind: Kind
    public var region: RegionKey
    public var offset: UInt64
    public var immediate: UInt32?
    /// Why the write was refused (refusals only).
    public var error: RDMAError?
    public var length: UInt32

    public init(kind: Kind, region: RegionKey, offset: UInt64, immediate: UInt32? = nil, error: RDMAError? = nil,
                length: UInt32) {
        self.kind = kind
        self.region = region
        self.offset = offset
        self.immediate = immediate
        self.error = error
        self.length = length
    }

    /// Parses the trailer at the end of `payload`, or nil when the payload is malformed: shorter
    /// than the trailer, an unknown kind or flag, reserved bytes that are not zero, immediate data
    /// without the `immediate` flag, a write whose
    /// length is not the bytes before its trailer or that carries an error code, a refusal with
    /// bytes before its trailer, an immediate on a refusal, or an unknown error code.
    public init?(parsing payload: RawSpan) {
        let n = payload.byteCount
        guard n >= Self.size else { return nil }
        let t = n - Self.size
        @inline(__always) func u32(_ o: Int) -> UInt32 {
            UInt32(bigEndian: payload.unsafeLoadUnaligned(fromByteOffset: t + o, as: UInt32.self))
        }
        guard let kind = Kind(rawValue: payload.unsafeLoad(fromByteOffset: t + 16, as: UInt8.self)) else { return nil }
        let flags = payload.unsafeLoad(fromByteOffset: t + 17, as: UInt8.self)
        guard flags & ~1 == 0, flags & 1 != 0 || u32(4) == 0,
              payload.unsafeLoadUnaligned(fromByteOffset: t + 18, as: UInt16.self) == 0, u32(28) == 0
        else { return nil }
        let code = u32(20)
        let length = u32(24)
        switch kind {
        case .write:
            guard code == 0, Int(length) == t else { return nil }
            error = nil
        case .refusal:
            guard t == 0, flags == 0, let e = RDMAError(rawValue: code) else { return nil }
            error = e
        }
        self.kind = kind
        region = RegionKey(rawValue: u32(0))
        immediate = flags & 1 != 0 ? u32(4) : nil
        offset = UInt64(bigEndian: payload.unsafeLoadUnaligned(fromByteOffset: t + 8, as: UInt64.self))
        self.length = length
    }

    /// Writes the trailer at byte `at` of `buffer` (which must have room for it).
    public func store(into buffer: UnsafeMutableRawBufferPointer, at: Int) {
        precondition(at >= 0 && at + Self.size <= buffer.count, "RDMATrailer.store: no room for the trailer")
        buffer.storeBytes(of: region.rawValue.bigEndian, toByteOffset: at, as: UInt32.self)
        buffer.storeBytes(of: (immediate ?? 0).bigEndian, toByteOffset: at + 4, as: UInt32.self)
        buffer.storeBytes(of: offset.bigEndian, toByteOffset: at + 8, as: UInt64.self)
        buffer.storeBytes(of: kind.rawValue, toByteOffset: at + 16, as: UInt8.self)
        buffer.storeBytes(of: UInt8(immediate == nil ? 0 : 1), toByteOffset: at + 17, as: UInt8.self)
        buffer.storeBytes(of: UInt16(0), toByteOffset: at + 18, as: UInt16.self)
        buffer.storeBytes(of: (error?.rawValue ?? 0).bigEndian, toByteOffset: at + 20, as: UInt32.self)
        buffer.storeBytes(of: length.bigEndian, toByteOffset: at + 24, as: UInt32.self)
        buffer.storeBytes(of: UInt32(0), toByteOffset: at + 28, as: UInt32.self)
    }
}
