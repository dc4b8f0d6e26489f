import PlexusCore
import PlexusLAN
import PlexusStorage
import PlexusNode

/// The platform's data ("Cluster Management Logic": the data structures that record the PANs'
/// network topologies, MAC assignments, each processor's storage correspondence, and the free
/// resources), as the values the store keeps and the API returns.
///
/// The central idea (claims 1–6 of seed 001): a processor's **personality** — its virtual MACs,
/// VLAN memberships, IP bindings, storage correspondence and workload — is a thing of its own,
/// held by one processor at a time. Failover moves it to a spare from the free pool.

/// A processing node the platform knows, and what it is doing.
public struct Processor: Codable, Sendable, Hashable {
    public enum State: String, Codable, Sendable, CaseIterable {
        /// In the free pool, shared by the whole platform (not per PAN).
        case free
        /// Holds a personality.
        case assigned
        /// Failed and fenced: it may not send into or receive from its old VLANs until the
        /// administrator returns it to the pool.
        case fenced
    }
    /// The node number (as in the platform definition).
    public var node: NodeNumber
    public var state: State
    /// The personality it holds (when assigned).
    public var personality: String?
    /// Why it was fenced, when it is.
    public var fencedReason: String?
}

/// A processing area network: a set of processors with their own VLANs.
public struct PAN: Codable, Sendable, Hashable {
    public var name: String
    /// The VLANs that belong to this PAN (VLAN numbers are platform-wide).
    public var vlans: [Int]
    /// The personalities in this PAN.
    public var personalities: [String]
}

/// One virtual NIC of a personality: its MAC (handed out once, never again) on one VLAN.
public struct NICRecord: Codable, Sendable, Hashable {
    public var mac: MACAddress
    public var vlan: Int
    public var promiscuousAllowed: Bool
}

/// An IPv4 address bound to a personality's NIC (aliases are more bindings).
public struct IPBinding: Codable, Sendable, Hashable {
    public var vlan: Int
    /// `a.b.c.d/len`.
    public var address: String
}

/// One entry of the platform's storage map: which PAN and personality (and the processor
/// holding it, if any) use a (target, LUN), and the storage it stands for.
public struct StorageAssignment: Codable, Sendable, Hashable {
    public var pan: String
    public var personality: String
    public var node: NodeNumber?
    public var mapping: StorageMapping

    public init(pan: String, personality: String, node: NodeNumber?, mapping: StorageMapping) {
        self.pan = pan
        self.personality = personality
        self.node = node
        self.mapping = mapping
    }
}

/// A personality: everything that makes a processor that processor.
public struct Personality: Codable, Sendable, Hashable {
    public var name: String
    public var pan: String
    /// The processor holding it; nil while it waits for a spare.
    public var node: NodeNumber?
    public var nics: [NICRecord]
    public var ips: [IPBinding]
    /// Its storage correspondence ("Configuration Component"): the virtual (target, LUN)s it
    /// uses, each with the path or SAN address it stands for and its access. Devices not in
    /// the map are not reachable (access control).
    public var storage: [StorageMapping]
    /// The workload: a command started in the processor's network namespace.
    public var workload: String?
    /// How many times it has moved to another processor.
    public var generation: Int

    /// The part of this personality that moves on failover, as the virtual LAN layer holds it
    /// (``ProcessorPersonality``: NICs held by ``node``, their addresses, the workload), or nil
    /// while no processor holds it. The storage map stays here: the LAN layer does not carry
    /// it. NICs and addresses on a number that is no VLAN are left out. Every conversion of a
    /// stored personality to the LAN's shape goes through here.
    public var processorPersonality: ProcessorPersonality? {
        guard let node else { return nil }
        let nics = self.nics.compactMap { n in
            VLANID(n.vlan).map { VirtualNICBinding(node: node, mac: n.mac, vlan: $0, promiscuousAllowed: n.promiscuousAllowed) }
        }
        let addresses = ips.compactMap { ip in VLANID(ip.vlan).map { AddressBinding(vlan: $0, cidr: ip.address) } }
        return ProcessorPersonality(nics: nics, addresses: addresses, workload: workload)
    }
}

/// Something that happened to the platform, kept for audit and for `plexus events`.
public struct PlatformEvent: Codable, Sendable, Hashable {
    public var id: Int64
    /// Milliseconds since the Unix epoch.
    public var timeMs: Int64
    public var kind: String
    public var subject: String
    public var detail: String
}

/// A refused request: what was wrong, naming the field, and the HTTP status it maps to.
public struct PlatformError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Codable {
        /// A field is malformed or out of range (400).
        case invalid
        /// The thing named does not exist (404).
        case notFound = "not-found"
        /// It conflicts with the current state (409): exists already, in use, pool empty.
        case conflict
        /// No token, or the wrong one (401).
        case unauthorized
    }
    public var kind: Kind
    /// The request field at fault (`name`, `vlan`, `address`...), or nil.
    public var field: String?
    public var message: String
    public init(_ kind: Kind, field: String? = nil, _ message: String) {
        self.kind = kind
        self.field = field
        self.message = message
    }
    public var description: String { field.map { "\($0): \(message)" } ?? message }
    public var httpStatus: Int {
        switch kind {
        case .invalid: 400
        case .notFound: 404
        case .conflict: 409
        case .unauthorized: 401
        }
    }
}

/// Checks on the fields of requests, each naming its field.
/// The numbers the platform gives its processors: those a node can run with (the VI numbering's
/// range, ``PlexusLAN/VINumbering/maximumNode``). The store, the API and the agent refuse others.
public enum PlatformLimits {
    public static let nodeNumbers = 1...Int(VINumbering.maximumNode.rawValue)

    /// How a number outside ``nodeNumbers`` is refused.
    public static func notANodeNumber(_ value: some CustomStringConvertible) -> String {
        "\(value) is not a node number (1...\(nodeNumbers.upperBound))"
    }
}

enum Check {
    /// A name: 1–63 characters of `a-z 0-9 -`, starting with a letter.
    static func name(_ s: String, field: String = "name") throws(PlatformError) {
        let ok = !s.isEmpty && s.count <= 63 && s.first!.isLetter && s.allSatisfy { ($0.isASCII && ($0.isLetter && $0.isLowercase || $0.isNumber)) || $0 == "-" }
        if !ok { throw PlatformError(.invalid, field: field, "'\(s)' is not a name (1-63 of a-z, 0-9 and '-', starting with a letter)") }
    }

    static func vlan(_ v: Int, field: String = "vlan") throws(PlatformError) -> VLANID {
        guard let id = VLANID(v) else { throw PlatformError(.invalid, field: field, "\(v) is not a VLAN number (1...4094)") }
        return id
    }

    static func node(_ n: NodeNumber, field: String = "node") throws(PlatformError) {
        guard PlatformLimits.nodeNumbers.contains(Int(n.rawValue)) else {
            throw PlatformError(.invalid, field: field, PlatformLimits.notANodeNumber(n))
        }
    }

    /// `a.b.c.d/len`, a host address (not the network or broadcast address of a /0–30).
    static func cidr(_ s: String, field: String = "address") throws(PlatformError) -> (IPv4Address, Int) {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        let octets = parts.first.map { $0.split(separator: ".", omittingEmptySubsequences: false) } ?? []
        guard parts.count == 2, let len = Int(parts[1]), (0...32).contains(len), octets.count == 4 else {
            throw PlatformError(.invalid, field: field, "'\(s)' is not an IPv4 address with a prefix length (a.b.c.d/len)")
        }
        var v: UInt32 = 0
        for o in octets {
            guard o.count <= 3, let b = UInt8(o) else { throw PlatformError(.invalid, field: field, "'\(s)': '\(o)' is not an octet (0...255)") }
            v = v << 8 | UInt32(b)
        }
        if len <= 30 {
            let host = v & ~(len == 0 ? 0 : ~UInt32(0) << (32 - len))
            let hostMask = len == 0 ? ~UInt32(0) : ~(~UInt32(0) << (32 - len))
            if host == 0 || host == hostMask {
                throw PlatformError(.invalid, field: field, "'\(s)' is the network's own or broadcast address, not a host's")
            }
        }
        return (IPv4Address(rawValue: v), len)
    }

    static func command(_ s: String, field: String = "command") throws(PlatformError) {
        if s.trimmingCharacters(in: .whitespaces).isEmpty || s.utf8.count > 4096 || s.contains("\0") {
            throw PlatformError(.invalid, field: field, "a workload is a non-empty command line of at most 4096 bytes")
        }
    }

    static func storage(_ s: String, field: String = "storage") throws(PlatformError) {
        if s.isEmpty || s.utf8.count > 1024 || s.contains("\0") || s.contains("\n") {
            throw PlatformError(.invalid, field: field, "a storage address is 1-1024 bytes on one line")
        }
    }

    static func scsi(_ v: Int, field: String, limit: Int) throws(PlatformError) {
        guard (0..<limit).contains(v) else { throw PlatformError(.invalid, field: field, "\(v) is out of range (0...\(limit - 1))") }
    }
}

import Foundation
