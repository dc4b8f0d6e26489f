import Foundation
import GRDB
import PlexusCore
import PlexusStorage
import PlexusNode
import PlexusNamespaces
import PlexusLAN

// The platform store driving a running platform: the store is the administrator's truth (PANs,
// personalities, the free pool), the LAN plan is derived from it, a change to it is carried into
// the running control nodes (``PlatformFollower``), and a failover the control nodes carry out is
// written back to it (the personality moves, the failed processor is fenced, the timeline is kept
// in the event log).

extension PlatformStore {
    /// The store's change counter: the id of its latest event. Every command writes its event in
    /// its own transaction, so the counter grows with every change.
    public func revision() throws -> UInt64 {
        try db.read { db in UInt64(try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM events") ?? 0) }
    }

    /// The definition of the virtual LANs the store describes, for `controlNodes`: every
    /// processor (assigned ones with their personalities' NICs, addresses and workloads; free
    /// ones as spares), and the MACs the store handed out (the plan keeps them).
    public func lanDefinition(controlNodes: [NodeNumber]) throws -> (definition: PlatformDefinition, macs: [VirtualNICBinding]) {
        try definition(over: PlatformDefinition(controlNodes: controlNodes, processingNodes: [], vlans: [:]))
    }

    /// `base` (the control nodes, fabric addresses, failover servers, MTU of a definition file)
    /// with the store's processors and personalities in place of its own: the processing nodes
    /// are `base`'s and the store's processors; the VLANs, addresses, workloads and spares (free
    /// processors that are not a failover server's virtual nodes) are the store's; the
    /// definition's ``PlatformDefinition/revision`` is the store's ``revision()``, read so that
    /// nothing changed in between.
    public func definition(over base: PlatformDefinition) throws -> (definition: PlatformDefinition, macs: [VirtualNICBinding]) {
        while true {
            let before = try revision()
            let processors = try processors()
            let personalities = try personalities()
            let macs = try nicBindings()
            let after = try revision()
            guard before == after else { continue }
            var vlans: [VLANID: [NodeNumber]] = [:]
            var addresses: [NodeNumber: [AddressBinding]] = [:]
            var workloads: [NodeNumber: String] = [:]
            var promiscuous: [VLANID: Set<NodeNumber>] = [:]
            var storage: [NodeNumber: [StorageMapping]] = [:]
            for p in personalities {
                guard let node = p.node, let held = p.processorPersonality else { continue }
                if !p.storage.isEmpty { storage[node] = p.storage }
                for nic in held.nics {
                    vlans[nic.vlan, default: []].append(node)
                    if nic.promiscuousAllowed { promiscuous[nic.vlan, default: []].insert(node) }
                }
                if !held.addresses.isEmpty { addresses[node] = held.addresses }
                if let w = held.workload { workloads[node] = w }
            }
            let virtual = Set(base.failoverServers.flatMap(\.virtualNodes))
            var d = base
            let stored = processors.map(\.node).filter { !base.controlNodes.contains($0) }
            d.processingNodes = Array(Set(base.processingNodes).union(stored)).sorted()
            d.vlans = vlans
            d.promiscuousAllowed = promiscuous
            d.spares = processors.filter { $0.state == .free && !virtual.contains($0.node) }.map(\.node)
            d.addresses = addresses
            d.workloads = workloads
            d.storage = storage
            d.revision = after
            return (d, macs)
        }
    }

    /// Writes the move of failover `f` into the store, once: the failed node's personality (the
    /// one holding the MACs that moved) goes to the spare and the failed node is fenced. A spare
    /// the store does not know (a virtual node of failover server `spareHost`) is added to its
    /// processors first. Returns the migration, or nil when the store already shows the move
    /// (the other control node wrote it).
    public func recordFailoverMove(_ f: FailoverRecord, spareHost: String? = nil) throws -> Migration? {
        try db.write { db in
            let holder = try String.fetchOne(db, sql: "SELECT name FROM personalities WHERE node = ?", arguments: [f.failed])
            guard let name = holder else { return nil }
            if let mac = f.personality.nics.first?.mac {
                let macs = try String.fetchAll(db, sql: "SELECT mac FROM nics WHERE personality = ?", arguments: [name])
                guard macs.contains(mac.description) else { return nil }
            }
            if try Self.processor(db, f.spare) == nil {
                try db.execute(sql: "INSERT INTO processors(node, state) VALUES (?, 'free')", arguments: [f.spare])
                try Self.log(db, "processor-added", "node \(f.spare)",
                             spareHost.map { "a virtual node of failover server \($0), carrying a failover" } ?? "carrying a failover")
            }
            return try Self.migrate(db, name, to: f.spare, fence: true, reason: "failed: \(f.cause) (detected by the control nodes)")
        }
    }

    /// Writes failover `f`'s timeline into the event log: each step as a `failover-step` event,
    /// then a `failover` event that sums it up.
    public func recordFailoverTimeline(_ f: FailoverRecord, personality name: String) throws {
        try db.write { db in
            for line in f.timeline {
                try Self.log(db, "failover-step", "personality \(name)", "node \(f.failed) → node \(f.spare): \(line)")
            }
            let total = f.milliseconds(to: f.steps.last?.step ?? .detected) ?? 0
            try Self.log(db, "failover", "personality \(name)",
                         String(format: "node %d → spare node %d in %.1f ms after it failed (%@): ", f.failed.rawValue, f.spare.rawValue, total, f.cause.description)
                             + f.timeline.joined(separator: ", "))
        }
    }

    /// Writes a failover the control nodes carried out into the store: the move
    /// (``recordFailoverMove(_:spareHost:)``) and the timeline.
    @discardableResult
    public func recordFailover(_ f: FailoverRecord) throws -> Migration {
        guard let m = try recordFailoverMove(f) else {
            throw PlatformError(.notFound, field: "node", "node \(f.failed) holds no personality with the MACs that moved")
        }
        try recordFailoverTimeline(f, personality: m.personality.name)
        return m
    }
}

/// A running platform that follows the store: its control nodes take a new definition while
/// they run, and say which failovers they carried out.
public protocol FollowingPlatform: AnyObject {
    /// Offers every running control node `definition` (a later revision), with the MACs the
    /// store handed out; what each did with it.
    func adopt(_ definition: PlatformDefinition, macs: [VirtualNICBinding]) throws -> [PlanAdoption]
    /// The failovers the running control nodes carried out, with their timelines so far.
    func failoverRecords() -> [FailoverRecord]
    /// The failover servers (to name the host of a virtual node that took a personality over).
    var failoverServers: [FailoverServer] { get }
}

/// Keeps a running platform and the platform store in step ("Management logic"): call
/// ``poll()`` every few tens of milliseconds (the `plexus control` process and the demo do).
/// Each round
/// 1. writes every failover the control nodes carried out into the store, once (the move at
///    once; the timeline when the spare served its first packet, or after ``timelineWait``);
/// 2. when the store changed (``PlatformStore/revision()``), derives the new definition and
///    offers it to the control nodes (``VirtualLANServer/adopt(_:layer:)``). A control node
///    that defers it (a failover of its own is not in the store yet) is offered the next
///    revision again.
///
/// Two control node processes sharing a store each run one: the store takes each failover's
/// move once (the second finds it done), and the one that wrote the move writes the timeline.
public final class PlatformFollower {
    public let store: PlatformStore
    /// What the store does not hold: control nodes, fabric templates, failover servers.
    public let base: PlatformDefinition
    let platform: any FollowingPlatform
    /// The store revision the control nodes run.
    public private(set) var revision: UInt64
    /// What the follower did, a line each.
    public private(set) var log: [String] = []
    /// How long a failover's timeline waits for its last step before it is written as it is.
    public var timelineWait: Duration = .seconds(5)
    struct Key: Hashable {
        var failed: NodeNumber
        var spare: NodeNumber
        var since: UInt64
    }
    struct Written {
        var personality: String?
        var timelineDone: Bool
        var since: ContinuousClock.Instant
    }
    var written: [Key: Written] = [:]
    /// Failovers whose move could not be written yet, and the last reason (said once).
    var failing: [Key: String] = [:]
    var deferredAt: UInt64 = 0
    var lastError: String?

    /// A follower for `platform`, which runs store revision `revision`.
    public init(store: PlatformStore, base: PlatformDefinition, platform: any FollowingPlatform, revision: UInt64) {
        self.store = store
        self.base = base
        self.platform = platform
        self.revision = revision
    }

    /// One round (see the type's description). Returns the lines it added to ``log``.
    @discardableResult
    public func poll() -> [String] {
        let before = log.count
        recordFailovers()
        follow()
        return Array(log[before...])
    }

    func recordFailovers() {
        for f in platform.failoverRecords() {
            let key = Key(failed: f.failed, spare: f.spare, since: f.silentSince)
            var w: Written
            if let have = written[key] {
                w = have
            } else {
                let host = platform.failoverServers.first { $0.virtualNodes.contains(f.spare) }?.name
                do {
                    if let m = try store.recordFailoverMove(f, spareHost: host) {
                        log.append("failover of node \(f.failed) to node \(f.spare) written to the store: personality \(m.personality.name) moved, node \(f.failed) fenced")
                        w = Written(personality: m.personality.name, timelineDone: false, since: .now)
                    } else {
                        w = Written(personality: nil, timelineDone: true, since: .now)
                    }
                } catch let e as PlatformError {
                    // The store refuses the move (the spare was given to something else meanwhile):
                    // final, said once.
                    log.append("cannot write the failover of node \(f.failed) to node \(f.spare) into the store: \(e)")
                    w = Written(personality: nil, timelineDone: true, since: .now)
                } catch {
                    // The database is busy or failing: tried again next round, said once.
                    let line = "cannot write the failover of node \(f.failed) to node \(f.spare) into the store yet: \(error)"
                    if failing[key] != line { log.append(line) }
                    failing[key] = line
                    continue
                }
                failing[key] = nil
            }
            if let name = w.personality, !w.timelineDone,
               f.time(of: .firstPacketServed) != nil || w.since.duration(to: .now) > timelineWait {
                do {
                    try store.recordFailoverTimeline(f, personality: name)
                    log.append("failover of node \(f.failed) to node \(f.spare): timeline written (" + f.timeline.joined(separator: ", ") + ")")
                } catch {
                    log.append("cannot write the timeline of the failover of node \(f.failed): \(error)")
                }
                w.timelineDone = true
            }
            written[key] = w
        }
    }

    func follow() {
        do {
            // A revision a control node deferred is not offered again: it defers it until the
            // failover it waits for is written, which makes a newer revision.
            let latest = try store.revision()
            guard latest > revision && latest != deferredAt else { return }
            let (d, macs) = try store.definition(over: base)
            let results = try platform.adopt(d, macs: macs)
            if let why = results.lazy.compactMap({ r -> String? in if case .deferred(let w) = r { w } else { nil } }).first {
                if deferredAt != d.revision {
                    deferredAt = d.revision
                    log.append("store revision \(d.revision) deferred: \(why)")
                }
                return
            }
            revision = d.revision
            log.append("store revision \(d.revision): " + results.map(\.description).joined(separator: "; "))
        } catch {
            let line = "cannot follow the store: \(error)"
            if line != lastError { log.append(line) }
            lastError = line
            return
        }
        lastError = nil
    }
}
extension LANPlatform: FollowingPlatform {}
