import PlexusCore
import PlexusRCLAN
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Messages

/// The version of one node's entry as a digest names it: the owner's version number and a hash
/// of the entry's contents.
///
/// The hash settles the one case versions alone cannot: a node that restarts without memory of
/// its old version and publishes different contents under the same version. Between two copies
/// of the same version, the one with the larger hash wins everywhere, and when the owner meets a
/// copy of its own entry that is not its own at a version not below its own, it bumps its version
/// past it (seed 003: the owner is the computer that updates its own entry, claims 29 and 35).
public struct EntryStamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var version: UInt64
    public var hash: UInt32

    public init(version: UInt64, hash: UInt32) {
        self.version = version
        self.hash = hash
    }

    /// The stamp of `entry`: its version and the FNV-1a hash of its encoding.
    public init(_ entry: NodeEntry) {
        self.init(version: entry.version, hash: TableMessage.contentHash(entry))
    }

    /// Ordered by version, then by hash: the larger stamp is the copy every node keeps.
    public static func < (l: EntryStamp, r: EntryStamp) -> Bool {
        (l.version, l.hash) < (r.version, r.hash)
    }

    public var description: String { "v\(version)#\(String(hash, radix: 16))" }
}

/// A digest of part of an address table: for every node whose number lies in `low...high`, the
/// stamp of the entry the sender holds. A node in the range and absent from `stamps` is one the
/// sender has no entry for.
///
/// A digest is what a node sends its neighbours periodically and after any change (seed 003,
/// claims 29 and 35: the nodes exchange the updated table until each holds an identical copy);
/// the receiver answers with the entries it holds that are newer, and, when the digest shows the
/// sender holds something newer, with its own digest of the same range (a *reply*, which is never
/// answered with a digest, so an exchange always ends).
public struct TableDigest: Sendable, Hashable {
    /// Whether this digest answers another (and so asks only for entries, not for a digest).
    public var isReply: Bool
    /// The node numbers the digest covers.
    public var low: NodeNumber
    public var high: NodeNumber
    public var stamps: [NodeNumber: EntryStamp]

    public init(isReply: Bool, low: NodeNumber = 0, high: NodeNumber = NodeNumber(.max), stamps: [NodeNumber: EntryStamp]) {
        self.isReply = isReply
        self.low = low
        self.high = high
        self.stamps = stamps
    }

    /// Whether `node` lies in the range this digest covers.
    public func covers(_ node: NodeNumber) -> Bool { node >= low && node <= high }
}

/// Why a distribution message was refused. Every refused message is counted
/// (``TableExchange/malformedMessages``) and dropped; nothing of it is used.
public enum TableMessageDecodeError: Error, Sendable, Hashable {
    /// A message of no bytes.
    case empty
    /// The first byte names no message kind.
    case unknownKind(UInt8)
    /// The message ends before what it announces.
    case truncated
    /// More bytes than the message announces.
    case trailingBytes
    /// A digest whose range is empty (`low > high`), whose nodes are not strictly ascending, or
    /// that names a node outside its own range.
    case badDigest(String)
    /// An entries message whose table encoding was refused.
    case table(AddressTableDecodeError)
}

/// The messages the ``TableDistributor`` sends over an RVI: a one-byte kind, then the body.
///
///     digest (1), reply (2):  u8 kind, u32 low, u32 high, u32 count,
///                             count × (u32 node, u64 version, u32 hash), nodes strictly
///                             ascending and inside low...high
///     entries (3):            u8 kind, then the address table's own encoding ("PLAT" …) of
///                             the entries carried
///
/// All integers are big-endian; every length is checked on decode. Every message fits in one
/// RCLAN message (``maxBytes``, 16896 bytes): a digest or a set of entries that would not is
/// split into several messages (digests by node range, entries by whole entries).
public enum TableMessage: Sendable, Hashable {
    case digest(TableDigest)
    case entries(AddressTable)

    /// The one-byte kinds.
    public enum Kind: UInt8, Sendable, CaseIterable {
        case digest = 1
        case reply = 2
        case entries = 3
    }

    /// The largest message: one RCLAN message (``PlexusCore/FrameLayout/maxPayload``).
    public static let maxBytes = FrameLayout.maxPayload
    /// The smallest message limit a sender may be configured with: one entry of the largest
    /// size (16 adapters with 32-byte types and gateways) always fits.
    public static let minimumLimit = 1024
    /// Bytes of a digest before its pairs, and of each pair.
    public static let digestHeaderBytes = 13
    public static let digestPairBytes = 16
    /// Bytes of an entries message before its first entry (kind, "PLAT", version, count).
    public static let entriesHeaderBytes = 10

    // MARK: Encoding

    /// Encodes this message (one message; use ``digestMessages(of:range:reply:limit:)`` and
    /// ``entryMessages(_:limit:)`` to get messages that respect a size limit).
    public func encoded() -> [UInt8] {
        switch self {
        case .digest(let d):
            let nodes = d.stamps.keys.sorted()
            var out: [UInt8] = []
            out.reserveCapacity(Self.digestHeaderBytes + Self.digestPairBytes * nodes.count)
            out.append(d.isReply ? Kind.reply.rawValue : Kind.digest.rawValue)
            Self.put(d.low.rawValue, &out)
            Self.put(d.high.rawValue, &out)
            Self.put(UInt32(nodes.count), &out)
            for n in nodes {
                let s = d.stamps[n]!
                Self.put(n.rawValue, &out)
                Self.put(s.version, &out)
                Self.put(s.hash, &out)
            }
            return out
        case .entries(let t):
            return [Kind.entries.rawValue] + t.encoded()
        }
    }

    /// The digest of the entries of `table` whose nodes lie in `range`, as one message or, when
    /// one would exceed `limit` bytes, as several covering consecutive parts of the range.
    public static func digestMessages(of table: AddressTable, range: ClosedRange<NodeNumber> = NodeNumber.wireRange,
                                      reply: Bool = false, limit: Int = maxBytes) -> [[UInt8]] {
        let stamps = table.entries.values.lazy.filter { range.contains($0.node) }.map { ($0.node, EntryStamp($0)) }
        return digestMessages(stamps: Dictionary(uniqueKeysWithValues: stamps), range: range, reply: reply, limit: limit)
    }

    static func digestMessages(stamps: [NodeNumber: EntryStamp], range: ClosedRange<NodeNumber>, reply: Bool,
                               limit: Int) -> [[UInt8]] {
        let perMessage = max(1, (max(limit, minimumLimit) - digestHeaderBytes) / digestPairBytes)
        let nodes = stamps.keys.filter { range.contains($0) }.sorted()
        var out: [[UInt8]] = []
        var start = 0
        repeat {
            let end = min(nodes.count, start + perMessage)
            let low = start == 0 ? range.lowerBound : nodes[start]
            // The next part starts at its first node; this part ends just before it.
            let high = end == nodes.count ? range.upperBound : NodeNumber(nodes[end].rawValue - 1)
            var part: [NodeNumber: EntryStamp] = [:]
            part.reserveCapacity(end - start)
            for n in nodes[start..<end] { part[n] = stamps[n]! }
            out.append(TableMessage.digest(TableDigest(isReply: reply, low: low, high: high, stamps: part)).encoded())
            start = end
        } while start < nodes.count
        return out
    }

    /// `entries` as entries messages of at most `limit` bytes each (never fewer than
    /// ``minimumLimit``), each holding whole entries, in node order. No entries, no messages.
    public static func entryMessages(_ entries: [NodeEntry], limit: Int = maxBytes) -> [[UInt8]] {
        let limit = max(limit, minimumLimit)
        var out: [[UInt8]] = []
        var chunk: [NodeEntry] = []
        var size = entriesHeaderBytes
        for e in entries.sorted(by: { $0.node < $1.node }) {
            let s = encodedSize(e)
            if !chunk.isEmpty && size + s > limit {
                out.append(TableMessage.entries(AddressTable(entries: chunk)).encoded())
                chunk.removeAll(keepingCapacity: true)
                size = entriesHeaderBytes
            }
            chunk.append(e)
            size += s
        }
        if !chunk.isEmpty { out.append(TableMessage.entries(AddressTable(entries: chunk)).encoded()) }
        return out
    }

    /// Bytes `entry` takes in the table's encoding (see AddressTable+Wire.swift).
    public static func encodedSize(_ entry: NodeEntry) -> Int {
        var n = 4 + 8 + 1
        for a in entry.adapters {
            n += 1 + 4 + 2 + 1 + 1 + min(32, a.adapterType.utf8.count) + 4 + 4 + 1 + 1 + (a.gateway == nil ? 0 : 4)
        }
        return n
    }

    /// FNV-1a (32-bit) of `entry`'s encoding: equal entries hash equal on every node.
    public static func contentHash(_ entry: NodeEntry) -> UInt32 {
        let bytes = AddressTable(entries: [entry]).encoded()
        var h: UInt32 = 0x811c_9dc5
        // Skip "PLAT", the version and the count: the entry's own bytes only.
        for b in bytes.dropFirst(9) { h = (h ^ UInt32(b)) &* 0x0100_0193 }
        return h
    }

    static func put(_ v: some FixedWidthInteger, _ out: inout [UInt8]) {
        withUnsafeBytes(of: v.bigEndian) { out += $0 }
    }

    // MARK: Decoding

    /// Decodes one message, checking every length and value.
    public init(decoding bytes: [UInt8]) throws(TableMessageDecodeError) {
        guard let first = bytes.first else { throw .empty }
        guard let kind = Kind(rawValue: first) else { throw .unknownKind(first) }
        switch kind {
        case .entries:
            do throws(AddressTableDecodeError) {
                self = .entries(try AddressTable(decoding: Array(bytes.dropFirst())))
            } catch {
                throw .table(error)
            }
        case .digest, .reply:
            var i = 1
            func u<T: FixedWidthInteger>(_: T.Type) throws(TableMessageDecodeError) -> T {
                let n = MemoryLayout<T>.size
                guard bytes.count - i >= n else { throw .truncated }
                var v: T = 0
                for k in i..<(i + n) { v = v << 8 | T(bytes[k]) }
                i += n
                return v
            }
            let low = NodeNumber(try u(UInt32.self)), high = NodeNumber(try u(UInt32.self))
            guard low <= high else { throw .badDigest("range \(low)...\(high) is empty") }
            let count = Int(try u(UInt32.self))
            // Checked against what is left before anything is allocated for it.
            guard (bytes.count - i) / Self.digestPairBytes >= count else { throw .truncated }
            var stamps: [NodeNumber: EntryStamp] = [:]
            stamps.reserveCapacity(count)
            var previous: NodeNumber? = nil
            for _ in 0..<count {
                let node = NodeNumber(try u(UInt32.self))
                let version = try u(UInt64.self)
                let hash = try u(UInt32.self)
                guard node >= low && node <= high else { throw .badDigest("node \(node) outside \(low)...\(high)") }
                if let p = previous, node <= p { throw .badDigest("nodes not strictly ascending at \(node)") }
                previous = node
                stamps[node] = EntryStamp(version: version, hash: hash)
            }
            guard i == bytes.count else { throw .trailingBytes }
            self = .digest(TableDigest(isReply: kind == .reply, low: low, high: high, stamps: stamps))
        }
    }
}
