import CPlexus
#if canImport(Glibc)
import Glibc
#endif
import PlexusCore
import PlexusRCLAN

/// Linux TAP devices for the virtual Ethernet driver's kernel backend.
///
/// Each frame read or written is preceded by a 10-byte `struct virtio_net_hdr` (little-endian):
/// flags (1 = `NEEDS_CSUM`), GSO type (0 = none), header length, GSO size, checksum start,
/// checksum offset. Only checksum offload is on, so the kernel never hands over a segment larger
/// than the interface's MTU; with MTU ``maximumMTU`` TCP segments of almost 16 KiB cross the
/// fabric whole.
public enum TAP {
    /// The name of a node's TAP device for its NIC on `vlan`: `pvl<VLAN>` (one per VLAN in the
    /// node's network namespace).
    public static func interface(vlan: VLANID) -> String { "pvl\(vlan.rawValue)" }

    public static let virtioHeaderSize = 10
    /// The largest MTU a TAP NIC can have, 16872: a packet as read (virtio-net header, Ethernet
    /// header, MTU bytes) must fit one 16896-byte frame, and so then does the LAN message.
    public static let maximumMTU = FrameLayout.maxPayload - virtioHeaderSize - LANMessage.ethernetHeader

    /// Opens (creating) TAP interface `name` in the calling thread's network namespace.
    public static func open(_ name: String) throws(PlexusError) -> (fd: Int32, name: String) {
        var actual = [CChar](repeating: 0, count: 16)
        let fd = actual.withUnsafeMutableBufferPointer { out in name.withCString { plx_tap_open($0, 1, out.baseAddress!) } }
        guard fd >= 0 else { throw PlexusError(.system, "cannot open TAP device \(name) (/dev/net/tun)", errno: -fd) }
        let bytes = actual.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return (fd, String(decoding: bytes, as: UTF8.self))
    }

    /// The checksum request and the Ethernet frame of a packet read from a TAP, or nil for one
    /// this driver does not take (GSO, or too short).
    static func parseVirtioHeader(_ p: UnsafeRawBufferPointer) -> (LANMessage.PartialChecksum?, UnsafeRawBufferPointer)? {
        guard p.count >= virtioHeaderSize + LANMessage.ethernetHeader, p[1] == 0 else { return nil }
        let frame = UnsafeRawBufferPointer(rebasing: p[virtioHeaderSize...])
        guard p[0] & 1 != 0 else { return (nil, frame) }
        let start = UInt16(p[6]) | UInt16(p[7]) << 8, offset = UInt16(p[8]) | UInt16(p[9]) << 8
        guard Int(start) >= LANMessage.ethernetHeader, Int(start) + Int(offset) + 2 <= frame.count else { return nil }
        return (LANMessage.PartialChecksum(start: start, offset: offset), frame)
    }

    static func writeVirtioHeader(_ c: LANMessage.PartialChecksum?, into out: UnsafeMutableRawBufferPointer) {
        for i in 0..<virtioHeaderSize { out[i] = 0 }
        guard let c else { return }
        out[0] = 1  // VIRTIO_NET_HDR_F_NEEDS_CSUM
        out[6] = UInt8(truncatingIfNeeded: c.start)
        out[7] = UInt8(c.start >> 8)
        out[8] = UInt8(truncatingIfNeeded: c.offset)
        out[9] = UInt8(c.offset >> 8)
    }
}
