import CPlexus
import PlexusCore
import PlexusRCLAN

/// The control messages on a management RVI: LAN message kind 2.
///
/// | message | bytes |
/// |---|---|
/// | register | 2, 1, node (u32) |
/// | configuration | 2, 2, node (u32), MTU (u16), NIC count (u16), per NIC: MAC (6), VLAN (u16), promiscuous allowed (u8); peer count (u16), per peer: node (u32), fabric A IPv4 (u32) and port (u16), fabric B likewise, local VI (u32), remote VI (u32), MAC count (u16), MACs (6 each) |
/// | refused | 2, 3, node (u32), reason length (u8), reason (UTF-8) |
/// | join | 2, 4, node (u32), NIC MAC (6), group MAC (6) |
/// | leave | 2, 5, node (u32), NIC MAC (6), group MAC (6) |
/// | promiscuous | 2, 6, node (u32), NIC MAC (6), on (u8: 0 or 1) |
/// | listener | 2, 7, node (u32), VLAN (u16), NIC MAC (6), on (u8): from a server, node's NIC listens promiscuously (or stopped) |
/// | standby | 2, 8, node (u32): from a server, the node is a spare in the free pool and waits |
/// | moved | 2, 9, spare (u32), failed (u32), then one peer entry as in configuration: the failed node's MACs are now reached at the spare |
/// | fenced | 2, 10, node (u32): from a server, the node's personality moved away; it must not use its NICs |
/// | milestone | 2, 11, node (u32), step (u8, a ``FailoverStep``): from a spare, how far its take-over got |
/// | process failed | 2, 12, node (u32), status (i32): from a node, its workload process ended by itself (exit status, or 128 + signal) |
/// | console | 2, 13, node (u32), incarnation (u64), sequence (u32), length (u16), bytes: from a node, the next piece of its console (workload output and node log) |
///
/// The configuration message ends with the personality's addresses and workload: address
/// count (u16), per address: VLAN (u16), length (u8), `a.b.c.d/len` (UTF-8); workload length
/// (u16, 0: none), workload (UTF-8); then the plan's revision (u64). A configuration with no
/// NICs, of a higher revision than the node's, releases the node to the free pool.
///
/// All integers big-endian. A message that does not parse is counted and dropped.
public enum ControlMessage: Sendable, Hashable {
    case register(node: NodeNumber)
    case configuration(NodeConfiguration)
    case refused(node: NodeNumber, reason: String)
    case join(node: NodeNumber, nic: MACAddress, group: MACAddress)
    case leave(node: NodeNumber, nic: MACAddress, group: MACAddress)
    case promiscuous(node: NodeNumber, nic: MACAddress, on: Bool)
    case listener(node: NodeNumber, vlan: VLANID, mac: MACAddress, on: Bool)
    case standby(node: NodeNumber)
    case moved(spare: NodeNumber, failed: NodeNumber, peer: NodeConfiguration.Peer)
    case fenced(node: NodeNumber)
    case milestone(node: NodeNumber, step: FailoverStep)
    case processFailed(node: NodeNumber, status: Int32)
    /// A piece of a node's console. `incarnation` tells one run of the node from the next (its
    /// start time); `sequence` counts the pieces of that run from 1, so a control node that
    /// keeps the console writes each piece once however many times it is offered.
    case console(node: NodeNumber, incarnation: UInt64, sequence: UInt32, text: [UInt8])

    public static let kind: UInt8 = 2
    /// The UTF-8 of `text`, cut to at most `limit` bytes at a character boundary (a cut inside
    /// a character would make the message invalid UTF-8, which the parser refuses).
    static func utf8Prefix(_ text: String, _ limit: Int) -> [UInt8] {
        var out: [UInt8] = []
        for c in text {
            guard out.count + c.utf8.count <= limit else { break }
            out += c.utf8
        }
        return out
    }

    /// The most console bytes one message carries.
    public static let maximumConsolePiece = 8192

    public func encoded() -> [UInt8] {
        var w = [UInt8]()
        func u16(_ v: Int) { w += [UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
        func u32(_ v: UInt32) { w += [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
        func u32(_ n: NodeNumber) { u32(n.rawValue) }
        func address(_ a: FabricAddress) {
            u32(a.ip)
            u16(Int(a.port))
        }
        func peer(_ p: NodeConfiguration.Peer) {
            u32(p.address.node)
            address(p.address.fabricA)
            address(p.address.fabricB)
            u32(p.localVI)
            u32(p.remoteVI)
            u16(p.macs.count)
            for m in p.macs { w += m.bytes }
        }
        w.append(Self.kind)
        switch self {
        case .register(let node):
            w.append(1)
            u32(node)
        case .configuration(let c):
            w.append(2)
            u32(c.node)
            u16(c.mtu)
            u16(c.personality.nics.count)
            for n in c.personality.nics {
                w += n.mac.bytes
                u16(Int(n.vlan.rawValue))
                w.append(n.promiscuousAllowed ? 1 : 0)
            }
            u16(c.peers.count)
            for p in c.peers { peer(p) }
            u16(c.personality.addresses.count)
            for a in c.personality.addresses {
                u16(Int(a.vlan.rawValue))
                let t = Self.utf8Prefix(a.cidr, 255)
                w.append(UInt8(t.count))
                w += t
            }
            let workload = Self.utf8Prefix(c.personality.workload ?? "", 4096)
            u16(workload.count)
            w += workload
            u32(UInt32(truncatingIfNeeded: c.revision >> 32))
            u32(UInt32(truncatingIfNeeded: c.revision))
        case .refused(let node, let reason):
            w.append(3)
            u32(node)
            let r = Self.utf8Prefix(reason, 255)
            w.append(UInt8(r.count))
            w += r
        case .join(let node, let nic, let group), .leave(let node, let nic, let group):
            if case .join = self { w.append(4) } else { w.append(5) }
            u32(node)
            w += nic.bytes + group.bytes
        case .promiscuous(let node, let nic, let on):
            w.append(6)
            u32(node)
            w += nic.bytes
            w.append(on ? 1 : 0)
        case .listener(let node, let vlan, let mac, let on):
            w.append(7)
            u32(node)
            u16(Int(vlan.rawValue))
            w += mac.bytes
            w.append(on ? 1 : 0)
        case .standby(let node):
            w.append(8)
            u32(node)
        case .moved(let spare, let failed, let p):
            w.append(9)
            u32(spare)
            u32(failed)
            peer(p)
        case .fenced(let node):
            w.append(10)
            u32(node)
        case .milestone(let node, let step):
            w.append(11)
            u32(node)
            w.append(step.rawValue)
        case .processFailed(let node, let status):
            w.append(12)
            u32(node)
            u32(UInt32(bitPattern: status))
        case .console(let node, let incarnation, let sequence, let text):
            w.append(13)
            u32(node)
            u32(UInt32(truncatingIfNeeded: incarnation >> 32))
            u32(UInt32(truncatingIfNeeded: incarnation))
            u32(sequence)
            let t = text.prefix(Self.maximumConsolePiece)
            u16(t.count)
            w += t
        }
        return w
    }

    /// Parses a message received over a management RVI; nil when it is malformed.
    public init?(parsing m: RawSpan) {
        guard let parsed = m.withUnsafeBytes({ ControlMessage(parsing: $0) }) else { return nil }
        self = parsed
    }

    /// `init(parsing:)` of a `RawSpan` on the bytes a delivery hands over in place.
    init?(parsing m: UnsafeRawBufferPointer) {
        var i = 0
        func need(_ n: Int) -> Bool { i + n <= m.count }
        func u8() -> UInt8? { guard need(1) else { return nil }; defer { i += 1 }; return m[i] }
        func u16() -> Int? { guard need(2) else { return nil }; defer { i += 2 }; return Int(m[i]) << 8 | Int(m[i + 1]) }
        func u32() -> UInt32? {
            guard need(4) else { return nil }
            defer { i += 4 }
            return UInt32(m[i]) << 24 | UInt32(m[i + 1]) << 16 | UInt32(m[i + 2]) << 8 | UInt32(m[i + 3])
        }
        func mac() -> MACAddress? { guard need(6) else { return nil }; defer { i += 6 }; return MACAddress(at: m.baseAddress! + i) }
        func address() -> FabricAddress? {
            guard let ip = u32(), let port = u16() else { return nil }
            return FabricAddress(ip: ip, port: UInt16(port))
        }
        func peer() -> NodeConfiguration.Peer? {
            guard let n = u32(), let a = address(), let b = address(), let local = u32(), let remote = u32(),
                  let macCount = u16() else { return nil }
            var macs: [MACAddress] = []
            for _ in 0..<macCount {
                guard let x = mac() else { return nil }
                macs.append(x)
            }
            return .init(address: NodeAddress(node: NodeNumber(n), fabricA: a, fabricB: b), localVI: local, remoteVI: remote, macs: macs)
        }
        func text(_ n: Int) -> String? {
            guard need(n) else { return nil }
            defer { i += n }
            return String(validating: UnsafeRawBufferPointer(rebasing: m[i..<(i + n)]), as: UTF8.self)
        }
        guard u8() == Self.kind, let op = u8(), let node = u32().map({ NodeNumber($0) }) else { return nil }
        switch op {
        case 1:
            guard i == m.count else { return nil }
            self = .register(node: node)
        case 2:
            guard let mtu = u16(), let nicCount = u16() else { return nil }
            var nics: [VirtualNICBinding] = []
            for _ in 0..<nicCount {
                guard let mac = mac(), let v = u16(), let vlan = VLANID(v), let p = u8(), p <= 1 else { return nil }
                nics.append(VirtualNICBinding(node: node, mac: mac, vlan: vlan, promiscuousAllowed: p == 1))
            }
            guard let peerCount = u16() else { return nil }
            var peers: [NodeConfiguration.Peer] = []
            for _ in 0..<peerCount {
                guard let p = peer() else { return nil }
                peers.append(p)
            }
            guard let addressCount = u16() else { return nil }
            var addresses: [AddressBinding] = []
            for _ in 0..<addressCount {
                guard let v = u16(), let vlan = VLANID(v), let n = u8(), let cidr = text(Int(n)), isIPv4CIDR(cidr) else { return nil }
                addresses.append(AddressBinding(vlan: vlan, cidr: cidr))
            }
            guard let workloadLength = u16(), let workload = text(workloadLength),
                  let high = u32(), let low = u32() else { return nil }
            guard i == m.count, (68...TAP.maximumMTU).contains(mtu) else { return nil }
            let personality = ProcessorPersonality(nics: nics, addresses: addresses, workload: workload.isEmpty ? nil : workload)
            self = .configuration(NodeConfiguration(node: node, mtu: mtu, personality: personality, peers: peers,
                                                    revision: UInt64(high) << 32 | UInt64(low)))
        case 3:
            guard let n = u8(), need(Int(n)), i + Int(n) == m.count else { return nil }
            // A reason that is not UTF-8 is refused like any malformed message (never repaired:
            // what a node shows is what the control node said).
            guard let reason = text(Int(n)) else { return nil }
            self = .refused(node: node, reason: reason)
        case 4, 5:
            guard let nic = mac(), let group = mac(), i == m.count else { return nil }
            self = op == 4 ? .join(node: node, nic: nic, group: group) : .leave(node: node, nic: nic, group: group)
        case 6:
            guard let nic = mac(), let on = u8(), on <= 1, i == m.count else { return nil }
            self = .promiscuous(node: node, nic: nic, on: on == 1)
        case 7:
            guard let v = u16(), let vlan = VLANID(v), let mac = mac(), let on = u8(), on <= 1, i == m.count else { return nil }
            self = .listener(node: node, vlan: vlan, mac: mac, on: on == 1)
        case 8:
            guard i == m.count else { return nil }
            self = .standby(node: node)
        case 9:
            guard let failed = u32(), let p = peer(), i == m.count else { return nil }
            self = .moved(spare: node, failed: NodeNumber(failed), peer: p)
        case 10:
            guard i == m.count else { return nil }
            self = .fenced(node: node)
        case 11:
            guard let raw = u8(), let step = FailoverStep(rawValue: raw), i == m.count else { return nil }
            self = .milestone(node: node, step: step)
        case 12:
            guard let status = u32(), i == m.count else { return nil }
            self = .processFailed(node: node, status: Int32(bitPattern: status))
        case 13:
            guard let high = u32(), let low = u32(), let sequence = u32(), let n = u16(), n <= Self.maximumConsolePiece,
                  need(n), i + n == m.count else { return nil }
            self = .console(node: node, incarnation: UInt64(high) << 32 | UInt64(low), sequence: sequence,
                            text: Array(UnsafeRawBufferPointer(rebasing: m[i..<(i + n)])))
        default:
            return nil
        }
    }
}
