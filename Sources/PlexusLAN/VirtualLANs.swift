import PlexusCore

/// An IPv4 address (as ARP carries it).
public struct IPv4Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public var description: String {
        "\(rawValue >> 24).\(rawValue >> 16 & 255).\(rawValue >> 8 & 255).\(rawValue & 255)"
    }
    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.rawValue < b.rawValue }
}

/// An ARP packet for IPv4 over Ethernet, inside an Ethernet frame.
/// Whether `s` is an IPv4 address with a prefix length, `a.b.c.d/len`.
public func isIPv4CIDR(_ s: String) -> Bool {
    let p = s.split(separator: "/", omittingEmptySubsequences: false)
    guard p.count == 2, let len = Int(p[1]), (0...32).contains(len) else { return false }
    let octets = p[0].split(separator: ".", omittingEmptySubsequences: false)
    return octets.count == 4 && octets.allSatisfy { UInt8($0) != nil }
}

public struct ARPPacket: Sendable, Hashable {
    public var isRequest: Bool
    public var senderMAC: MACAddress
    public var senderIP: IPv4Address
    public var targetIP: IPv4Address

    /// Parses `frame` (an Ethernet frame); nil if it is not IPv4 ARP.
    public init?(frame f: RawSpan) {
        guard let parsed = f.withUnsafeBytes({ ARPPacket(frame: $0) }) else { return nil }
        self = parsed
    }

    /// `init(frame:)` of a `RawSpan` on a frame read in place (the switching path).
    init?(frame f: UnsafeRawBufferPointer) {
        guard f.count >= 42, f[12] == 0x08, f[13] == 0x06,  // ethertype ARP
              f[14] == 0, f[15] == 1, f[16] == 0x08, f[17] == 0, f[18] == 6, f[19] == 4, f[20] == 0,
              f[21] == 1 || f[21] == 2
        else { return nil }
        func ip(_ o: Int) -> IPv4Address {
            IPv4Address(rawValue: UInt32(f[o]) << 24 | UInt32(f[o + 1]) << 16 | UInt32(f[o + 2]) << 8 | UInt32(f[o + 3]))
        }
        isRequest = f[21] == 1
        senderMAC = MACAddress(at: f.baseAddress! + 22)
        senderIP = ip(28)
        targetIP = ip(38)
    }

    /// Whether an Ethernet frame is ARP (ethertype 0x0806).
    public static func isARP(_ f: RawSpan) -> Bool { f.withUnsafeBytes { isARP($0) } }

    /// `isARP(_:)` of a `RawSpan` on a frame read in place (the switching path).
    @inline(__always)
    static func isARP(_ f: UnsafeRawBufferPointer) -> Bool { f.count >= 14 && f[12] == 0x08 && f[13] == 0x06 }
}

/// An 802.1Q-sized VLAN number (1…4094): one broadcast domain with any number of IP subnets.
public struct VLANID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: UInt16
    public init?(_ v: Int) {
        guard (1...4094).contains(v) else { return nil }
        rawValue = UInt16(v)
    }
    public var description: String { "VLAN \(rawValue)" }
    public static func < (a: VLANID, b: VLANID) -> Bool { a.rawValue < b.rawValue }
}

/// A processing node's virtual NIC on one VLAN.
public struct VirtualNICBinding: Hashable, Sendable {
    public var node: NodeNumber
    public var mac: MACAddress
    public var vlan: VLANID
    /// Whether the administrator lets this NIC listen promiscuously.
    public var promiscuousAllowed: Bool
    public init(node: NodeNumber, mac: MACAddress, vlan: VLANID, promiscuousAllowed: Bool = false) {
        self.node = node
        self.mac = mac
        self.vlan = vlan
        self.promiscuousAllowed = promiscuousAllowed
    }
}

/// Why the virtual LAN server refused a frame or a request. Every refusal is counted.
public enum LANRefusal: String, Error, Sendable, Hashable, CaseIterable {
    /// The sending node has no NIC on the VLAN the frame claims.
    case notMember = "not-member"
    /// The source MAC is not one of the sender's NICs on that VLAN (a forged frame).
    case forgedSource = "forged-source"
    /// A unicast destination that is no NIC on the VLAN.
    case unknownDestination = "unknown-destination"
    /// A NIC asked to listen promiscuously without the administrator's permission.
    case promiscuousNotAllowed = "promiscuous-not-allowed"
    /// Shorter than an Ethernet header.
    case runt
}

/// Where the virtual LAN server sends one frame: the NICs that get a copy.
public struct LANDelivery: Sendable, Hashable {
    public var to: [VirtualNICBinding]
    /// How many of them are promiscuous copies.
    public var promiscuousCopies: Int
}

/// The state of the virtual LAN server ("Virtual LAN Server", items 1 and 4 of the seed: VLAN
/// membership, broadcast and multicast service) and its switching decisions, as a value: the
/// same on both control nodes given the same commands.
///
/// Isolation holds by construction: a frame is switched only inside the VLAN its sender is a
/// member of, only with a source MAC the sender owns there, and only to NICs on that VLAN.
public struct VirtualLANTable: Sendable {
    public private(set) var nics: [MACAddress: VirtualNICBinding] = [:]
    /// The NICs of each VLAN in MAC order, kept with ``nics`` (attach and detach are rare; a
    /// broadcast reads this list and builds none).
    var byVLAN: [VLANID: [VirtualNICBinding]] = [:]
    /// Per VLAN, per multicast group, the joined NICs and their use counts.
    public private(set) var groups: [VLANID: [MACAddress: [MACAddress: Int]]] = [:]
    /// NICs listening promiscuously, per VLAN.
    public private(set) var promiscuous: [VLANID: Set<MACAddress>] = [:]
    /// Refusals by reason.
    public private(set) var refusals: [LANRefusal: UInt64] = [:]
    /// A line per refused promiscuous request (the seed: "the refusal is logged").
    public private(set) var log = BoundedLog(label: "plexus.lan-table")

    public init() {}

    /// Attaches a NIC (a MAC of `node`) to its VLAN. A MAC is on one VLAN only.
    public mutating func attach(_ nic: VirtualNICBinding) throws(PlexusError) {
        if let have = nics[nic.mac], have != nic {
            throw PlexusError(.viInUse, "\(nic.mac) is already node \(have.node)'s NIC on \(have.vlan)")
        }
        nics[nic.mac] = nic
        var members = byVLAN[nic.vlan, default: []].filter { $0.mac != nic.mac }
        members.append(nic)
        members.sort { $0.mac < $1.mac }
        byVLAN[nic.vlan] = members
    }

    /// Detaches a NIC: it leaves its groups, stops listening, and its IP bindings go.
    public mutating func detach(_ mac: MACAddress) {
        guard let nic = nics.removeValue(forKey: mac) else { return }
        if var bound = ipBindings[nic.vlan] {
            for (ip, b) in bound where b.mac == mac { bound[ip] = nil }
            ipBindings[nic.vlan] = bound.isEmpty ? nil : bound
        }
        byVLAN[nic.vlan]?.removeAll { $0.mac == mac }
        if byVLAN[nic.vlan]?.isEmpty == true { byVLAN[nic.vlan] = nil }
        promiscuous[nic.vlan]?.remove(mac)
        if var g = groups[nic.vlan] {
            for (group, var members) in g {
                members.removeValue(forKey: mac)
                g[group] = members.isEmpty ? nil : members
            }
            groups[nic.vlan] = g
        }
    }

    /// Moves NIC `mac` to node `node` (failover: a spare takes the NIC over with its MAC). Its
    /// VLAN, multicast groups, promiscuous listening and ARP bindings stay: only the node that
    /// answers for it changes. Frames from the old node claiming the MAC are refused from now on.
    public mutating func move(_ mac: MACAddress, to node: NodeNumber) {
        guard var nic = nics[mac] else { return }
        nic.node = node
        replace(nic)
    }

    /// Puts `nic` (same MAC and VLAN, another node or permission) in place of the binding it
    /// replaces, everywhere the table keeps it.
    mutating func replace(_ nic: VirtualNICBinding) {
        nics[nic.mac] = nic
        if let i = byVLAN[nic.vlan]?.firstIndex(where: { $0.mac == nic.mac }) { byVLAN[nic.vlan]![i] = nic }
        if var bound = ipBindings[nic.vlan] {
            for (ip, b) in bound where b.mac == nic.mac { bound[ip] = nic }
            ipBindings[nic.vlan] = bound
        }
    }

    /// Changes whether NIC `mac` may listen promiscuously, keeping its groups and bindings.
    /// Returns true when it was listening and may no longer (it has stopped).
    @discardableResult
    public mutating func setPromiscuousAllowed(_ mac: MACAddress, _ allowed: Bool) -> Bool {
        guard var nic = nics[mac], nic.promiscuousAllowed != allowed else { return false }
        nic.promiscuousAllowed = allowed
        replace(nic)
        guard !allowed, promiscuous[nic.vlan]?.contains(mac) == true else { return false }
        promiscuous[nic.vlan]?.remove(mac)
        return true
    }

    /// The NICs on a VLAN.
    public func members(of vlan: VLANID) -> [VirtualNICBinding] { byVLAN[vlan] ?? [] }

    /// `mac` joins multicast `group` (one more use).
    public mutating func join(_ group: MACAddress, mac: MACAddress) throws(LANRefusal) {
        guard let nic = nics[mac] else { throw count(.notMember) }
        groups[nic.vlan, default: [:]][group, default: [:]][mac, default: 0] += 1
    }

    /// `mac` leaves `group` once; the group is dropped when its last use goes.
    public mutating func leave(_ group: MACAddress, mac: MACAddress) {
        guard let nic = nics[mac], let n = groups[nic.vlan]?[group]?[mac] else { return }
        if n > 1 {
            groups[nic.vlan]![group]![mac] = n - 1
        } else {
            groups[nic.vlan]![group]!.removeValue(forKey: mac)
            if groups[nic.vlan]![group]!.isEmpty { groups[nic.vlan]!.removeValue(forKey: group) }
        }
    }

    /// Turns promiscuous listening on or off; refused (and logged) unless allowed.
    public mutating func setPromiscuous(_ mac: MACAddress, _ on: Bool) throws(LANRefusal) {
        guard let nic = nics[mac] else { throw count(.notMember) }
        if on && !nic.promiscuousAllowed {
            log.append("refused promiscuous mode for \(mac) (node \(nic.node), \(nic.vlan)): not allowed by the administrator")
            throw count(.promiscuousNotAllowed)
        }
        if on { promiscuous[nic.vlan, default: []].insert(mac) } else { promiscuous[nic.vlan]?.remove(mac) }
    }

    /// Decides where a frame that node `from` sent on `vlan` goes, as a list (for tests and
    /// tools; the server's switching path uses ``forEachDestination(from:vlan:destination:source:_:)``,
    /// which builds no list). The NICs are in MAC order.
    public mutating func route(from node: NodeNumber, vlan: VLANID, destination: MACAddress, source: MACAddress)
        -> Result<LANDelivery, LANRefusal>
    {
        var to: [VirtualNICBinding] = [], copies = 0
        if let refusal = forEachDestination(from: node, vlan: vlan, destination: destination, source: source, { nic, copy in
            to.append(nic)
            if copy { copies += 1 }
        }) {
            return .failure(refusal)
        }
        // The destination of a unicast frame first, then its promiscuous copies; else MAC order.
        let first = to.first.map { [$0] } ?? []
        return .success(copies > 0 ? LANDelivery(to: first + to.dropFirst().sorted { $0.mac < $1.mac }, promiscuousCopies: copies)
                                   : LANDelivery(to: to.sorted { $0.mac < $1.mac }, promiscuousCopies: 0))
    }

    /// Decides where a frame that node `from` sent on `vlan` goes, and calls `body` once per NIC
    /// that gets a copy (with whether it is a promiscuous copy), without allocating: the
    /// server's per-frame path ("Virtual LAN Server", items 1 and 4).
    ///
    /// - Broadcast, and the groups every host is in without reporting them (IPv4 all-hosts,
    ///   IPv6 all-nodes): every other NIC on the VLAN (promiscuous listeners get it once).
    /// - Multicast: the NICs that joined the group.
    /// - Unicast: the NIC with that MAC on the VLAN, then a copy to each promiscuous listener.
    ///
    /// - Returns: nil when the frame is switched, else why it is refused (and counted).
    @discardableResult
    public mutating func forEachDestination(from node: NodeNumber, vlan: VLANID, destination: MACAddress, source: MACAddress,
                                            _ body: (VirtualNICBinding, _ promiscuousCopy: Bool) -> Void) -> LANRefusal?
    {
        guard let sender = nics[source], sender.vlan == vlan else {
            let onVLAN = nics.values.contains { $0.node == node && $0.vlan == vlan }
            return count(onVLAN ? .forgedSource : .notMember)
        }
        guard sender.node == node else { return count(.forgedSource) }
        if destination.isBroadcast || destination == .allHosts || destination == .allNodes {
            if let members = byVLAN[vlan] {
                for nic in members where nic.mac != source { body(nic, false) }
            }
            return nil
        }
        if destination.isMulticast {
            if let joined = groups[vlan]?[destination] {
                for mac in joined.keys where mac != source {
                    if let nic = nics[mac] { body(nic, false) }
                }
            }
            return nil
        }
        guard let target = nics[destination], target.vlan == vlan else { return count(.unknownDestination) }
        body(target, false)
        if let listening = promiscuous[vlan] {
            for l in listening where l != source && l != destination {
                if let nic = nics[l] { body(nic, true) }
            }
        }
        return nil
    }

    /// IPv4 addresses bound to NICs, per VLAN, as the ARP server learned them ("ARP processing and IP mapping to RVIs"): each
    /// address a node announces (aliases too) is bound to that node's NIC, and so to its RVI.
    public private(set) var ipBindings: [VLANID: [IPv4Address: VirtualNICBinding]] = [:]

    /// Binds `ip` to NIC `mac` on its VLAN (the latest announcement wins, as in ARP).
    public mutating func bind(_ ip: IPv4Address, to mac: MACAddress) {
        guard let nic = nics[mac] else { return }
        ipBindings[nic.vlan, default: [:]][ip] = nic
    }

    mutating func count(_ r: LANRefusal) -> LANRefusal {
        refusals[r, default: 0] += 1
        return r
    }
}
