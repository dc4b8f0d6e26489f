import PlexusCore

/// The payload of an RCLAN control frame (an acknowledgement, a probe or an echo; the frame
/// header carries the cumulative ack, the credit and both epochs), as docs/wire-format.md lays
/// it out:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | kinds: bit 0 probe, bit 1 echo |
/// | 1 | 1 | SACK block count (at most ``maxSackBlocks``) |
/// | 2 | 1 | legs the sender hears: bit 0 A, bit 1 B (a leg it declared down is clear) |
/// | 3 | 1 | reserved, zero |
/// | 4 | 4 | duplicate data frames the sender received (wrapping) |
/// | 8 | 8 | probe stamp |
/// | 16 | 8 | echoed stamp |
/// | 24 | 4 | receive overruns of the sender's socket on fabric A (wrapping) |
/// | 28 | 4 | the same on fabric B |
/// | 32 | 16 × count | SACK blocks: (first, end) sequence ranges held above the cumulative ack |
///
/// All integers big-endian. Parsing reads the fixed part into scalars (nothing is allocated);
/// the SACK blocks are read one at a time with ``sackBlock(_:in:)``.
public struct RVIControlPayload: Sendable, Hashable {
    public static let headerSize = 32
    public static let maxSackBlocks = 16

    public var kinds: UInt8
    public var sackBlocks: Int
    public var hears: UInt8
    public var duplicates: UInt32
    public var probeStamp: UInt64
    public var echoStamp: UInt64
    public var overrunsA: UInt32
    public var overrunsB: UInt32

    public var isProbe: Bool { kinds & 1 != 0 }
    public var isEcho: Bool { kinds & 2 != 0 }
    /// Whether the sender hears this end on leg `l` (0: A, 1: B).
    public func hears(leg l: Int) -> Bool { hears & (1 << l) != 0 }

    /// Parses `p`, or nil when it is malformed: shorter than the header, more SACK blocks than
    /// allowed, or a length that does not match the block count exactly.
    public init?(parsing p: RawSpan) {
        guard p.byteCount >= Self.headerSize else { return nil }
        let blocks = Int(p.unsafeLoad(fromByteOffset: 1, as: UInt8.self))
        guard blocks <= Self.maxSackBlocks, p.byteCount == Self.headerSize + blocks * 16 else { return nil }
        kinds = p.unsafeLoad(fromByteOffset: 0, as: UInt8.self)
        sackBlocks = blocks
        hears = p.unsafeLoad(fromByteOffset: 2, as: UInt8.self)
        duplicates = UInt32(bigEndian: p.unsafeLoadUnaligned(fromByteOffset: 4, as: UInt32.self))
        probeStamp = UInt64(bigEndian: p.unsafeLoadUnaligned(fromByteOffset: 8, as: UInt64.self))
        echoStamp = UInt64(bigEndian: p.unsafeLoadUnaligned(fromByteOffset: 16, as: UInt64.self))
        overrunsA = UInt32(bigEndian: p.unsafeLoadUnaligned(fromByteOffset: 24, as: UInt32.self))
        overrunsB = UInt32(bigEndian: p.unsafeLoadUnaligned(fromByteOffset: 28, as: UInt32.self))
    }

    /// SACK block `i` (below ``sackBlocks``) of the payload `p` this was parsed from.
    public func sackBlock(_ i: Int, in p: RawSpan) -> (first: UInt64, end: UInt64) {
        precondition(i >= 0 && i < sackBlocks && p.byteCount == Self.headerSize + sackBlocks * 16)
        let o = Self.headerSize + i * 16
        return (UInt64(bigEndian: p.unsafeLoadUnaligned(fromByteOffset: o, as: UInt64.self)),
                UInt64(bigEndian: p.unsafeLoadUnaligned(fromByteOffset: o + 8, as: UInt64.self)))
    }
}
