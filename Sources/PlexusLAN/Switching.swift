import PlexusCore
import PlexusRCLAN

/// The message that carries one Ethernet frame over an RVI ("Virtual Ethernet Driver": the driver
/// "prepends the packet with a TLV header"): a 4-byte header, then the frame as the kernel
/// built it (destination MAC, source MAC, type, payload), at most 16892 bytes.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | kind: 1 Ethernet frame |
/// | 1 | 1 | flags: bit 0 relayed by the virtual LAN server |
/// | 2 | 2 | VLAN number, big-endian |
public enum LANMessage {
    public static let headerSize = 4
    public static let frameKind: UInt8 = 1
    public static let relayed: UInt8 = 1
    /// An Ethernet header: two MACs and the type.
    public static let ethernetHeader = 14
    /// The largest Ethernet frame one message carries (the platform MTU less this header).
    public static let maxFrame = FrameLayout.maxPayload - headerSize

    /// The parts of a received message, or why it is refused.
    public struct Parsed {
        public var vlan: VLANID
        public var relayed: Bool
        public var destination: MACAddress
        public var source: MACAddress
    }

    public static func parse(_ m: UnsafeRawBufferPointer) -> Parsed? {
        guard m.count >= headerSize + ethernetHeader, m[0] == frameKind, m[1] & ~relayed == 0,
              let vlan = VLANID(Int(UInt16(m[2]) << 8 | UInt16(m[3])))
        else { return nil }
        let base = m.baseAddress! + headerSize
        return Parsed(vlan: vlan, relayed: m[1] & relayed != 0, destination: MACAddress(at: base),
                      source: MACAddress(at: base + 6))
    }

    /// Writes a message header and `frame` into `out` (≥ headerSize + frame.count); returns its size.
    public static func encode(vlan: VLANID, relayed isRelayed: Bool, frame: UnsafeRawBufferPointer,
                              into out: UnsafeMutableRawBufferPointer) -> Int {
        out[0] = frameKind
        out[1] = isRelayed ? relayed : 0
        out[2] = UInt8(vlan.rawValue >> 8)
        out[3] = UInt8(truncatingIfNeeded: vlan.rawValue)
        (out.baseAddress! + headerSize).copyMemory(from: frame.baseAddress!, byteCount: frame.count)
        return headerSize + frame.count
    }
}

/// The virtual LAN server on a control node ("Virtual LAN Server"): it receives the frames the
/// processing nodes cannot deliver directly (broadcast, multicast, and unicast whose direct RVI
/// is not usable) over each node's management RVI, and switches them by its
/// ``VirtualLANTable``: clones for broadcast and multicast, relay of last resort for unicast.
///
/// Engine-thread only, like the ``RCLAN`` layer it is the delegate of.
public final class VirtualLANServer: RVIDelegate {
    public var table = VirtualLANTable()
    /// Each processing node's management RVI.
    public private(set) var nodeRVI: [UInt32: RVI] = [:]
    var nodeOf: [RVI: UInt32] = [:]
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: FrameLayout.maxPayload, alignment: 8)
    public private(set) var switched: UInt64 = 0
    public private(set) var copiesSent: UInt64 = 0
    public private(set) var malformed: UInt64 = 0
    /// Copies not sent because a node's RVI was full (counted; the sender's TCP retransmits).
    public private(set) var copiesDropped: UInt64 = 0

    public init() {}
    deinit { scratch.deallocate() }

    /// Binds node `node`'s management RVI (opened by the control plane).
    public func attachNode(_ node: UInt32, rvi: RVI) {
        nodeRVI[node] = rvi
        nodeOf[rvi] = node
    }

    public func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        message.withUnsafeBytes { m in
            guard let node = nodeOf[rvi], let p = LANMessage.parse(m) else {
                malformed += 1
                return
            }
            let routed = table.route(from: node, vlan: p.vlan, destination: p.destination, source: p.source)
            guard case .success(let delivery) = routed else { return }  // refused and counted by the table
            switched += 1
            let frame = UnsafeRawBufferPointer(rebasing: m[LANMessage.headerSize...])
            let n = LANMessage.encode(vlan: p.vlan, relayed: true, frame: frame, into: scratch)
            for nic in delivery.to {
                guard let to = nodeRVI[nic.node] else { continue }
                do {
                    _ = try layer.send(UnsafeRawBufferPointer(rebasing: scratch[0..<n]).bytes, on: to)
                    copiesSent += 1
                } catch {
                    copiesDropped += 1
                }
            }
        }
    }
}

/// A processing node's virtual Ethernet driver ("Virtual Ethernet Driver") with the in-process
/// backend: frames come in through ``transmit(_:from:)`` and go out to ``onFrame``.
///
/// Unicast to a MAC with a direct RVI goes straight to that node; broadcast, multicast, and
/// unicast without a usable direct RVI go to the virtual LAN server, which still delivers them
/// (relay of last resort). A frame arriving on a direct RVI is accepted only for one of this
/// node's NICs, on that NIC's VLAN.
public final class VirtualEthernet: RVIDelegate {
    public let node: UInt32
    /// This node's NICs: MAC → VLAN.
    public private(set) var nics: [MACAddress: VLANID] = [:]
    public var serverRVI: RVI?
    /// Direct paths: a peer NIC's MAC → the RVI to its node.
    public private(set) var direct: [MACAddress: RVI] = [:]
    var unusable: Set<RVI> = []
    /// Called with each frame for one of this node's NICs: the NIC's MAC and the frame.
    public var onFrame: (MACAddress, RawSpan) -> Void = { _, _ in }
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: FrameLayout.maxPayload, alignment: 8)
    public private(set) var sentDirect: UInt64 = 0
    public private(set) var sentToServer: UInt64 = 0
    public private(set) var relayedFallbacks: UInt64 = 0
    public private(set) var delivered: UInt64 = 0
    public private(set) var refused: UInt64 = 0

    public init(node: UInt32) { self.node = node }
    deinit { scratch.deallocate() }

    public func addNIC(_ mac: MACAddress, vlan: VLANID) { nics[mac] = vlan }
    public func addDirectPath(to mac: MACAddress, rvi: RVI) { direct[mac] = rvi }

    /// Sends one Ethernet frame from this node's NIC `nic`.
    /// - Throws: ``RVISendError`` when neither a direct RVI nor the server could take it.
    public func transmit(_ frame: UnsafeRawBufferPointer, from nic: MACAddress, layer: RCLAN) throws {
        guard let vlan = nics[nic] else { throw LANRefusal.notMember }
        guard frame.count >= LANMessage.ethernetHeader, frame.count <= LANMessage.maxFrame else { throw LANRefusal.runt }
        let destination = MACAddress(at: frame.baseAddress!)
        let n = LANMessage.encode(vlan: vlan, relayed: false, frame: frame, into: scratch)
        let message = UnsafeRawBufferPointer(rebasing: scratch[0..<n])
        if !destination.isGroup, let rvi = direct[destination], !unusable.contains(rvi), layer.canSend(on: rvi) {
            do {
                _ = try layer.send(message.bytes, on: rvi)
                sentDirect += 1
                return
            } catch {}
        }
        guard let server = serverRVI else { throw RVISendError.noSuchRVI }
        if !destination.isGroup && direct[destination] != nil { relayedFallbacks += 1 }
        _ = try layer.send(message.bytes, on: server)
        sentToServer += 1
    }

    public func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        message.withUnsafeBytes { m in
            guard let p = LANMessage.parse(m) else {
                refused += 1
                return
            }
            let frame = UnsafeRawBufferPointer(rebasing: m[LANMessage.headerSize...])
            if p.destination.isGroup || p.relayed && rvi == serverRVI {
                // From the server: it has switched by its table; a group frame goes to this node's
                // NIC on that VLAN.
                guard let nic = nics.first(where: { $0.value == p.vlan })?.key else {
                    refused += 1
                    return
                }
                delivered += 1
                onFrame(nic, frame.bytes)  // a group frame, a relayed one, or a promiscuous copy
                return
            }
            // A direct path: only for one of this node's NICs, on its own VLAN.
            guard nics[p.destination] == p.vlan else {
                refused += 1
                return
            }
            delivered += 1
            onFrame(p.destination, frame.bytes)
        }
    }

    public func event(_ event: RVIEvent, on rvi: RVI, layer: RCLAN) {
        switch event {
        case .unusable: unusable.insert(rvi)
        case .usable, .legUp: unusable.remove(rvi)
        default: break
        }
    }
}
