import CPlexus
import PlexusCore
import PlexusRCLAN

// MARK: - Multicast membership and promiscuous mode, from the node to the servers
//
// "Virtual LAN Server": the server tracks, per VLAN, which NICs joined which multicast group
// (with use counts, so a group is dropped only when its last member leaves), and lets only the
// NICs the administrator allows listen promiscuously, logging a refusal. A node tells both
// control nodes: what the kernel's own IGMP and MLD reports say (snooped as they leave the TAP
// device), and when the TAP device's IFF_PROMISC flag changes (`ip link set pvl10 promisc on`,
// or tcpdump). Embedders of the in-process backend call ``VirtualEthernet/join(_:nic:layer:)``,
// ``VirtualEthernet/leave(_:nic:layer:)`` and ``VirtualEthernet/setPromiscuous(_:nic:layer:)``.

/// What an IGMP or MLD report says: a group (an IPv4 or IPv6 address) joined or left.
public struct MembershipReport: Hashable, Sendable {
    /// The group's address: 4 bytes (IPv4) or 16 (IPv6).
    public var group: [UInt8]
    public var joined: Bool

    public init(group: [UInt8], joined: Bool) {
        self.group = group
        self.joined = joined
    }

    /// The group's Ethernet multicast MAC (RFC 1112 §6.4 for IPv4, RFC 2464 §7 for IPv6).
    public var mac: MACAddress {
        if group.count == 4 {
            return MACAddress([0x01, 0x00, 0x5E, group[1] & 0x7F, group[2], group[3]])
        }
        return MACAddress([0x33, 0x33] + group[12..<16])
    }

    /// Reads the membership reports in an Ethernet frame a node sends: IGMPv1/v2 reports and
    /// leaves, IGMPv3 reports, MLDv1 reports and dones, MLDv2 reports. Anything else, or
    /// anything cut short, yields none.
    public static func parse(_ f: RawSpan) -> [MembershipReport] { f.withUnsafeBytes { parse($0) } }

    /// `parse(_:)` of a `RawSpan` on a frame read in place.
    static func parse(_ f: UnsafeRawBufferPointer) -> [MembershipReport] {
        guard f.count >= 14 else { return [] }
        let type = UInt16(f[12]) << 8 | UInt16(f[13])
        if type == 0x0800 { return igmp(f, at: 14) }
        if type == 0x86DD { return mld(f, at: 14) }
        return []
    }

    /// A source-specific or any-source record of an IGMPv3 or MLDv2 report (RFC 3376 §4.2.12,
    /// RFC 3810 §5.2.12): in EXCLUDE mode the host receives the group; in INCLUDE mode only if
    /// the source list is not empty. BLOCK_OLD_SOURCES changes no membership.
    static func recordJoins(_ type: UInt8, sources: Int) -> Bool? {
        switch type {
        case 2, 4: true  // MODE_IS_EXCLUDE, CHANGE_TO_EXCLUDE_MODE
        case 1, 3: sources > 0  // MODE_IS_INCLUDE, CHANGE_TO_INCLUDE_MODE
        case 5: sources > 0 ? true : nil  // ALLOW_NEW_SOURCES
        default: nil
        }
    }

    /// The group records of an IGMPv3 or MLDv2 report at `o` (the two share a layout: record
    /// count at +6, records from +8, each type, aux length, source count, group, sources, aux).
    static func records(_ f: UnsafeRawBufferPointer, at o: Int, addressSize a: Int) -> [MembershipReport] {
        var out: [MembershipReport] = []
        let count = Int(f[o + 6]) << 8 | Int(f[o + 7])
        var r = o + 8
        for _ in 0..<count {
            guard f.count >= r + 4 + a else { return out }
            let sources = Int(f[r + 2]) << 8 | Int(f[r + 3])
            if let j = recordJoins(f[r], sources: sources) {
                out.append(MembershipReport(group: Array(f[(r + 4)..<(r + 4 + a)]), joined: j))
            }
            r += 4 + a + a * sources + 4 * Int(f[r + 1])
        }
        return out
    }

    static func igmp(_ f: UnsafeRawBufferPointer, at ip: Int) -> [MembershipReport] {
        guard f.count >= ip + 20, f[ip] >> 4 == 4, f[ip + 9] == 2 else { return [] }
        let o = ip + Int(f[ip] & 0x0F) * 4
        guard f.count >= o + 8 else { return [] }
        let group = { (at: Int) in Array(f[at..<(at + 4)]) }
        switch f[o] {
        case 0x12, 0x16: return [MembershipReport(group: group(o + 4), joined: true)]
        case 0x17: return [MembershipReport(group: group(o + 4), joined: false)]
        case 0x22: return records(f, at: o, addressSize: 4)
        default: return []
        }
    }

    static func mld(_ f: UnsafeRawBufferPointer, at ip: Int) -> [MembershipReport] {
        guard f.count >= ip + 40, f[ip] >> 4 == 6 else { return [] }
        var next = f[ip + 6]
        var o = ip + 40
        if next == 0 {  // MLD rides behind a hop-by-hop header (the router alert)
            guard f.count >= o + 8 else { return [] }
            next = f[o]
            o += (Int(f[o + 1]) + 1) * 8
        }
        guard next == 58, f.count >= o + 24 else { return [] }
        let group = { (at: Int) in Array(f[at..<(at + 16)]) }
        switch f[o] {
        case 131: return [MembershipReport(group: group(o + 8), joined: true)]
        case 132: return [MembershipReport(group: group(o + 8), joined: false)]
        case 143: return records(f, at: o, addressSize: 16)
        default: return []
        }
    }
}

extension VirtualEthernet {
    /// NIC `nic` joins multicast `group` (a group MAC): both servers start sending it the group's
    /// frames. Joining again changes nothing.
    public func join(_ group: MACAddress, nic: MACAddress, layer: RCLAN) throws(LANRefusal) {
        try change(nic, group, key: [], joined: true, layer: layer)
    }

    /// NIC `nic` leaves `group` (joined with ``join(_:nic:layer:)``).
    public func leave(_ group: MACAddress, nic: MACAddress, layer: RCLAN) throws(LANRefusal) {
        try change(nic, group, key: [], joined: false, layer: layer)
    }

    /// Asks both servers to let NIC `nic` listen promiscuously (or to stop). A refusal comes back
    /// as a line in ``events`` (and in the servers' logs).
    public func setPromiscuous(_ on: Bool, nic: MACAddress, layer: RCLAN) throws(LANRefusal) {
        guard nics[nic] != nil else { throw .notMember }
        if on { promiscuousNICs.insert(nic) } else { promiscuousNICs.remove(nic) }
        toServers(.promiscuous(node: node, nic: nic, on: on), layer: layer)
    }

    /// Records one reason (`key`: an IP group, or [] for the API) for `nic` to be in `group`, and
    /// tells the servers when the first reason comes or the last goes: IPv4 groups that share a
    /// MAC (32 of them do) are one membership there.
    func change(_ nic: MACAddress, _ group: MACAddress, key: [UInt8], joined: Bool, layer: RCLAN) throws(LANRefusal) {
        guard nics[nic] != nil else { throw .notMember }
        guard group.isMulticast else { throw .unknownDestination }
        var reasons = memberships[nic]?[group] ?? []
        let was = !reasons.isEmpty
        if joined { reasons.insert(key) } else { reasons.remove(key) }
        memberships[nic, default: [:]][group] = reasons.isEmpty ? nil : reasons
        if was != !reasons.isEmpty {
            toServers(joined ? .join(node: node, nic: nic, group: group) : .leave(node: node, nic: nic, group: group), layer: layer)
        }
    }

    /// Sends a clone of the unicast message in `m` (its first `count` bytes, a LAN header and
    /// the frame) to every listener on `vlan` other than the destination, marked as a
    /// promiscuous copy, on the direct RVI to the listener's node. Not through a server: it would
    /// switch the clone to the destination again.
    func cloneToListeners(_ m: UnsafeMutableRawBufferPointer, count: Int, vlan: VLANID, destination: MACAddress, layer: RCLAN) {
        guard let list = listeners[vlan] else { return }
        m[1] |= LANMessage.promiscuousCopy
        defer { m[1] &= ~LANMessage.promiscuousCopy }
        for l in list where l != destination {
            guard let rvi = direct[l], !unusable.contains(rvi),
                  (try? layer.send(UnsafeRawBufferPointer(rebasing: m[0..<count]).bytes, on: rvi)) != nil else {
                promiscuousCopiesSkipped += 1
                continue
            }
            promiscuousCopiesSent += 1
        }
    }

    /// Membership reports in a frame that NIC `nic` sends (the kernel's IGMP and MLD).
    func snoop(_ ethernet: UnsafeRawBufferPointer, nic: MACAddress, layer: RCLAN) {
        for r in MembershipReport.parse(ethernet) {
            // The all-hosts and all-nodes groups are never reported and always received: the
            // servers treat them as broadcast.
            try? change(nic, r.mac, key: r.group, joined: r.joined, layer: layer)
        }
    }

    func toServers(_ m: ControlMessage, layer: RCLAN) {
        let bytes = m.encoded()
        for s in servers { _ = try? layer.send(bytes, on: s) }
    }

    /// A control node came back (a new epoch on its RVI): it learns again what this node has
    /// joined and where it listens promiscuously.
    func resendMemberships(to rvi: RVI, layer: RCLAN) {
        for (nic, groups) in memberships {
            for group in groups.keys { _ = try? layer.send(ControlMessage.join(node: node, nic: nic, group: group).encoded(), on: rvi) }
        }
        for nic in promiscuousNICs { _ = try? layer.send(ControlMessage.promiscuous(node: node, nic: nic, on: true).encoded(), on: rvi) }
    }

    /// Reads each TAP device's IFF_PROMISC flag (every 250 ms) and tells the servers when it
    /// changes.
    func watchPromiscuousFlags(layer: RCLAN) {
        let now = ContinuousClock.now
        if let last = lastFlagCheck, last.duration(to: now) < .milliseconds(250) { return }
        lastFlagCheck = now
        for (nic, name) in interfaces {
            let flags = name.withCString { plx_if_flags($0) }
            guard flags >= 0 else { continue }
            let on = flags & Int32(plx_IFF_PROMISC) != 0
            if on != promiscuousNICs.contains(nic) {
                events.append("\(name): promiscuous mode \(on ? "on" : "off") requested")
                try? setPromiscuous(on, nic: nic, layer: layer)
            }
        }
    }
}

extension VirtualLANServer {
    /// Tells a node that just registered which NICs on its VLANs listen promiscuously.
    func announceListeners(to node: NodeNumber, vlans: Set<VLANID>, on rvi: RVI, layer: RCLAN) {
        for v in vlans.sorted() {
            for l in (table.promiscuous[v] ?? []).sorted() {
                guard let b = table.nics[l], b.node != node else { continue }
                _ = try? layer.send(ControlMessage.listener(node: b.node, vlan: v, mac: l, on: true).encoded(), on: rvi)
            }
        }
    }

    /// A join, leave or promiscuous request on node `node`'s management RVI. Only for the node's
    /// own NICs; joins are idempotent per NIC (a node says it once per group, but says it again
    /// to a control node that restarted).
    func membership(_ m: ControlMessage, from node: NodeNumber, on rvi: RVI, layer: RCLAN) {
        switch m {
        case .join(let n, let nic, let group), .leave(let n, let nic, let group):
            guard n == node, let binding = table.nics[nic], binding.node == node, group.isMulticast else {
                malformed += 1
                return
            }
            let joined = table.groups[binding.vlan]?[group]?[nic] != nil
            if case .join = m {
                if !joined { try? table.join(group, mac: nic) }
            } else if joined {
                table.leave(group, mac: nic)
            }
        case .promiscuous(let n, let nic, let on):
            guard n == node, let binding = table.nics[nic], binding.node == node else {
                malformed += 1
                return
            }
            do {
                let was = table.promiscuous[binding.vlan]?.contains(nic) ?? false
                try table.setPromiscuous(nic, on)
                guard was != on else { return }
                log.append("node \(node): \(nic) on \(binding.vlan) \(on ? "listens" : "stops listening") promiscuously")
                // The seed: the server tells every other node on the VLAN, whose drivers then
                // clone unicast frames to the listener.
                let note = ControlMessage.listener(node: node, vlan: binding.vlan, mac: nic, on: on).encoded()
                for n in Set(table.members(of: binding.vlan).map(\.node)) where n != node {
                    if let r = nodeRVI[n] { _ = try? layer.send(note, on: r) }
                }
            } catch {
                let reason = "promiscuous mode for \(nic) on \(binding.vlan) refused: not allowed by the administrator"
                log.append("node \(node): \(reason)")
                _ = try? layer.send(ControlMessage.refused(node: node, reason: reason).encoded(), on: rvi)
            }
        default:
            malformed += 1
        }
    }
}
