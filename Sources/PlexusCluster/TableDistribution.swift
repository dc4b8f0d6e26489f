import PlexusCore
import PlexusRCLAN
#if canImport(Glibc)
import Glibc
#endif

// Distributing seed 003's cluster destination address table between running nodes, over the
// RCLAN layer's reliable, in-order RVIs: push-pull anti-entropy with digests.
//
// Seed 003, claims 29 and 35: each computer stores a copy of the table, updates it with the
// adapter information about itself, sends the updated table to the others, and "said each
// computer in said cluster exchanging said updated cluster destination address table such that
// said each computer in said cluster receives an identical copy". Claim 9: the table carries
// status information for each address, so a change of status (an adapter going unreachable) is
// a change of the owner's entry and spreads the same way.

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
    public var low: UInt32
    public var high: UInt32
    public var stamps: [UInt32: EntryStamp]

    public init(isReply: Bool, low: UInt32 = 0, high: UInt32 = .max, stamps: [UInt32: EntryStamp]) {
        self.isReply = isReply
        self.low = low
        self.high = high
        self.stamps = stamps
    }

    /// Whether `node` lies in the range this digest covers.
    public func covers(_ node: UInt32) -> Bool { node >= low && node <= high }
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
            Self.put(d.low, &out)
            Self.put(d.high, &out)
            Self.put(UInt32(nodes.count), &out)
            for n in nodes {
                let s = d.stamps[n]!
                Self.put(n, &out)
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
    public static func digestMessages(of table: AddressTable, range: ClosedRange<UInt32> = 0...UInt32.max,
                                      reply: Bool = false, limit: Int = maxBytes) -> [[UInt8]] {
        let stamps = table.entries.values.lazy.filter { range.contains($0.node) }.map { ($0.node, EntryStamp($0)) }
        return digestMessages(stamps: Dictionary(uniqueKeysWithValues: stamps), range: range, reply: reply, limit: limit)
    }

    static func digestMessages(stamps: [UInt32: EntryStamp], range: ClosedRange<UInt32>, reply: Bool,
                               limit: Int) -> [[UInt8]] {
        let perMessage = max(1, (max(limit, minimumLimit) - digestHeaderBytes) / digestPairBytes)
        let nodes = stamps.keys.filter { range.contains($0) }.sorted()
        var out: [[UInt8]] = []
        var start = 0
        repeat {
            let end = min(nodes.count, start + perMessage)
            let low = start == 0 ? range.lowerBound : nodes[start]
            // The next part starts at its first node; this part ends just before it.
            let high = end == nodes.count ? range.upperBound : nodes[end] - 1
            var part: [UInt32: EntryStamp] = [:]
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
            let low = try u(UInt32.self), high = try u(UInt32.self)
            guard low <= high else { throw .badDigest("range \(low)...\(high) is empty") }
            let count = Int(try u(UInt32.self))
            // Checked against what is left before anything is allocated for it.
            guard (bytes.count - i) / Self.digestPairBytes >= count else { throw .truncated }
            var stamps: [UInt32: EntryStamp] = [:]
            stamps.reserveCapacity(count)
            var previous: UInt32? = nil
            for _ in 0..<count {
                let node = try u(UInt32.self)
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

// MARK: - The exchange, without a fabric

/// One node's side of the table's push-pull anti-entropy exchange, as a value with no fabric
/// under it: messages in, messages out. ``TableDistributor`` runs it over RVIs; tests can run it
/// by handing messages from one exchange to another.
///
/// Peers are named by a number of the caller's choosing (the distributor uses the RVI's id).
/// Messages to one peer are assumed to arrive reliably and in order, as on an RVI: the exchange
/// remembers, per peer, the entries that peer already has or has been sent, and neither answers
/// a digest nor pushes a change with them again (so a large table in flight is not sent twice
/// because a digest crossed it). When that assumption breaks (messages failed, the peer
/// restarted), ``forget(peer:)`` makes the next digest from that peer be answered in full.
///
/// Seed 003, claims 29 and 35: the node stores a copy of the cluster destination address table,
/// updates it with the adapter information about itself (``setLocalEntry(_:)``), and exchanges
/// it with the others until every node holds an identical copy. Claim 9: each address carries its
/// status, which changes like any other part of the owner's entry.
public struct TableExchange: Sendable {
    /// This node's number.
    public let node: UInt32
    /// The largest message this side sends (``TableMessage/minimumLimit`` … 16896 bytes).
    public let maxMessageBytes: Int
    /// The table as this node holds it now.
    public private(set) var table = AddressTable()
    /// This node's own entry, once set.
    public private(set) var localEntry: NodeEntry?
    /// Times the table changed (an entry taken from a peer, or this node's own entry changed).
    public private(set) var changes: UInt64 = 0
    /// Entries taken from peers (each one newer than the copy held before).
    public private(set) var entriesTaken: UInt64 = 0
    /// Messages refused as malformed, and the reason for the last one.
    public private(set) var malformedMessages: UInt64 = 0
    public private(set) var lastMalformed: TableMessageDecodeError?
    /// Stamps of the table's entries, kept with the table.
    private var stamps: [UInt32: EntryStamp] = [:]
    /// Per peer: the stamps of entries it has (it sent them) or will have (they were sent to it).
    private var known: [UInt32: [UInt32: EntryStamp]] = [:]
    /// Nodes whose entry changed since the last ``pushMessages(to:)``.
    private var changed: Set<UInt32> = []

    /// - Parameters:
    ///   - node: this node's number; the only entry this side changes on its own is this node's.
    ///   - maxMessageBytes: the largest message to send (clamped to
    ///     ``TableMessage/minimumLimit`` … ``TableMessage/maxBytes``).
    public init(node: UInt32, maxMessageBytes: Int = TableMessage.maxBytes) {
        self.node = node
        self.maxMessageBytes = min(TableMessage.maxBytes, max(TableMessage.minimumLimit, maxMessageBytes))
    }

    /// The stamp of the entry held for `node`, if any.
    public func stamp(of node: UInt32) -> EntryStamp? { stamps[node] }

    /// Sets this node's own entry (its adapters, their status, MTU, mask …: seed 003, claims 9,
    /// 29, 35). The version stored is the larger of `entry.version` and one more than any version
    /// of this node's entry seen so far, so the change supersedes every copy in the cluster. An
    /// entry with the same adapters as the current one changes nothing.
    ///
    /// - Returns: the entry as stored (with its version), and whether the table changed.
    /// - Throws: when `entry` names another node, or would not survive its own encoding (more than
    ///   ``AddressTable/maxAdapters`` adapters, an MTU or adapter type the decoder refuses).
    @discardableResult
    public mutating func setLocalEntry(_ entry: NodeEntry) throws(AddressTableDecodeError) -> (entry: NodeEntry, changed: Bool) {
        guard entry.node == node else { throw .badValue("entry of node \(entry.node) set on node \(node)") }
        guard entry.adapters.count <= AddressTable.maxAdapters else {
            throw .badValue("\(entry.adapters.count) adapters (at most \(AddressTable.maxAdapters))")
        }
        // What every receiver will decode must be what was set.
        let decoded = try AddressTable(decoding: AddressTable(entries: [entry]).encoded())
        guard decoded.entries[node]?.adapters == entry.adapters else {
            throw .badValue("adapters of node \(node) do not survive encoding (adapter type over 32 bytes?)")
        }
        let current = table.entries[node]
        if let l = localEntry, l.adapters == entry.adapters, entry.version <= l.version { return (l, false) }
        var e = entry
        e.version = max(entry.version, (current?.version ?? 0) + 1)
        localEntry = e
        put(e)
        return (e, true)
    }

    /// The digest of the whole table, as one message or several (see ``TableMessage``).
    public func digestMessages() -> [[UInt8]] {
        TableMessage.digestMessages(stamps: stamps, range: 0...UInt32.max, reply: false, limit: maxMessageBytes)
    }

    /// Whether entries changed since the last ``pushMessages(to:)``.
    public var hasChanges: Bool { !changed.isEmpty }

    /// The entries that changed since the last call (taken from peers, or this node's own), as
    /// entries messages for each of `peers`, less what each is known to have; then starts
    /// collecting changes afresh. This is the push of a change to the neighbours.
    public mutating func pushMessages(to peers: [UInt32]) -> [UInt32: [[UInt8]]] {
        defer { changed.removeAll(keepingCapacity: true) }
        guard !changed.isEmpty else { return [:] }
        let nodes = changed.sorted()
        var out: [UInt32: [[UInt8]]] = [:]
        for p in peers {
            var send: [NodeEntry] = []
            for n in nodes {
                guard let mine = stamps[n] else { continue }
                if let k = known[p]?[n], k >= mine { continue }
                known[p, default: [:]][n] = mine
                send.append(table.entries[n]!)
            }
            let m = TableMessage.entryMessages(send, limit: maxMessageBytes)
            if !m.isEmpty { out[p] = m }
        }
        return out
    }

    /// Forgets what `peer` is known to have: its messages may have been lost (failed by the
    /// layer, dropped from a full queue) or it restarted.
    public mutating func forget(peer: UInt32) {
        known[peer] = nil
    }

    /// Handles one message from `peer` and returns the messages to send back to it. A
    /// malformed message is counted and dropped: it changes nothing and gets no answer.
    public mutating func handle(_ bytes: [UInt8], from peer: UInt32) -> [[UInt8]] {
        let message: TableMessage
        do {
            message = try TableMessage(decoding: bytes)
        } catch {
            malformedMessages &+= 1
            lastMalformed = error
            return []
        }
        switch message {
        case .digest(let d): return answer(d, peer)
        case .entries(let t):
            take(t, peer)
            return []
        }
    }

    /// Whether an entry stamped `theirs` should replace what this side holds for `node`.
    private func wants(_ node: UInt32, _ theirs: EntryStamp) -> Bool {
        if node == self.node, localEntry != nil { return false }  // the owner never takes a copy of itself
        guard let mine = stamps[node] else { return true }
        return theirs > mine
    }

    /// The owner met a copy of its own entry stamped `theirs`: one that is not its own, at a
    /// version not below its own, was published by an earlier life of this node; supersede it.
    private mutating func ownCopySeen(_ theirs: EntryStamp) {
        guard var l = localEntry, let mine = stamps[node], theirs != mine, theirs.version >= l.version else { return }
        l.version = theirs.version + 1
        localEntry = l
        put(l)
    }

    private mutating func answer(_ d: TableDigest, _ peer: UInt32) -> [[UInt8]] {
        if let theirs = d.stamps[node], localEntry != nil { ownCopySeen(theirs) }
        // Push: what this side holds that is newer than the digest (or missing from it), and
        // not already sent to the peer.
        var newer: [NodeEntry] = []
        var k = known[peer] ?? [:]
        known[peer] = nil  // not copied on write below
        for (n, mine) in stamps where d.covers(n) {
            if let theirs = d.stamps[n], theirs >= mine { continue }
            if let sent = k[n], sent >= mine { continue }
            k[n] = mine
            newer.append(table.entries[n]!)
        }
        known[peer] = k
        var out = TableMessage.entryMessages(newer, limit: maxMessageBytes)
        // Pull: the digest shows the peer holds something newer; a reply digest asks for it.
        if !d.isReply, d.stamps.contains(where: { wants($0.key, $0.value) }) {
            out += TableMessage.digestMessages(stamps: stamps, range: d.low...d.high, reply: true, limit: maxMessageBytes)
        }
        return out
    }

    private mutating func take(_ t: AddressTable, _ peer: UInt32) {
        for n in t.entries.keys.sorted() {
            let e = t.entries[n]!
            let theirs = EntryStamp(e)
            // The peer has it: a change it brings is not pushed back to it.
            if let k = known[peer]?[n], k >= theirs {} else { known[peer, default: [:]][n] = theirs }
            if n == node, localEntry != nil {
                ownCopySeen(theirs)
            } else if wants(n, theirs) {
                put(e)
                entriesTaken &+= 1
            }
        }
    }

    /// Stores `e` for its node, replacing what is there (also at the same version, which
    /// ``AddressTable/update(_:)`` keeps; that happens only when hashes break a tie).
    private mutating func put(_ e: NodeEntry) {
        if let have = table.entries[e.node], have.version >= e.version {
            table = AddressTable(entries: table.entries.values.filter { $0.node != e.node } + [e])
        } else {
            table.update(e)
        }
        stamps[e.node] = EntryStamp(e)
        changed.insert(e.node)
        changes &+= 1
    }
}

// MARK: - Over the fabric

/// Counters of a ``TableDistributor``, readable from another thread as a value.
public struct DistributionStatistics: Sendable, Hashable {
    public var node: UInt32 = 0
    public var neighbours: Int = 0
    public var entries: Int = 0
    /// ``AddressTable/digest`` of the table held.
    public var tableDigest: UInt64 = 0
    public var messagesSent: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var messagesReceived: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    /// Digest messages sent periodically or after a change (replies to digests are not counted
    /// here; every message is counted in `messagesSent`).
    public var digestsSent: UInt64 = 0
    /// Entries messages pushed to neighbours after a change (answers to digests are not counted
    /// here).
    public var updatesSent: UInt64 = 0
    public var entriesTaken: UInt64 = 0
    public var changes: UInt64 = 0
    public var malformedMessages: UInt64 = 0
    /// Sends refused with ``PlexusRCLAN/RVISendError/windowFull`` or ``PlexusRCLAN/RVISendError/noBuffers``
    /// and retried on a later turn.
    public var sendRetries: UInt64 = 0
    /// Messages the layer failed (peer restarted, unreachable, closed): covered by the next digest.
    public var messagesFailed: UInt64 = 0
    /// Messages not queued because a peer's queue was full, or dropped with a closed RVI.
    public var messagesDropped: UInt64 = 0
}

/// Distributes seed 003's cluster destination address table between running nodes over the
/// fabric, so that every node ends with an identical copy (claims 29 and 35: each node updates
/// the table with the adapter information about itself, and the nodes exchange the updated table
/// until each receives an identical copy; claim 9: with each address's status).
///
/// Install it as the ``PlexusRCLAN/RVIDelegate`` of an ``PlexusRCLAN/RCLAN`` layer, open one RVI
/// to each neighbour node and ``addNeighbour(_:)`` it; the neighbours need not be every node,
/// only a connected graph. The protocol is push-pull anti-entropy (see ``TableMessage`` and
/// ``TableExchange``): every ``Configuration/interval``, and right after this node's own entry
/// changes, the distributor sends each neighbour a digest (node → version); the neighbour answers
/// with the entries it holds that are newer, and with its own digest when the first holds
/// something newer, which the first answers with those entries. On top of that, any entry that
/// changes (this node's own, or one taken from a peer) is pushed on the next turn to every
/// neighbour not known to have it, so a change crosses the cluster in one hop per turn without
/// waiting for the next digest, and a large table in flight is not sent again because a digest
/// crossed it.
///
/// The RVIs are reliable and in order, so the distributor has no retransmission of its own: a
/// send refused for back-pressure (`windowFull`, `noBuffers`) stays queued and is retried on a
/// later turn, and messages the layer fails (a peer that restarted, an RVI unreachable past
/// `failAfter`) are covered by the next periodic digest.
///
/// Like ``PlexusRCLAN/RCLAN`` it lives on the engine thread and is not `Sendable`: build it in the
/// driver closure of ``PlexusCore/EngineThread/start(_:driver:)`` and reach it with
/// `RCLAN.on(engine)!.service(TableDistributor.self)!` inside ``PlexusCore/EngineThread/run(_:)``.
public final class TableDistributor: RVIDelegate {
    /// Timing and limits.
    public struct Configuration: Sendable, Hashable {
        /// How often a digest goes to every neighbour when nothing changes, measured with the
        /// monotonic clock across layer turns.
        public var interval: Duration = .milliseconds(20)
        /// The largest message sent (``TableMessage/minimumLimit`` … 16896 bytes).
        public var maxMessageBytes: Int = TableMessage.maxBytes
        /// Messages queued per peer before further answers are dropped (the next digest covers
        /// them).
        public var maxQueuedMessages: Int = 4096

        public init(interval: Duration = .milliseconds(20), maxMessageBytes: Int = TableMessage.maxBytes,
                    maxQueuedMessages: Int = 4096) {
            self.interval = interval
            self.maxMessageBytes = maxMessageBytes
            self.maxQueuedMessages = maxQueuedMessages
        }
    }

    struct Peer {
        var rvi: RVI
        /// Sent periodic and change digests (answers go to any RVI a message came on).
        var isNeighbour: Bool
        var digestDue: Bool
        var outbox: [[UInt8]] = []
        var head = 0
        var queued: Int { outbox.count - head }
    }

    public let configuration: Configuration
    /// The protocol state: the table, this node's entry, and the exchange's counters.
    public private(set) var exchange: TableExchange
    var peers: [Peer] = []
    var peerIndex: [RVI: Int] = [:]
    let intervalNanos: UInt64
    var nextDigestAt: UInt64 = 0

    public private(set) var messagesSent: UInt64 = 0
    public private(set) var bytesSent: UInt64 = 0
    public private(set) var messagesReceived: UInt64 = 0
    public private(set) var bytesReceived: UInt64 = 0
    public private(set) var digestsSent: UInt64 = 0
    public private(set) var updatesSent: UInt64 = 0
    public private(set) var sendRetries: UInt64 = 0
    public private(set) var messagesFailed: UInt64 = 0
    public private(set) var messagesDropped: UInt64 = 0

    /// A distributor for node `node`, which knows nothing until ``setLocalEntry(_:)`` and its
    /// neighbours tell it (seed 003, claim 35: each computer updates the table with the adapter
    /// information about itself).
    public init(node: UInt32, configuration: Configuration = Configuration()) {
        self.configuration = configuration
        exchange = TableExchange(node: node, maxMessageBytes: configuration.maxMessageBytes)
        let c = configuration.interval.components
        intervalNanos = max(100_000, UInt64(max(0, c.seconds)) * 1_000_000_000 + UInt64(max(0, c.attoseconds) / 1_000_000_000))
    }

    /// A distributor that starts with its own entry.
    /// - Throws: as ``setLocalEntry(_:)``.
    public convenience init(localEntry: NodeEntry, configuration: Configuration = Configuration()) throws(AddressTableDecodeError) {
        self.init(node: localEntry.node, configuration: configuration)
        try setLocalEntry(localEntry)
    }

    /// This node's number.
    public var node: UInt32 { exchange.node }
    /// The table as this node holds it now.
    public var table: AddressTable { exchange.table }
    /// This node's own entry, once set.
    public var localEntry: NodeEntry? { exchange.localEntry }
    /// Times the table changed (entries taken, or this node's own entry changed).
    public var changes: UInt64 { exchange.changes }
    /// Entries taken from peers.
    public var entriesTaken: UInt64 { exchange.entriesTaken }
    /// Messages refused as malformed (counted and dropped, never used).
    public var malformedMessages: UInt64 { exchange.malformedMessages }
    /// The neighbours digests go to.
    public var neighbours: [RVI] { peers.filter(\.isNeighbour).map(\.rvi) }

    /// All counters at once, as a value another thread can hold.
    public var statistics: DistributionStatistics {
        DistributionStatistics(
            node: node, neighbours: neighbours.count, entries: table.entries.count, tableDigest: table.digest,
            messagesSent: messagesSent, bytesSent: bytesSent, messagesReceived: messagesReceived,
            bytesReceived: bytesReceived, digestsSent: digestsSent, updatesSent: updatesSent,
            entriesTaken: entriesTaken, changes: changes, malformedMessages: malformedMessages,
            sendRetries: sendRetries, messagesFailed: messagesFailed, messagesDropped: messagesDropped)
    }

    /// Sets this node's own entry (its adapters: address, status, type, MTU, mask, class of
    /// service, gateway; seed 003, claims 9, 29, 35). On the next turn the entry is pushed to
    /// every neighbour, followed by a digest, so the change spreads. The version is bumped past
    /// every copy of this node's entry seen so far; an entry with unchanged adapters changes
    /// nothing.
    /// - Returns: the entry as stored, with its version.
    /// - Throws: when `entry` names another node or would not survive its encoding.
    @discardableResult
    public func setLocalEntry(_ entry: NodeEntry) throws(AddressTableDecodeError) -> NodeEntry {
        let r = try exchange.setLocalEntry(entry)
        if r.changed { pushToAll() }
        return r.entry
    }

    /// Adds an open RVI to a neighbour node: it gets a digest on the next turn and every
    /// ``Configuration/interval`` after.
    public func addNeighbour(_ rvi: RVI) {
        let i = peer(rvi)
        peers[i].isNeighbour = true
        peers[i].digestDue = true
    }

    /// Stops sending digests to `rvi` (answers to messages that still arrive on it are sent).
    public func removeNeighbour(_ rvi: RVI) {
        guard let i = peerIndex[rvi] else { return }
        peers[i].isNeighbour = false
        peers[i].digestDue = false
    }

    func peer(_ rvi: RVI) -> Int {
        if let i = peerIndex[rvi] { return i }
        peers.append(Peer(rvi: rvi, isNeighbour: false, digestDue: false))
        peerIndex[rvi] = peers.count - 1
        return peers.count - 1
    }

    func pushToAll() {
        for i in peers.indices where peers[i].isNeighbour { peers[i].digestDue = true }
    }

    func enqueue(_ messages: [[UInt8]], to i: Int) {
        guard !messages.isEmpty else { return }
        if peers[i].queued + messages.count > configuration.maxQueuedMessages {
            messagesDropped &+= UInt64(messages.count)
            exchange.forget(peer: peers[i].rvi.id)
            peers[i].digestDue = peers[i].isNeighbour
            return
        }
        peers[i].outbox += messages
    }

    static func monotonicNow() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    // MARK: RVIDelegate

    /// Starts the periodic digests.
    public func layerDidStart(_ layer: RCLAN) {
        nextDigestAt = Self.monotonicNow() + intervalNanos
    }

    /// Queues the entries that changed since the last turn for the neighbours that lack them,
    /// queues due digests (periodic, or after this node's own entry changed; only to a peer whose
    /// queue is empty), and sends what is queued, oldest first; a send refused for back-pressure
    /// stays queued for a later turn.
    public func layerTurn(_ layer: RCLAN) {
        // Push: entries that changed since the last turn go to every neighbour that lacks them.
        if exchange.hasChanges {
            let pushes = exchange.pushMessages(to: peers.filter(\.isNeighbour).map(\.rvi.id))
            for (id, messages) in pushes {
                guard let i = peerIndex[RVI(id: id)] else { continue }
                enqueue(messages, to: i)
                updatesSent &+= UInt64(messages.count)
            }
        }
        let now = Self.monotonicNow()
        if now >= nextDigestAt {
            for i in peers.indices where peers[i].isNeighbour {
                peers[i].digestDue = true
                // Everything sent to this peer has been acknowledged, so delivered: what it is
                // known to have is only an optimisation now; start from its next digest.
                if peers[i].queued == 0 && layer.unacknowledgedMessages(on: peers[i].rvi) == 0 {
                    exchange.forget(peer: peers[i].rvi.id)
                }
            }
            nextDigestAt = now + intervalNanos
        }
        var digest: [[UInt8]]? = nil
        for i in peers.indices {
            if peers[i].digestDue && peers[i].queued == 0 {
                if digest == nil { digest = exchange.digestMessages() }
                peers[i].outbox += digest!
                peers[i].digestDue = false
                digestsSent &+= UInt64(digest!.count)
            }
            flush(i, layer)
        }
    }

    func flush(_ i: Int, _ layer: RCLAN) {
        let rvi = peers[i].rvi
        while peers[i].head < peers[i].outbox.count {
            let m = peers[i].outbox[peers[i].head]
            do throws(RVISendError) {
                try layer.send(m, on: rvi)
            } catch {
                switch error {
                case .windowFull, .noBuffers:
                    sendRetries &+= 1
                    return
                case .stopping:
                    return
                case .noSuchRVI:
                    // Closed: what was queued for it is gone; a reopened RVI starts afresh.
                    messagesDropped &+= UInt64(peers[i].queued)
                    peers[i].outbox.removeAll()
                    peers[i].head = 0
                    exchange.forget(peer: rvi.id)
                    return
                case .tooLarge:
                    messagesDropped &+= 1  // cannot happen: messages are split below the limit
                }
            }
            messagesSent &+= 1
            bytesSent &+= UInt64(m.count)
            peers[i].head += 1
        }
        peers[i].outbox.removeAll(keepingCapacity: true)
        peers[i].head = 0
    }

    /// Handles a digest or entries message: queues the answer to the same RVI; entries taken are
    /// pushed to the other neighbours on the next turn. A malformed message is counted and
    /// dropped.
    public func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        let bytes = message.withUnsafeBytes { Array($0) }
        receive(bytes, from: rvi)
    }

    /// What ``received(_:on:layer:)`` does with a message's bytes (public so that a message can
    /// be fed without a fabric, e.g. to test a malformed one): the answer is queued for `rvi`.
    public func receive(_ bytes: [UInt8], from rvi: RVI) {
        messagesReceived &+= 1
        bytesReceived &+= UInt64(bytes.count)
        let answer = exchange.handle(bytes, from: rvi.id)
        if !answer.isEmpty { enqueue(answer, to: peer(rvi)) }
    }

    /// Counts the failed messages and sends `rvi` a digest on the next turn (it covers them).
    public func sendFailed(on rvi: RVI, messages: Range<UInt64>, reason: RVIFailure, layer: RCLAN) {
        messagesFailed &+= UInt64(messages.count)
        exchange.forget(peer: rvi.id)
        if let i = peerIndex[rvi], peers[i].isNeighbour { peers[i].digestDue = true }
    }

    /// A peer that restarted, or an RVI usable again, gets a digest on the next turn.
    public func event(_ event: RVIEvent, on rvi: RVI, layer: RCLAN) {
        switch event {
        case .peerRestarted, .reset:
            exchange.forget(peer: rvi.id)
            if let i = peerIndex[rvi], peers[i].isNeighbour { peers[i].digestDue = true }
        case .usable:
            if let i = peerIndex[rvi], peers[i].isNeighbour { peers[i].digestDue = true }
        default:
            break
        }
    }

    /// Drops what is queued: the engine is stopping.
    public func layerWillStop(_ layer: RCLAN) {
        for i in peers.indices {
            peers[i].outbox.removeAll()
            peers[i].head = 0
            peers[i].digestDue = false
        }
    }
}
