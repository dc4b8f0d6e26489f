import ArgumentParser
import Foundation
import PlexusAPI
import Synchronization

// `plexus agent`: the agent hook ("Management logic" of seed 004), a client of the management
// API that adds and removes a PAN's processors by time of day and by load.

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Add and remove a PAN's processors by time of day and by load, through the management API.",
        discussion: """
            The agent is a client of the management API like any administrator (--api, \
            --token-file): it never opens the store. Every --interval seconds (one step with \
            --once) it reads each PAN of its rules, decides how many processors the PAN should \
            have, and adds processors from the free pool (named <pan>-agent-<n>, given a NIC on \
            each template VLAN, an address from each template range, and the template's workload) or removes its own, newest first. It \
            never removes a personality it did not make. A refused request (the free pool is \
            empty, no such PAN, the API down) is printed and tried again at the next step; a \
            processor whose template is refused is removed again.

            The rules file (JSON), one rule per PAN:

              {"pans": [{
                "pan": "shop", "min": 1, "max": 6,
                "schedule": [{"from": "08:00", "to": "18:00", "processors": 3},
                             {"from": "22:00", "to": "02:00", "processors": 2}],
                "load": {"file": "/proc/loadavg", "high": 4.0, "low": 1.0, "step": 1},
                "template": {"vlans": [10], "addresses": {"10": "10.10.0.100-10.10.0.199/24"},
                             "workload": "python3 -m http.server 8080"}
              }]}

              pan        the PAN (it must exist)
              min, max   bounds on its processor count (all its personalities count)
              schedule   optional; windows of local time, from (included) to
                         (excluded), crossing midnight when to is earlier, 24:00
                         the end of the day; the first window that holds the
                         time sets the baseline, else min
              load       optional; "file" or "command" (run by /bin/sh): the
                         first number in the file or the command's output is
                         the load; above high +step, below low -step (step 1
                         by default)
              template   optional; a NIC (a new MAC) on each of "vlans"; per
                         VLAN in "addresses", the first address of the range
                         first-last/len that no personality holds there; and
                         "workload", the command the processor runs

            The count wanted is the baseline plus the load's adjustment. The \
            adjustment goes up or down by step at each step whose load is above high or \
            below low, stays otherwise, is clamped so that baseline + adjustment is within \
            min...max, does not run ahead of the count a step could reach (an empty pool, \
            processors that are not the agent's), and is kept across windows (in memory: a \
            restarted agent starts again from the schedule). Surplus processors are removed \
            only if the agent made them.

            A bad rules file is refused before anything is sent, naming the field \
            (pans[0].schedule[1].from: '8am' is not a time of day). --json prints each step \
            as one JSON line (its decisions and actions). With --once, the exit status is 1 \
            if anything was refused. docs/operations.md has the details.
            """)

    @Option(help: "The rules file (JSON; see above).") var rules: String
    @Option(help: "Seconds between steps.") var interval: Double = 30
    @Flag(help: "Run one step, print what it did, and exit.") var once = false
    @OptionGroup var client: ClientOptions

    func validate() throws {
        guard interval > 0, interval.isFinite else { throw ValidationError("--interval must be a positive number of seconds") }
    }

    func run() async throws {
        let parsed: AgentRules
        do {
            parsed = try AgentRules.load(file: rules)
        } catch {
            throw CLIError("rules file \(rules): \(error)")
        }
        let (base, token) = try client.endpoint()
        let agent = ReconfigurationAgent(rules: parsed, client: ManagementClient(base: base, token: token))
        let printer = StepPrinter(json: client.json)
        if once {
            let actions = await agent.reconcile(now: Date())
            printer.print(actions, await agent.lastDecisions, always: true)
            let failed = actions.filter { [.refused, .rolledBack, .rollbackPending, .loadUnavailable].contains($0.kind) }
            if !failed.isEmpty { throw ExitCode(1) }
            return
        }
        if !client.json {
            print("plexus agent: \(parsed.pans.count) PAN rule(s) from \(rules), a step every \(interval) s, API \(base)")
            fflush(nil)
        }
        await agent.run(every: .milliseconds(Int64(interval * 1000))) { actions, decisions in
            printer.print(actions, decisions, always: false)
        }
    }
}

/// Prints a step: each PAN's decision and each action, readable or as one JSON line.
final class StepPrinter: Sendable {
    let json: Bool
    let first = Mutex(true)
    init(json: Bool) { self.json = json }

    func print(_ actions: [AgentAction], _ decisions: [AgentDecision], always: Bool) {
        let isFirst = first.withLock { f in defer { f = false }; return f }
        // A quiet step (nothing done) prints nothing, except the first and with --once.
        guard always || isFirst || !actions.isEmpty else { return }
        let stamp = ISO8601DateFormatter().string(from: Date())
        if json {
            struct Step: Encodable { var time: String; var decisions: [AgentDecision]; var actions: [AgentAction] }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            if let data = try? encoder.encode(Step(time: stamp, decisions: decisions, actions: actions)) {
                Swift.print(String(decoding: data, as: UTF8.self))
            }
        } else {
            Swift.print("[\(stamp)]")
            for d in decisions { Swift.print("  \(d)") }
            for a in actions { Swift.print("  \(a)") }
            if actions.isEmpty { Swift.print("  nothing to do") }
        }
        fflush(nil)
    }
}
