#if canImport(Glibc)
import Glibc
#endif

/// One of the two independent fabrics every node has a port on (seed: switch fabrics 115a,b).
public enum Fabric: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case a = 0
    case b = 1
    public var description: String { self == .a ? "A" : "B" }
    /// The other fabric.
    public var other: Fabric { self == .a ? .b : .a }
}

/// A virtual interface on one port: its fabric and its VI number on that port.
public struct VI: Hashable, Sendable, CustomStringConvertible {
    public var fabric: Fabric
    public var number: UInt32
    public init(_ fabric: Fabric, _ number: UInt32) {
        self.fabric = fabric
        self.number = number
    }
    public var description: String { "VI \(fabric)/\(number)" }
}

/// An IPv4 address and UDP port of a fabric port.
public struct FabricAddress: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    /// IPv4 address in host byte order.
    public var ip: UInt32
    public var port: UInt16

    public init(ip: UInt32, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, port: UInt16) {
        self.ip = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
        self.port = port
    }

    /// Parses `"a.b.c.d:port"`.
    public init?(_ description: String) {
        let parts = description.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = UInt16(parts[1]) else { return nil }
        let octets = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var ip: UInt32 = 0
        for o in octets {
            guard let v = UInt8(o) else { return nil }
            ip = ip << 8 | UInt32(v)
        }
        self.init(ip: ip, port: port)
    }

    public var description: String {
        "\(ip >> 24).\(ip >> 16 & 0xff).\(ip >> 8 & 0xff).\(ip & 0xff):\(port)"
    }

    /// The loopback address Plexus uses for node `n` on a fabric when everything runs on one
    /// host: 127.0.1.n on fabric A, 127.0.2.n on fabric B.
    public static func loopback(node n: UInt8, fabric: Fabric, port: UInt16) -> FabricAddress {
        FabricAddress(127, 0, fabric == .a ? 1 : 2, n, port: port)
    }

    var sockaddr: sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr = in_addr(s_addr: ip.bigEndian)
        return sa
    }

    init(_ sa: sockaddr_in) {
        self.init(ip: UInt32(bigEndian: sa.sin_addr.s_addr), port: UInt16(bigEndian: sa.sin_port))
    }
}

/// The key a peer names to write into a registered region.
public struct RegionKey: Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public var description: String { "key 0x" + String(rawValue, radix: 16) }
}
