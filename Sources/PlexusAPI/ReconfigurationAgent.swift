import Foundation
import PlexusNamespaces
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import PlexusCore
import PlexusLAN
import PlexusPlatform

// The agent hook ("Management logic" of seed 004: the platform's structures "may be accessed by
// an administrator ... or with an agent administrator. An agent for example may be used to
// reconfigure a PAN in response to certain events, such as time of day or year, or in response
// to certain loads on the system").
//
// The agent is a client of the management API like any administrator: it holds the bearer
// token and sends the same requests (`GET /v1/pans/{pan}`, `POST /v1/pans/{pan}/processors`,
// `POST /v1/personalities/{name}/nics`, `PUT /v1/personalities/{name}/workload`,
// `DELETE /v1/personalities/{name}`). It never opens the store. Its rules (one per PAN) come
// from a JSON file; `docs/operations.md` ("Reconfiguring by program: the agent hook") describes
// the format, and `AgentRules.parse` is its reference.

// MARK: - The agent

/// Something the agent did, or tried and could not do, in one step.
public struct AgentAction: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, Codable {
        /// A processor added to the PAN, with the template applied.
        case added
        /// A personality the agent made removed (its processor back in the free pool).
        case removed
        /// A processor added, but the template could not be applied: the personality was
        /// removed again.
        case rolledBack = "rolled-back"
        /// As `rolledBack`, but removing it failed too: it is retried at every step until it is gone.
        case rollbackPending = "rollback-pending"
        /// The API refused a request (409 the free pool is empty, 404 no such PAN...), or did
        /// not answer. Nothing was changed; the next step tries again.
        case refused
        /// The load could not be read; the schedule and the last load adjustment still apply.
        case loadUnavailable = "load-unavailable"
        /// The PAN has more processors than wanted, but the rest were not made by the agent, so
        /// it leaves them.
        case held
    }
    public var kind: Kind
    public var pan: String
    public var personality: String?
    public var node: NodeNumber?
    /// The refusal, for `refused`, `rolledBack` and `rollbackPending`.
    public var refusal: APIRefusal?
    public var message: String

    public init(_ kind: Kind, pan: String, personality: String? = nil, node: NodeNumber? = nil, refusal: APIRefusal? = nil,
                _ message: String) {
        self.kind = kind
        self.pan = pan
        self.personality = personality
        self.node = node
        self.refusal = refusal
        self.message = message
    }

    public var description: String { "\(pan): \(kind.rawValue)\(personality.map { " \($0)" } ?? ""): \(message)" }
}

/// What the agent decided for a PAN in a step, and why.
public struct AgentDecision: Sendable, Hashable, Codable, CustomStringConvertible {
    public var pan: String
    /// The local time the step ran at (`HH:MM`).
    public var time: String
    /// The schedule window in force (`08:00-18:00`), if any.
    public var window: String?
    /// The schedule's count (the window's, else `min`).
    public var baseline: Int
    /// The load read in this step, if there is a load rule and it could be read.
    public var load: Double?
    /// The load's adjustment: processors over (or under) the baseline.
    public var adjustment: Int
    /// The count aimed for: baseline + adjustment, within min...max.
    public var desired: Int
    /// The PAN's processors at the start of the step.
    public var current: Int

    public var description: String {
        var s = "\(pan) at \(time): schedule \(baseline) (\(window.map { "window \($0)" } ?? "no window: min"))"
        if let load { s += ", load \(String(format: "%.2f", load))" }
        if adjustment != 0 { s += ", adjusted \(adjustment > 0 ? "+" : "")\(adjustment)" }
        return s + ": want \(desired), have \(current)"
    }
}

/// The reconfiguration agent: each step reads every PAN of its rules through the management API,
/// decides how many processors it should have, and adds or removes processors to get there.
///
/// **The count.** Every personality of the PAN counts. The schedule's *baseline* is the
/// processors of the first window containing the local time, or `min` outside every window. The
/// load rule keeps an *adjustment*: a step whose load is above `high` raises it by `step`, one
/// whose load is below `low` lowers it by `step`, one in between (or whose load cannot be read)
/// leaves it. The adjustment is then clamped so that baseline + adjustment stays within
/// min...max, and the count wanted is baseline + adjustment. When a step cannot reach the count
/// (the free pool ran dry, or the surplus is not the agent's to remove) a positive (negative)
/// adjustment comes back to the count reached, never past zero: the load does not wind up, and
/// its next change acts at once. The adjustment is kept across windows and lives in memory: a
/// restarted agent starts again from the schedule.
///
/// **Adding** (`POST /v1/pans/{pan}/processors` with the name `<pan>-agent-<n>`, n one more than
/// any it has seen), then a NIC on each template VLAN and the template's workload. If any of
/// these is refused, the personality is removed again (nothing is left half-applied) and the
/// step stops adding to that PAN. **Removing** takes only personalities named
/// `<pan>-agent-<n>`, the highest n (the newest) first. A refusal (the free pool is empty, the
/// PAN does not exist, the API is down) is reported as an action and retried at the next step.
public actor ReconfigurationAgent {
    public let rules: AgentRules
    let client: ManagementClient
    let timeZone: TimeZone
    let readLoad: @Sendable (LoadSource) async throws -> Double

    /// The load adjustment per PAN.
    var adjustments: [String: Int] = [:]
    /// The highest `n` of `<pan>-agent-<n>` used, per PAN (names only grow within a run).
    var highestIndex: [String: Int] = [:]
    /// Personalities whose rollback failed, per PAN: removed at the next step.
    var pendingRemovals: [String: [String]] = [:]
    /// What the last step decided, per PAN, in the rules' order.
    public private(set) var lastDecisions: [AgentDecision] = []

    /// - Parameters:
    ///   - timeZone: the zone whose local time the schedule windows are in.
    ///   - readLoad: reads a load source (the default reads the file or runs the command).
    public init(rules: AgentRules, client: ManagementClient, timeZone: TimeZone = .current,
                readLoad: @escaping @Sendable (LoadSource) async throws -> Double = ReconfigurationAgent.readLoad) {
        self.rules = rules
        self.client = client
        self.timeZone = timeZone
        self.readLoad = readLoad
    }

    /// Reads the source off the concurrency pool (a command may take a while).
    public static func readLoad(_ source: LoadSource) async throws -> Double {
        try await withCheckedThrowingContinuation { c in
            DispatchQueue.global().async { c.resume(with: Result { try source.read() }) }
        }
    }

    /// One reconciliation step at `now`: every PAN of the rules in turn. Returns what it did
    /// (``lastDecisions`` says what it aimed for).
    public func reconcile(now: Date) async -> [AgentAction] {
        var actions: [AgentAction] = []
        var decisions: [AgentDecision] = []
        for rule in rules.pans {
            if let d = await reconcile(rule, now: now, actions: &actions) { decisions.append(d) }
        }
        lastDecisions = decisions
        return actions
    }

    /// Runs a step every `interval` until the task is cancelled, handing each step's actions and
    /// decisions to `report`.
    public func run(every interval: Duration, clock: @Sendable () -> Date = { Date() },
                    report: @Sendable ([AgentAction], [AgentDecision]) -> Void) async {
        while !Task.isCancelled {
            let actions = await reconcile(now: clock())
            report(actions, lastDecisions)
            try? await Task.sleep(for: interval)
        }
    }

    func reconcile(_ rule: PANRule, now: Date, actions: inout [AgentAction]) async -> AgentDecision? {
        var members: [String]
        do throws(APIRefusal) {
            members = try await client.pan(rule.pan).personalities
        } catch {
            actions.append(AgentAction(.refused, pan: rule.pan, refusal: error, "cannot read the PAN (\(error)); trying again next step"))
            return nil
        }

        // Rollbacks that failed before.
        for name in pendingRemovals[rule.pan] ?? [] {
            do throws(APIRefusal) {
                try await remove(name)
                actions.append(AgentAction(.removed, pan: rule.pan, personality: name, "removed (its template had failed)"))
                pendingRemovals[rule.pan]?.removeAll { $0 == name }
                members.removeAll { $0 == name }
            } catch where error.status == 404 {
                pendingRemovals[rule.pan]?.removeAll { $0 == name }
                members.removeAll { $0 == name }
            } catch {
                actions.append(AgentAction(.rollbackPending, pan: rule.pan, personality: name, refusal: error,
                                           "still cannot remove it (\(error)); trying again next step"))
            }
        }

        // The count wanted.
        let time = TimeOfDay(now, in: timeZone)
        let (baseline, window) = rule.baseline(at: time)
        var adjustment = adjustments[rule.pan] ?? 0
        var load: Double?
        if let l = rule.load {
            do {
                let v = try await readLoad(l.source)
                load = v
                if v > l.high { adjustment += l.step } else if v < l.low { adjustment -= l.step }
            } catch {
                actions.append(AgentAction(.loadUnavailable, pan: rule.pan,
                                           "cannot read the load from \(l.source): \(error); the schedule still applies"))
            }
        }
        adjustment = Swift.min(Swift.max(adjustment, rule.min - baseline), rule.max - baseline)
        let desired = Swift.min(Swift.max(baseline + adjustment, rule.min), rule.max)
        let decision = AgentDecision(pan: rule.pan, time: time.description, window: window?.description, baseline: baseline,
                                     load: load, adjustment: adjustment, desired: desired, current: members.count)

        var count = members.count
        let owned = members.compactMap { name in rule.agentIndex(name).map { (n: $0, name: name) } }.sorted { $0.n < $1.n }
        highestIndex[rule.pan] = Swift.max(owned.last?.n ?? 0, highestIndex[rule.pan] ?? 0)
        if count < desired {
            var next = highestIndex[rule.pan] ?? 0
            while count < desired {
                next += 1
                guard await add(rule, name: rule.agentPrefix + String(next), actions: &actions) else { break }
                count += 1
            }
        } else if count > desired {
            let surplus = count - desired
            for victim in owned.reversed().prefix(surplus) {
                do throws(APIRefusal) {
                    try await remove(victim.name)
                    actions.append(AgentAction(.removed, pan: rule.pan, personality: victim.name, "want \(desired), had \(members.count)"))
                    count -= 1
                } catch {
                    actions.append(AgentAction(.refused, pan: rule.pan, personality: victim.name, refusal: error,
                                               "cannot remove it (\(error)); trying again next step"))
                }
            }
            if owned.count < surplus {
                actions.append(AgentAction(.held, pan: rule.pan,
                                           "want \(desired), but \(members.count - owned.count) of its \(members.count) processors "
                                           + "were not made by the agent and are left alone"))
            }
        }
        // The load's adjustment does not run ahead of what the step could do (the pool ran dry,
        // the rest are not the agent's): it comes back to the count reached, so that the load
        // falling (or rising) again acts at the next step instead of first unwinding.
        if count < desired && adjustment > 0 { adjustment = Swift.max(0, count - baseline) }
        if count > desired && adjustment < 0 { adjustment = Swift.min(0, count - baseline) }
        adjustments[rule.pan] = adjustment
        return decision
    }

    /// Adds one processor named `name` with the template; true if it was added whole.
    func add(_ rule: PANRule, name: String, actions: inout [AgentAction]) async -> Bool {
        var bound: [String] = []
        let added: Personality
        do throws(APIRefusal) {
            added = try await client.addProcessor(to: rule.pan, name: name)
            highestIndex[rule.pan] = Swift.max(highestIndex[rule.pan] ?? 0, rule.agentIndex(name) ?? 0)
        } catch {
            if error.field == "name" {
                // The name is taken (by a personality of another PAN): the next step takes the next one.
                highestIndex[rule.pan] = Swift.max(highestIndex[rule.pan] ?? 0, rule.agentIndex(name) ?? 0)
            }
            actions.append(AgentAction(.refused, pan: rule.pan, personality: name, refusal: error,
                                       "cannot add a processor (\(error)); trying again next step"))
            return false
        }
        var step = ""
        do throws(APIRefusal) {
            for vlan in rule.template.vlans {
                step = "attaching a NIC on VLAN \(vlan)"
                _ = try await client.attachNIC(name, vlan: vlan)
            }
            for (vlan, range) in rule.template.addresses.sorted(by: { $0.key < $1.key }) {
                step = "binding an address of \(range) on VLAN \(vlan)"
                let everyone = try await client.personalities()
                let taken = Set(everyone.flatMap { $0.ips.filter { $0.vlan == vlan }.map { String($0.address.prefix { $0 != "/" }) } })
                guard let address = range.firstFree(excluding: taken) else {
                    throw APIRefusal(status: 409, kind: "conflict", field: "addresses",
                                     message: "every address of \(range) on VLAN \(vlan) is taken")
                }
                _ = try await client.bindIP(name, vlan: vlan, address: address)
                bound.append("\(address) on VLAN \(vlan)")
            }
            if let command = rule.template.workload {
                step = "setting the workload"
                _ = try await client.setWorkload(name, command: command)
            }
        } catch {
            let failure = error
            do throws(APIRefusal) {
                try await remove(name)
                actions.append(AgentAction(.rolledBack, pan: rule.pan, personality: name, node: added.node, refusal: failure,
                                           "\(step) was refused (\(failure)); the personality was removed again"))
            } catch {
                pendingRemovals[rule.pan, default: []].append(name)
                actions.append(AgentAction(.rollbackPending, pan: rule.pan, personality: name, node: added.node, refusal: failure,
                                           "\(step) was refused (\(failure)), and removing the personality failed too (\(error)); "
                                           + "trying again next step"))
            }
            return false
        }
        let vlans = rule.template.vlans.map(String.init).joined(separator: ", ")
        let nics = switch rule.template.vlans.count {
        case 0: "no NICs"
        case 1: "a NIC on VLAN \(vlans)"
        default: "NICs on VLANs \(vlans)"
        }
        actions.append(AgentAction(.added, pan: rule.pan, personality: name, node: added.node,
                                   "node \(added.node.map(String.init) ?? "-"), \(nics)"
                                   + (bound.isEmpty ? "" : ", " + bound.joined(separator: ", "))
                                   + (rule.template.workload.map { ", workload `\($0)`" } ?? "")))
        return true
    }

    func remove(_ name: String) async throws(APIRefusal) {
        _ = try await client.removePersonality(name)
    }
}
