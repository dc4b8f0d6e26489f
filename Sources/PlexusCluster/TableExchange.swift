import PlexusCore
import PlexusRCLAN
#if canImport(Glibc)
import Glibc
#endif

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
    public let node: NodeNumber
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
    private var stamps: [NodeNumber: EntryStamp] = [:]
    /// Per peer: the stamps of entries it has (it sent them) or will have (they were sent to it).
    private var known: [UInt32: [NodeNumber: EntryStamp]] = [:]
    /// The nodes whose entries the last ``handle(_:from:)`` took from the peer.
    public private(set) var lastTaken: [NodeNumber] = []
    /// Nodes whose entry changed since the last ``pushMessages(to:)``.
    private var changed: Set<NodeNumber> = []

    /// - Parameters:
    ///   - node: this node's number; the only entry this side changes on its own is this node's.
    ///   - maxMessageBytes: the largest message to send (clamped to
    ///     ``TableMessage/minimumLimit`` … ``TableMessage/maxBytes``).
    public init(node: NodeNumber, maxMessageBytes: Int = TableMessage.maxBytes) {
        self.node = node
        self.maxMessageBytes = min(TableMessage.maxBytes, max(TableMessage.minimumLimit, maxMessageBytes))
    }

    /// The stamp of the entry held for `node`, if any.
    public func stamp(of node: NodeNumber) -> EntryStamp? { stamps[node] }

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
        TableMessage.digestMessages(stamps: stamps, range: NodeNumber.wireRange, reply: false, limit: maxMessageBytes)
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
        lastTaken.removeAll(keepingCapacity: true)
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
    private func wants(_ node: NodeNumber, _ theirs: EntryStamp) -> Bool {
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
                lastTaken.append(n)
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
