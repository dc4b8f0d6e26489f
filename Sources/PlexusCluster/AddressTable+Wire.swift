import PlexusCore

/// The address table's encoding for distribution between nodes: big-endian, versioned, every
/// length checked on decode, so a malformed table is rejected with a reason and never trusted.
///
///     "PLAT" u8 version(1) u32 entryCount
///     entry:   u32 node, u64 version, u8 adapterCount
///     adapter: u8 fabric, u32 ip, u16 port, u8 status, u8 typeLength, type bytes,
///              u32 mtu, u32 subnetMask, u8 classOfService, u8 hasGateway, [u32 gateway]
public enum AddressTableDecodeError: Error, Sendable, Hashable {
    case truncated
    case badMagic
    case unsupportedVersion
    case badValue(String)
    case trailingBytes
}

extension AddressTable {
    public static let maxEntries = 65536
    public static let maxAdapters = 16

    public func encoded() -> [UInt8] {
        var out: [UInt8] = Array("PLAT".utf8) + [1]
        func u(_ v: some FixedWidthInteger) { withUnsafeBytes(of: v.bigEndian) { out += $0 } }
        u(UInt32(entries.count))
        for node in entries.keys.sorted() {
            let e = entries[node]!
            u(e.node.rawValue)
            u(e.version)
            // At most maxAdapters (the decoder's limit; TableDistributor refuses larger entries
            // before they get here), so the count always fits its byte.
            let adapters = e.adapters.prefix(Self.maxAdapters)
            out.append(UInt8(adapters.count))
            for a in adapters {
                out.append(a.fabric.rawValue)
                u(a.address.ip)
                u(a.address.port)
                out.append(a.status.rawValue)
                // At most 32 bytes, cut between characters, never inside one.
                var t: [UInt8] = []
                for ch in a.adapterType {
                    let b = Array(String(ch).utf8)
                    if t.count + b.count > 32 { break }
                    t += b
                }
                out.append(UInt8(t.count))
                out += t
                u(UInt32(clamping: a.mtu))
                u(a.subnetMask)
                out.append(a.classOfService)
                if let g = a.gateway {
                    out.append(1)
                    u(g)
                } else {
                    out.append(0)
                }
            }
        }
        return out
    }

    public init(decoding bytes: [UInt8]) throws(AddressTableDecodeError) {
        var i = 0
        func take(_ n: Int) throws(AddressTableDecodeError) -> ArraySlice<UInt8> {
            guard n >= 0, bytes.count - i >= n else { throw .truncated }
            defer { i += n }
            return bytes[i..<(i + n)]
        }
        func u8() throws(AddressTableDecodeError) -> UInt8 { try take(1).first! }
        func u<T: FixedWidthInteger>(_: T.Type) throws(AddressTableDecodeError) -> T {
            var v: T = 0
            for b in try take(MemoryLayout<T>.size) { v = v << 8 | T(b) }
            return v
        }
        guard Array(try take(4)) == Array("PLAT".utf8) else { throw .badMagic }
        guard try u8() == 1 else { throw .unsupportedVersion }
        let count = Int(try u(UInt32.self))
        guard count <= Self.maxEntries else { throw .badValue("\(count) entries (at most \(Self.maxEntries))") }
        var table = AddressTable()
        for _ in 0..<count {
            let node = NodeNumber(try u(UInt32.self))
            let version = try u(UInt64.self)
            let n = Int(try u8())
            guard n <= Self.maxAdapters else { throw .badValue("\(n) adapters for node \(node)") }
            var adapters: [AdapterEntry] = []
            for _ in 0..<n {
                guard let fabric = Fabric(rawValue: try u8()) else { throw .badValue("fabric of node \(node)") }
                let ip = try u(UInt32.self), port = try u(UInt16.self)
                guard let status = AdapterEntry.Status(rawValue: try u8()) else { throw .badValue("status of node \(node)") }
                let typeBytes = try take(Int(try u8()))
                guard typeBytes.count <= 32, let type = String(validating: typeBytes, as: UTF8.self) else {
                    throw .badValue("adapter type of node \(node)")
                }
                let mtu = Int(try u(UInt32.self))
                guard (FrameLayout.minimumPathMTU...65536).contains(mtu) else { throw .badValue("MTU \(mtu) of node \(node)") }
                let mask = try u(UInt32.self)
                let cos = try u8()
                let hasGateway = try u8()
                guard hasGateway <= 1 else { throw .badValue("gateway flag of node \(node)") }
                let gateway = hasGateway == 1 ? try u(UInt32.self) : nil
                adapters.append(AdapterEntry(fabric: fabric, address: FabricAddress(ip: ip, port: port), status: status,
                                             adapterType: type, mtu: mtu, subnetMask: mask, classOfService: cos,
                                             gateway: gateway))
            }
            guard table.entries[node] == nil else { throw .badValue("node \(node) listed twice") }
            table.update(NodeEntry(node: node, version: version, adapters: adapters))
        }
        guard i == bytes.count else { throw .trailingBytes }
        self = table
    }
}
