import Foundation
import PlexusCore
import PlexusRCLAN

// Processor failover ("Cluster Management Logic" of the specification; claims 1-6 of seed 001:
// a spare inherits the failed processor's whole personality).
//
// Both control nodes run the same logic on the same plan and reach the same decision: a node
// is failed when its management RVI has been unusable (both legs silent) for the confirmation
// time; the spare is the first node of the plan's free pool that waits in standby and answers.
// The server then moves the personality in its table (the MACs now belong to the spare, the
// VLAN memberships and ARP bindings stay), sends the spare its new configuration, tells every
// peer that shares a VLAN to reach those MACs at the spare (their direct RVI to the failed
// node is torn down), and fences the failed node: its frames are refused by the table, its
// peers no longer have an RVI that accepts them, and if it registers again it is refused until
// an administrator returns it to the pool. Everything a second control node sends again is
// idempotent at the nodes.

/// How a control node detects failed processing nodes and moves their personalities.
public struct FailoverSettings: Sendable, Hashable {
    /// How long a node's management RVI must stay unusable before the node is declared failed.
    /// The RVI is unusable once both legs are silent for 4 × `missedHeartbeats` probe intervals
    /// of the RCLAN layer: `watchedProbeInterval` while the node pair is idle (100 ms by
    /// default), `heartbeatInterval` while it carries traffic (20 ms). Detection of an idle node
    /// takes about 100 ms + this (130 ms with the defaults).
    public var confirmation: Duration = .milliseconds(30)
    /// When more than this fraction of the nodes holding a personality fall silent together,
    /// this control node is the one cut off (or stalled): it fails nothing over, and logs why.
    public var isolationFraction: Double = 0.5
    /// A node this control node has never heard since it opened the node's management RVI (a
    /// node process still starting, or a control node that just restarted) is declared failed
    /// only after this much more silence: starting is not failing. The same holds for every
    /// node while the platform starts: until each node holding a personality has registered and
    /// this long has passed, or the embedder says the platform is up
    /// (``VirtualLANServer/platformIsUp()``; until then such an embedder's control nodes fail
    /// nothing over for silence, and a node that does not come up fails the start). A platform
    /// of many nodes starting on few CPUs starves some of them for longer than the detection
    /// time, and that is not a failure.
    public var startupGrace: Duration = .seconds(2)

    public init() {}

    public func validate() throws(PlexusError) {
        guard confirmation >= .zero && confirmation <= .seconds(60) else {
            throw PlexusError(.configuration, "failover confirmation must be 0...60 s")
        }
        guard isolationFraction > 0 && isolationFraction <= 1 else {
            throw PlexusError(.configuration, "failover isolationFraction must be in (0, 1]")
        }
        guard startupGrace >= .zero && startupGrace <= .seconds(600) else {
            throw PlexusError(.configuration, "failover startupGrace must be 0...600 s")
        }
    }
}

/// One failover: which node failed, which spare took its personality, what moved, and when
/// each step happened.
public struct FailoverRecord: Sendable {
    public var failed: NodeNumber
    public var spare: NodeNumber
    /// Why it happened: silence on both fabrics, or a workload process that ended.
    public var cause: FailoverCause
    /// The personality the spare took over (its NICs, MACs and VLANs, its addresses and its
    /// workload), as the spare holds it.
    public var personality: ProcessorPersonality
    /// When the failed node's management RVI became unusable, or its report that its workload
    /// process ended arrived (nanoseconds, `nowNanos()`).
    public var silentSince: UInt64
    /// Each step and when it happened (nanoseconds), in order.
    public var steps: [(step: FailoverStep, at: UInt64)]
    /// Whether a plan adopted since (``VirtualLANServer/adopt(_:layer:)``) knows of this
    /// failover: until one does, a plan that gives the failed node its personality back is
    /// deferred.
    public var acknowledged = false

    public init(failed: NodeNumber, spare: NodeNumber, cause: FailoverCause = .silent, personality: ProcessorPersonality,
                silentSince: UInt64, steps: [(step: FailoverStep, at: UInt64)]) {
        self.failed = failed
        self.spare = spare
        self.cause = cause
        self.personality = personality
        self.silentSince = silentSince
        self.steps = steps
    }

    public func time(of step: FailoverStep) -> UInt64? { steps.first { $0.step == step }?.at }

    /// Milliseconds from the node falling silent to `step`.
    public func milliseconds(to step: FailoverStep) -> Double? {
        time(of: step).map { Double($0 &- silentSince) / 1e6 }
    }

    /// The timeline as lines a person reads: "+52.1 ms detected", …
    public var timeline: [String] {
        steps.map { String(format: "+%.1f ms ", Double($0.at &- silentSince) / 1e6) + $0.step.description }
    }
}

extension VirtualLANServer {
    /// The reply to a registration that does not get a configuration: standby for a spare,
    /// a refusal for a fenced node; nil when the plan decides.
    func poolReply(_ node: NodeNumber) -> ControlMessage? {
        guard let plan else { return nil }
        if fenced.contains(node) {
            refusedRegistrations += 1
            log.append("node \(node) refused: it is fenced (its personality moved to a spare)")
            return .refused(node: node, reason: "node \(node) is fenced: its personality moved to a spare; an administrator returns it to the pool")
        }
        if plan.waitsAsSpare(node) {
            if standby.insert(node).inserted {
                if let k = plan.server(hosting: node) {
                    log.append("node \(node) registered: a virtual node of failover server \(plan.failoverServers[k].name)")
                } else {
                    log.append("node \(node) registered: a spare in the free pool")
                }
            }
            return .standby(node: node)
        }
        return nil
    }

    public func event(_ event: RVIEvent, on rvi: RVI, layer: RCLAN) {
        guard let node = nodeOf[rvi] else { return }
        switch event {
        case .unusable:
            if silentSince[node] == nil {
                silentSince[node] = nowNanos()
                // Never heard at all since the RVI was opened: the node may still be starting.
                let heard = layer.statistics(rvi)?.legs.contains { $0.framesIn > 0 } ?? true
                if heard { neverHeard.remove(node) } else { neverHeard.insert(node) }
            }
        case .usable, .legUp:
            silentSince[node] = nil
        case .peerRestarted:
            // A spare that restarted registers again; until then it is not in standby.
            standby.remove(node)
        default:
            break
        }
    }

    public func layerTurn(_ layer: RCLAN) {
        if !processFailures.isEmpty {
            for (node, f) in processFailures.sorted(by: { $0.key < $1.key }) {
                failOver(node, since: f.since, cause: .processFailed(status: f.status), now: nowNanos(), layer: layer)
            }
        }
        guard let settings = failoverSettings, !silentSince.isEmpty, let plan else { return }
        // Only a silent node that holds a personality matters (a dead spare stays silent for
        // good): found without allocating, since this runs every turn while any node is silent.
        var anyAssigned = false
        for n in silentSince.keys where !fenced.contains(n) && plan.holdsPersonality(n) {
            anyAssigned = true
            break
        }
        guard anyAssigned else { return }
        let now = nowNanos()
        let confirm = UInt64(settings.confirmation.components.seconds) * 1_000_000_000
            + UInt64(settings.confirmation.components.attoseconds / 1_000_000_000)
        let assigned = Set(plan.personalities.keys.filter { plan.holdsPersonality($0) })
        let silent = silentSince.keys.filter { assigned.contains($0) && !fenced.contains($0) }
        guard !silent.isEmpty else { return }
        if Double(silent.count) > max(1, settings.isolationFraction * Double(assigned.count)) {
            if !isolationLogged {
                isolationLogged = true
                log.append("\(silent.count) of \(assigned.count) nodes fell silent together: this control node is cut off; no failover")
            }
            return
        }
        isolationLogged = false
        let grace = UInt64(settings.startupGrace.components.seconds) * 1_000_000_000
            + UInt64(settings.startupGrace.components.attoseconds / 1_000_000_000)
        let starting = stillStarting(plan: plan, now: now, grace: grace)
        // An embedder that says when the platform is up fails nothing over for silence before:
        // a node that does not come up fails the start instead.
        if starting && !startupEndsAfterRegistration { return }
        // Failed after the same silence whether or not the node was sent anything: its RVI is
        // unusable after 20 ms of silence while it carries traffic (what the data path needs),
        // but a node busy for that long is not dead. It must be silent for the idle detection
        // time (100 ms) and the confirmation.
        let detection = layer.idleDetectionNanos
        for node in silent.sorted() {
            guard let rvi = nodeRVI[node], let silence = layer.silenceNanos(of: rvi) else { continue }
            let extra = neverHeard.contains(node) || starting ? grace : 0
            if silence >= detection + confirm + extra && now &- silentSince[node]! >= confirm + extra {
                failOver(node, since: silentSince[node]!, cause: .silent, now: now, layer: layer)
            }
        }
    }

    /// Whether the platform is still starting (``FailoverSettings/startupGrace``): some node
    /// holding a personality has not registered yet, or the last one did less than `grace` ago,
    /// and the embedder has not said the platform is up.
    func stillStarting(plan: LANPlan, now: UInt64, grace: UInt64) -> Bool {
        guard platformStarting else { return false }
        guard startupEndsAfterRegistration else { return true }
        if allRegisteredAt == nil {
            let holders = plan.personalities.keys.filter { plan.holdsPersonality($0) }
            guard holders.allSatisfy({ registered.contains($0) }) else { return true }
            allRegisteredAt = now
        }
        if now &- allRegisteredAt! >= grace {
            platformStarting = false
            log.append("the platform is up: every node holding a personality registered \(grace / 1_000_000) ms ago")
        }
        return platformStarting
    }

    /// Says that the platform is up (every node configured, its workload started): from now on
    /// a silent node is failed after the usual confirmation, without the start-up grace.
    /// ``PlexusNode/LANPlatform`` calls it once it is up; a control node process leaves it to
    /// ``FailoverSettings/startupGrace`` after the last registration.
    public func platformIsUp() {
        platformStarting = false
    }

    /// A node reports that its workload process ended by itself (seed 002: the cluster manager
    /// watches the processes too). The node is alive, but its service is not: its personality
    /// resumes on a virtual node of the failover server (or the backup server), and the node
    /// is fenced like a failed one.
    func processFailed(_ node: NodeNumber, status: Int32, layer: RCLAN) {
        guard let plan, failoverSettings != nil, !fenced.contains(node), plan.holdsPersonality(node),
              processFailures[node] == nil else { return }
        let now = nowNanos()
        log.append("node \(node): \(FailoverCause.processFailed(status: status))")
        processFailures[node] = (now, status)
        failOver(node, since: now, cause: .processFailed(status: status), now: now, layer: layer)
    }

    /// Moves failed node `node`'s personality to a spare (see the top of this file), chosen
    /// by ``LANPlan/candidates(for:cause:)``.
    func failOver(_ node: NodeNumber, since: UInt64, cause: FailoverCause, now: UInt64, layer: RCLAN) {
        guard var plan, !fenced.contains(node) else { return }
        guard plan.holdsPersonality(node) else {
            // Its personality went elsewhere meanwhile (migrated or removed by the administrator).
            processFailures[node] = nil
            stranded.remove(node)
            return
        }
        let answering = { (n: NodeNumber) in n != node && self.standby.contains(n) && self.silentSince[n] == nil && self.nodeRVI[n] != nil }
        guard let spare = plan.candidates(for: node, cause: cause).first(where: answering) else {
            if stranded.insert(node).inserted {
                log.append("node \(node) failed (\(cause), \(String(format: "%.1f", Double(now &- since) / 1e6)) ms ago) and no spare or virtual node answers: its personality waits")
            }
            return
        }
        stranded.remove(node)
        processFailures[node] = nil
        var record = FailoverRecord(failed: node, spare: spare, cause: cause, personality: ProcessorPersonality(),
                                    silentSince: since, steps: [(.detected, now)])
        record.steps.append((.spareChosen, nowNanos()))
        record.personality = plan.move(node, to: spare)
        let moved = record.personality.nics
        self.plan = plan
        for nic in moved { table.move(nic.mac, to: spare) }
        fenced.insert(node)
        standby.remove(spare)
        silentSince[node] = nil
        if let rvi = nodeRVI[node] { _ = try? layer.send(ControlMessage.fenced(node: node).encoded(), on: rvi) }
        onPersonalityMoved?(node, spare, layer)
        if let rvi = nodeRVI[spare], case .success(let c) = plan.configuration(for: spare) {
            _ = try? layer.send(ControlMessage.configuration(c).encoded(), on: rvi)
            announceListeners(to: spare, vlans: Set(c.personality.nics.map(\.vlan)), on: rvi, layer: layer)
        }
        record.steps.append((.personalityMoved, nowNanos()))
        // Every other node sharing a VLAN with the moved NICs reaches them at the spare now.
        let vlans = Set(moved.map(\.vlan))
        if let spareAddress = plan.nodes.first(where: { $0.node == spare }) {
            let peers = Set(plan.nics.filter { vlans.contains($0.vlan) && $0.node != spare }.map(\.node))
            for p in peers.sorted() {
                guard let rvi = nodeRVI[p] else { continue }
                let theirVLANs = Set(plan.nics.filter { $0.node == p }.map(\.vlan))
                let macs = moved.filter { theirVLANs.contains($0.vlan) }.map(\.mac)
                let entry = NodeConfiguration.Peer(address: spareAddress, localVI: VINumbering.direct(toward: spare),
                                                   remoteVI: VINumbering.direct(toward: p), macs: macs)
                _ = try? layer.send(ControlMessage.moved(spare: spare, failed: node, peer: entry).encoded(), on: rvi)
            }
        }
        record.steps.append((.peersUpdated, nowNanos()))
        failovers.append(record)
        let target = plan.server(hosting: spare).map { "virtual node \(spare) of failover server \(plan.failoverServers[$0].name)" }
            ?? "spare node \(spare)"
        log.append("node \(node) failed (\(cause)): its personality (" + moved.map { "\($0.mac) on \($0.vlan)" }.joined(separator: ", ")
                   + ") moved to \(target); node \(node) is fenced")
        console?.note(node: node, "control node \(controlIndex): node \(node) failed (\(cause)); its personality moved to \(target); node \(node) is fenced")
        console?.note(node: spare, "control node \(controlIndex): node \(spare) takes over node \(node)'s personality: " + record.timeline.joined(separator: ", "))
    }

    /// A spare's report of a step of its take-over.
    func milestone(_ step: FailoverStep, from node: NodeNumber) {
        guard let i = failovers.lastIndex(where: { $0.spare == node }), failovers[i].time(of: step) == nil else { return }
        failovers[i].steps.append((step, nowNanos()))
        log.append("node \(node): \(step) (failover of node \(failovers[i].failed))")
        if step == .firstPacketServed {
            console?.note(node: node, "control node \(controlIndex): failover of node \(failovers[i].failed) complete: "
                          + failovers[i].timeline.joined(separator: ", "))
        }
    }

    /// An administrator returns a fenced node to the free pool (it registers again as a spare).
    public func returnToPool(_ node: NodeNumber) {
        guard fenced.remove(node) != nil else { return }
        if let plan, !plan.spares.contains(node), plan.server(hosting: node) == nil { self.plan?.spares.append(node) }
        log.append("node \(node) returned to the free pool")
    }
}

extension VirtualEthernet {
    /// Reports a failover step to the servers (the embedding program calls this with
    /// ``FailoverStep/workloadStarted`` once the workload runs); sent on the next turn.
    public func report(_ step: FailoverStep) {
        guard tookOver else { return }
        pendingReports.append(step)
        reportedSteps.append(step)
        // From now on the first IPv4 frame the spare sends is the workload serving (or its
        // kernel answering for it).
        if step == .workloadStarted { watchFirstFrame = true }
    }

    func sendReports(_ layer: RCLAN) {
        for step in pendingReports {
            let m = ControlMessage.milestone(node: node, step: step).encoded()
            for s in servers { _ = try? layer.send(m, on: s) }
        }
        pendingReports.removeAll(keepingCapacity: true)
    }

    /// A server says a failed peer's MACs are now reached at `spare`: the direct RVI to the
    /// failed node is torn down (fencing: nothing it sends is accepted any more) and the MACs
    /// map to an RVI to the spare. This node's software and ARP cache are not involved: the
    /// MACs are the same.
    func moved(to spare: NodeNumber, from failed: NodeNumber, peer: NodeConfiguration.Peer, layer: RCLAN) {
        guard configuration != nil, spare != node else { return }
        if let old = peerRVI.removeValue(forKey: failed) {
            for (mac, rvi) in direct where rvi == old { direct[mac] = nil }
            unusable.remove(old)
            layer.close(old)
        }
        let before = peer.macs.map { direct[$0] }
        do {
            try openPeer(peer, layer: layer)
        } catch {
            events.append("could not open a direct RVI to node \(spare): \(error)")
            return
        }
        let fresh = zip(peer.macs, before).contains { direct[$0] != $1 }
        if fresh { events.append("node \(failed)'s MACs \(peer.macs.map(\.description).joined(separator: ", ")) now reached at node \(spare)") }
    }

    /// A server says this node's personality moved away: its NICs and direct RVIs go, and it
    /// sends nothing into its old VLANs.
    func fence(layer: RCLAN) {
        guard registration != .fenced else { return }
        registration = .fenced
        // The TAP devices close, so the kernel drops the interfaces and their addresses (the
        // node may be alive: its workload process failed, or it was cut off and came back).
        dropPersonality(layer: layer)
        onFenced?()
        events.append("fenced: this node's personality moved to a spare; it stays out until an administrator returns it")
    }
}
