import PlexusCore
#if canImport(Glibc)
import Glibc
#endif

/// An IEEE 48-bit MAC address.
public struct MACAddress: Hashable, Sendable, Comparable, CustomStringConvertible, LosslessStringConvertible {
    /// The 48 bits, first octet most significant.
    public let rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue & 0xFFFF_FFFF_FFFF }

    public init(_ b: [UInt8]) {
        precondition(b.count == 6, "a MAC address is 6 bytes")
        rawValue = b.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Parses `02:00:01:00:00:2a`.
    public init?(_ text: String) {
        let parts = text.split(separator: ":")
        guard parts.count == 6 else { return nil }
        var v: UInt64 = 0
        for p in parts {
            guard p.count == 2, let b = UInt8(p, radix: 16) else { return nil }
            v = v << 8 | UInt64(b)
        }
        rawValue = v
    }

    /// Reads the address at `p` (6 bytes, network order).
    public init(at p: UnsafeRawPointer) {
        var v: UInt64 = 0
        for i in 0..<6 { v = v << 8 | UInt64(p.load(fromByteOffset: i, as: UInt8.self)) }
        rawValue = v
    }

    public var bytes: [UInt8] { (0..<6).map { UInt8(truncatingIfNeeded: rawValue >> UInt64(40 - 8 * $0)) } }

    public static let broadcast = MACAddress(rawValue: 0xFFFF_FFFF_FFFF)
    /// 224.0.0.1's MAC (all hosts, RFC 1112) and ff02::1's (all nodes, RFC 4291): groups every
    /// host is in without reporting them.
    public static let allHosts = MACAddress(rawValue: 0x0100_5E00_0001)
    public static let allNodes = MACAddress(rawValue: 0x3333_0000_0001)
    public var isBroadcast: Bool { rawValue == 0xFFFF_FFFF_FFFF }
    /// The group bit (I/G) of the first octet: broadcast and multicast.
    public var isGroup: Bool { rawValue >> 40 & 1 == 1 }
    public var isMulticast: Bool { isGroup && !isBroadcast }
    /// The U/L bit: assigned locally, not by a manufacturer.
    public var isLocallyAdministered: Bool { rawValue >> 41 & 1 == 1 }

    public var description: String { bytes.map { String($0, radix: 16).leftPadded(2) }.joined(separator: ":") }

    public static func < (a: MACAddress, b: MACAddress) -> Bool { a.rawValue < b.rawValue }
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// Hands out virtual MACs for one control node, never the same one twice, even across restarts
/// ("Virtual LAN Server": the server "creates and assigns virtual MAC addresses"; the seed keeps
/// the counter in NVRAM, Plexus in a file).
///
/// A MAC is `02:SS:SS:CC:CC:CC`: locally administered and unicast (`02`), the control node's
/// 16-bit serial number, and a 24-bit sequence counter. The counter is persisted ahead of use
/// in blocks: before a MAC of a new block is handed out, the end of that block is written to the
/// state file (a new file, `fsync`, `rename`, `fsync` of the directory). After a restart the
/// allocator continues from the persisted end, so a crash can skip up to one block but never
/// repeat a MAC.
public final class MACAllocator {
    public let serial: UInt16
    public let stateFile: String
    /// MACs reserved per write of the state file.
    public static let block: UInt32 = 64
    /// The counter's limit (24 bits).
    public static let limit: UInt32 = 1 << 24
    public private(set) var next: UInt32
    public private(set) var reservedUpTo: UInt32
    /// State-file writes so far (one per block).
    public private(set) var writes = 0

    /// Opens (or creates) the state file of control node `serial`.
    /// - Throws: ``PlexusError`` when the file belongs to another serial, is malformed, or cannot
    ///   be read or written.
    public init(serial: UInt16, stateFile: String) throws(PlexusError) {
        self.serial = serial
        self.stateFile = stateFile
        if let text = Self.read(stateFile) {
            let f = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
            guard f.count == 4, f[0] == "plexus-mac-counter", f[1] == "v1", let s = UInt16(f[2]), let n = UInt32(f[3]),
                  n <= Self.limit
            else {
                throw PlexusError(.configuration, "\(stateFile): not a MAC counter file (expected 'plexus-mac-counter v1 SERIAL NEXT')")
            }
            guard s == serial else {
                throw PlexusError(.configuration, "\(stateFile) belongs to control node serial \(s), not \(serial)")
            }
            next = n
        } else {
            next = 0
        }
        reservedUpTo = next
    }

    /// The next MAC. Never returns one returned before by any allocator of this serial and file.
    /// - Throws: when the counter is exhausted or the state file cannot be written (then no MAC
    ///   is handed out).
    public func allocate() throws(PlexusError) -> MACAddress {
        guard next < Self.limit else {
            throw PlexusError(.resourceExhausted, "control node \(serial) has handed out all \(Self.limit) MACs")
        }
        if next >= reservedUpTo {
            let end = min(next + Self.block, Self.limit)
            try persist(end)
            reservedUpTo = end
        }
        let n = next
        next += 1
        return MACAddress(rawValue: 0x02 << 40 | UInt64(serial) << 24 | UInt64(n))
    }

    func persist(_ end: UInt32) throws(PlexusError) {
        let tmp = stateFile + ".tmp"
        let text = "plexus-mac-counter v1 \(serial) \(end)\n"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PlexusError(.system, "cannot write \(tmp)", errno: errno) }
        let ok = text.utf8CString.withUnsafeBytes { b in write(fd, b.baseAddress, b.count - 1) == b.count - 1 } && fsync(fd) == 0
        let saved = errno
        close(fd)
        guard ok else { throw PlexusError(.system, "cannot write \(tmp)", errno: saved) }
        guard rename(tmp, stateFile) == 0 else { throw PlexusError(.system, "cannot rename \(tmp) to \(stateFile)", errno: errno) }
        let dir = stateFile.contains("/") ? String(stateFile[..<stateFile.lastIndex(of: "/")!]) : "."
        let dfd = open(dir.isEmpty ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
        writes += 1
    }

    static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = Glibc.read(fd, &buf, buf.count)
        guard n > 0 else { return "" }
        return String(decoding: buf[..<n], as: UTF8.self)
    }
}

/// A MAC address in JSON is its text, `"02:00:01:00:00:2a"`; anything else is refused with the
/// reason.
extension MACAddress: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let text = try c.decode(String.self)
        guard let mac = MACAddress(text) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "'\(text)' is not a MAC address (six hex octets, aa:bb:cc:dd:ee:ff)")
        }
        self = mac
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
