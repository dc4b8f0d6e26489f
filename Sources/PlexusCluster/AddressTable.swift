import PlexusCore

/// One network adapter (fabric port) of a cluster node, as seed 003's cluster destination
/// address table describes it: its address, status, adapter type, MTU, subnet mask, class of
/// service, and, for nodes behind several routers, the gateway to use.
public struct AdapterEntry: Sendable, Hashable {
    public enum Status: UInt8, Sendable, Hashable {
        case reachable = 1
        case unreachable = 2
    }
    public var fabric: Fabric
    public var address: FabricAddress
    public var status: Status
    /// A short name of the adapter's kind, e.g. "loopback", "veth", "ethernet" (≤ 32 bytes).
    public var adapterType: String
    public var mtu: Int
    /// IPv4 subnet mask in host order, e.g. 0xFFFF_FF00 for /24.
    public var subnetMask: UInt32
    public var classOfService: UInt8
    /// The router to send through when the node is not on a directly attached subnet
    /// (seed 003: "routing directions indicating which router … should be used").
    public var gateway: UInt32?

    public init(fabric: Fabric, address: FabricAddress, status: Status = .reachable, adapterType: String,
                mtu: Int, subnetMask: UInt32, classOfService: UInt8 = 0, gateway: UInt32? = nil) {
        self.fabric = fabric
        self.address = address
        self.status = status
        self.adapterType = adapterType
        self.mtu = mtu
        self.subnetMask = subnetMask
        self.classOfService = classOfService
        self.gateway = gateway
    }

    /// The largest cluster message one datagram to this adapter carries: its MTU less IPv4,
    /// UDP and Plexus headers (seed 003: message size per adapter follows its MTU).
    public var maxMessageBytes: Int { max(0, mtu - FrameLayout.ipUDPOverhead - FrameLayout.headerSize) }
}

/// A node's entry: its adapters in order, primary first, then alternates; versioned by the node
/// that owns it, which is the only one that changes it.
public struct NodeEntry: Sendable, Hashable {
    public var node: NodeNumber
    public var version: UInt64
    public var adapters: [AdapterEntry]

    public init(node: NodeNumber, version: UInt64, adapters: [AdapterEntry]) {
        self.node = node
        self.version = version
        self.adapters = adapters
    }
}

/// The cluster destination address table (seed 003): an entry per cluster node.
///
/// Each node starts with its own entry and exchanges tables with others; `merge` keeps, for
/// every node, the entry with the highest version, so any exchange order converges to one
/// identical table on every node (claims 29, 35). A node that changes an adapter bumps its own
/// entry's version, and the change spreads the same way.
public struct AddressTable: Sendable, Hashable {
    public private(set) var entries: [NodeNumber: NodeEntry] = [:]

    public init(entries: [NodeEntry] = []) {
        for e in entries { update(e) }
    }

    /// Takes `entry` if it is newer than what the table holds for its node. Returns whether
    /// the table changed.
    @discardableResult
    public mutating func update(_ entry: NodeEntry) -> Bool {
        if let have = entries[entry.node], have.version >= entry.version { return false }
        entries[entry.node] = entry
        return true
    }

    /// Merges another table into this one. Returns whether this one changed.
    @discardableResult
    public mutating func merge(_ other: AddressTable) -> Bool {
        var changed = false
        for e in other.entries.values where update(e) { changed = true }
        return changed
    }

    /// A digest of the whole table (nodes and versions): equal digests mean identical tables.
    public var digest: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for node in entries.keys.sorted() {
            for v in [UInt64(node.rawValue), entries[node]!.version] {
                h = (h ^ v) &* 0x100_0000_01b3
            }
        }
        return h
    }

    /// The addresses to try for `node`, in order: reachable adapters, primary first, then
    /// alternates.
    public func destinations(of node: NodeNumber) -> [AdapterEntry] {
        entries[node]?.adapters.filter { $0.status == .reachable } ?? []
    }
}
