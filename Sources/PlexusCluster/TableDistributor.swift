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

// MARK: - Over the fabric

/// Counters of a ``TableDistributor``, readable from another thread as a value.
public struct DistributionStatistics: Sendable, Hashable {
    public var node: NodeNumber = 0
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
        /// While the tables agree (every digest received is this node's own, byte for byte, and
        /// nothing changes), the interval doubles after each round of digests, up to this. Any
        /// change, any other message, a failed send or a new neighbour brings it back to
        /// ``interval``: anti-entropy costs little on a quiet platform of many nodes, and changes
        /// are pushed at once anyway.
        public var quietInterval: Duration = .seconds(1)
        /// The largest message sent (``TableMessage/minimumLimit`` … 16896 bytes).
        public var maxMessageBytes: Int = TableMessage.maxBytes
        /// Messages queued per peer before further answers are dropped (the next digest covers
        /// them).
        public var maxQueuedMessages: Int = 4096

        public init(interval: Duration = .milliseconds(20), quietInterval: Duration = .seconds(1),
                    maxMessageBytes: Int = TableMessage.maxBytes, maxQueuedMessages: Int = 4096) {
            self.interval = interval
            self.quietInterval = max(quietInterval, interval)
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
    /// Called on the engine thread with each entry taken from a peer (new, or newer than the
    /// one held): how a node's services follow a peer's addresses as they change.
    public var onEntryTaken: ((NodeEntry) -> Void)?
    /// RVIs that follow the entry of the node at their other end (``follow(_:node:localVI:remoteVI:pathMTU:)``).
    var followed: [NodeNumber: [FollowedRVI]] = [:]
    /// The protocol state: the table, this node's entry, and the exchange's counters.
    public private(set) var exchange: TableExchange
    var peers: [Peer] = []
    var peerIndex: [RVI: Int] = [:]
    let intervalNanos: UInt64
    let quietIntervalNanos: UInt64
    /// The interval of the next round of digests (``Configuration/quietInterval``).
    var currentIntervalNanos: UInt64
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
    var redirected: UInt64 = 0
    var cachedDigest: [[UInt8]] = []
    var digestAtChange: UInt64 = .max
    /// Digests received that were byte for byte this node's own (tables in sync): answered with
    /// nothing, and not decoded.
    public private(set) var digestsMatched: UInt64 = 0

    /// A distributor for node `node`, which knows nothing until ``setLocalEntry(_:)`` and its
    /// neighbours tell it (seed 003, claim 35: each computer updates the table with the adapter
    /// information about itself).
    public init(node: NodeNumber, configuration: Configuration = Configuration()) {
        self.configuration = configuration
        exchange = TableExchange(node: node, maxMessageBytes: configuration.maxMessageBytes)
        let c = configuration.interval.components
        intervalNanos = max(100_000, UInt64(max(0, c.seconds)) * 1_000_000_000 + UInt64(max(0, c.attoseconds) / 1_000_000_000))
        let q = configuration.quietInterval.components
        quietIntervalNanos = max(intervalNanos, UInt64(max(0, q.seconds)) * 1_000_000_000 + UInt64(max(0, q.attoseconds) / 1_000_000_000))
        currentIntervalNanos = intervalNanos
    }

    /// A distributor that starts with its own entry.
    /// - Throws: as ``setLocalEntry(_:)``.
    public convenience init(localEntry: NodeEntry, configuration: Configuration = Configuration()) throws(AddressTableDecodeError) {
        self.init(node: localEntry.node, configuration: configuration)
        try setLocalEntry(localEntry)
    }

    /// This node's number.
    public var node: NodeNumber { exchange.node }
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
        stirred()
    }

    /// Something happened (a change, a message that was not a matching digest, a failed send,
    /// a new neighbour): the digests go at ``Configuration/interval`` again.
    func stirred() {
        guard currentIntervalNanos != intervalNanos else { return }
        currentIntervalNanos = intervalNanos
        let soon = Self.monotonicNow() + intervalNanos
        if nextDigestAt > soon { nextDigestAt = soon }
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
            stirred()
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
            nextDigestAt = now + currentIntervalNanos
            currentIntervalNanos = min(currentIntervalNanos * 2, quietIntervalNanos)
        }
        for i in peers.indices {
            if peers[i].digestDue && peers[i].queued == 0 {
                let digest = currentDigest()
                peers[i].outbox += digest
                peers[i].digestDue = false
                digestsSent &+= UInt64(digest.count)
            }
            flush(i, layer)
        }
    }

    /// The digest of the table as it is, made again only when the table changed: in the steady
    /// state (every table the same) the exchange allocates nothing, on either side.
    func currentDigest() -> [[UInt8]] {
        if digestAtChange != exchange.changes || cachedDigest.isEmpty {
            cachedDigest = exchange.digestMessages()
            digestAtChange = exchange.changes
        }
        return cachedDigest
    }

    /// Whether `message` is one of this node's own digest messages, byte for byte: a neighbour
    /// whose table is this one's sends exactly that, and it needs no answer.
    func isOwnDigest(_ message: RawSpan) -> Bool {
        let digest = currentDigest()
        return message.withUnsafeBytes { m in
            digest.contains { d in
                d.count == m.count && d.withUnsafeBytes { memcmp($0.baseAddress!, m.baseAddress!, m.count) == 0 }
            }
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
                case .tooLarge, .offsetOverflow:
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
        if message.byteCount > 0 && isOwnDigest(message) {
            // The same table on both sides (in this digest's range): nothing to send back.
            messagesReceived &+= 1
            bytesReceived &+= UInt64(message.byteCount)
            digestsMatched &+= 1
            return
        }
        let bytes = message.withUnsafeBytes { Array($0) }
        receive(bytes, from: rvi)
        if !followed.isEmpty { for n in exchange.lastTaken { refollow(n, layer: layer) } }
    }

    /// What ``received(_:on:layer:)`` does with a message's bytes (public so that a message can
    /// be fed without a fabric, e.g. to test a malformed one): the answer is queued for `rvi`.
    public func receive(_ bytes: [UInt8], from rvi: RVI) {
        stirred()
        messagesReceived &+= 1
        bytesReceived &+= UInt64(bytes.count)
        let answer = exchange.handle(bytes, from: rvi.id)
        if !answer.isEmpty { enqueue(answer, to: peer(rvi)) }
        if let onEntryTaken {
            for n in exchange.lastTaken { if let e = table.entries[n] { onEntryTaken(e) } }
        }
    }

    /// Counts the failed messages and sends `rvi` a digest on the next turn (it covers them).
    public func sendFailed(on rvi: RVI, messages: Range<UInt64>, reason: RVIFailure, layer: RCLAN) {
        messagesFailed &+= UInt64(messages.count)
        stirred()
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
