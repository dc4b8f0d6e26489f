import CPlexus
#if canImport(Glibc)
import Glibc
#endif
import PlexusCore
import PlexusRCLAN

/// The message that carries one Ethernet frame over an RVI ("Virtual Ethernet Driver": the driver
/// "prepends the packet with a TLV header"): a 10-byte header, then the frame as the kernel
/// built it (destination MAC, source MAC, type, payload), at most 16886 bytes.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | kind: 1 Ethernet frame |
/// | 1 | 1 | flags: bit 0 relayed by the virtual LAN server; bit 1 checksum partial; bit 2 for the table only (an ARP packet's copy for the other control node, which learns from it and does not switch it); bit 3 a promiscuous copy (a unicast frame's clone for a listener, not for its destination) |
/// | 2 | 2 | VLAN number, big-endian |
/// | 4 | 2 | checksum start: where the L4 checksum's coverage begins, from the frame's first byte |
/// | 6 | 2 | checksum offset: where the checksum field is, from checksum start |
/// | 8 | 2 | reserved, zero |
///
/// The header is as long as the virtio-net header a TAP device puts before each packet, so a
/// packet read from a TAP becomes a LAN message in place, and travels as that same frame.
///
/// Nothing inside the platform is checksummed (the fabric's frames carry none, and RVIs deliver
/// exactly once). A frame whose sender's kernel left the TCP/UDP checksum to the NIC (checksum
/// offload, a virtio-net header with `NEEDS_CSUM`) travels with *checksum partial* and its start
/// and offset, and is written to the receiving TAP the same way, so neither kernel computes or
/// verifies that checksum. Bytes 4…7 are zero otherwise.
public enum LANMessage {
    public static let headerSize = 10
    public static let frameKind: UInt8 = 1
    public static let relayed: UInt8 = 1
    public static let checksumPartial: UInt8 = 2
    public static let tableOnly: UInt8 = 4
    public static let promiscuousCopy: UInt8 = 8
    /// An Ethernet header: two MACs and the type.
    public static let ethernetHeader = 14
    /// The largest Ethernet frame one message carries (the platform MTU less this header).
    public static let maxFrame = FrameLayout.maxPayload - headerSize

    /// Where a partial L4 checksum is to be completed (virtio-net's `csum_start`/`csum_offset`).
    public struct PartialChecksum: Sendable, Hashable {
        public var start: UInt16
        public var offset: UInt16
        public init(start: UInt16, offset: UInt16) {
            self.start = start
            self.offset = offset
        }
    }

    /// The parts of a received message, or why it is refused.
    public struct Parsed {
        public var vlan: VLANID
        public var relayed: Bool
        public var tableOnly: Bool
        public var promiscuousCopy: Bool = false
        public var checksum: PartialChecksum?
        public var destination: MACAddress
        public var source: MACAddress
    }

    /// The parts of a received message, or nil when it is refused.
    public static func parse(_ m: RawSpan) -> Parsed? { m.withUnsafeBytes { parse($0) } }

    /// `parse(_:)` of a `RawSpan` on the bytes a delivery hands over in place (the switching path).
    static func parse(_ m: UnsafeRawBufferPointer) -> Parsed? {
        guard m.count >= headerSize + ethernetHeader, m[0] == frameKind, m[1] & ~(relayed | checksumPartial | tableOnly | promiscuousCopy) == 0,
              m[8] == 0, m[9] == 0,
              let vlan = VLANID(Int(UInt16(m[2]) << 8 | UInt16(m[3])))
        else { return nil }
        var checksum: PartialChecksum?
        if m[1] & checksumPartial != 0 {
            let c = PartialChecksum(start: UInt16(m[4]) << 8 | UInt16(m[5]), offset: UInt16(m[6]) << 8 | UInt16(m[7]))
            // The checksum field (2 bytes) must lie inside the frame, after the Ethernet header.
            guard c.start >= ethernetHeader, Int(c.start) + Int(c.offset) + 2 <= m.count - headerSize else { return nil }
            checksum = c
        }
        let base = m.baseAddress! + headerSize
        return Parsed(vlan: vlan, relayed: m[1] & relayed != 0, tableOnly: m[1] & tableOnly != 0,
                      promiscuousCopy: m[1] & promiscuousCopy != 0, checksum: checksum, destination: MACAddress(at: base),
                      source: MACAddress(at: base + 6))
    }

    /// Writes a message header into `out` (≥ headerSize bytes).
    public static func encodeHeader(vlan: VLANID, relayed isRelayed: Bool, checksum: PartialChecksum?,
                                    into out: UnsafeMutableRawBufferPointer) {
        out[0] = frameKind
        out[1] = (isRelayed ? relayed : 0) | (checksum != nil ? checksumPartial : 0)
        out[2] = UInt8(vlan.rawValue >> 8)
        out[3] = UInt8(truncatingIfNeeded: vlan.rawValue)
        let c = checksum ?? PartialChecksum(start: 0, offset: 0)
        out[4] = UInt8(c.start >> 8)
        out[5] = UInt8(truncatingIfNeeded: c.start)
        out[6] = UInt8(c.offset >> 8)
        out[7] = UInt8(truncatingIfNeeded: c.offset)
        out[8] = 0
        out[9] = 0
    }

    /// Writes a message header and `frame` into `out` (≥ headerSize + frame.count); returns its size.
    public static func encode(vlan: VLANID, relayed isRelayed: Bool, checksum: PartialChecksum? = nil,
                              frame: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int {
        encodeHeader(vlan: vlan, relayed: isRelayed, checksum: checksum, into: out)
        (out.baseAddress! + headerSize).copyMemory(from: frame.baseAddress!, byteCount: frame.count)
        return headerSize + frame.count
    }
}
