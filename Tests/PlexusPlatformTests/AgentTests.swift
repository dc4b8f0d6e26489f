import Foundation
import Hummingbird
import HummingbirdTesting
import PlexusAPI
import PlexusTestSupport
import Synchronization
import Testing

@testable import PlexusPlatform

@Suite("Reconfiguration agent", .serialized)
struct AgentTests {
    /// A PAN `shop` with VLAN 10 and `nodes` in the free pool.
    func setUp(_ api: LiveAPI, nodes: [Int]) async throws {
        try await api.must("POST", "/v1/processors", #"{"nodes": \#(nodes)}"#)
        try await api.must("POST", "/v1/pans", #"{"name": "shop"}"#)
        try await api.must("POST", "/v1/pans/shop/vlans", #"{"vlan": 10}"#)
    }

    func members(_ api: LiveAPI, _ pan: String = "shop") throws -> [String] { try api.store.pan(pan).personalities }

    func kinds(_ actions: [AgentAction]) -> [String] {
        actions.map { "\($0.kind.rawValue)\($0.personality.map { " \($0)" } ?? "")" }
    }

    @Test("a rules file is read whole: bounds, windows, load, template")
    func rulesParse() throws {
        let rules = try AgentRules.parse(Data("""
            {"pans": [{"pan": "shop", "min": 1, "max": 6,
                       "schedule": [{"from": "08:00", "to": "18:00", "processors": 3},
                                    {"from": "22:00", "to": "2:00", "processors": 2}],
                       "load": {"file": "/proc/loadavg", "high": 4, "low": 1.5},
                       "template": {"vlans": [10, 11], "workload": "python3 -m http.server 8080"}},
                      {"pan": "batch", "min": 0, "max": 2, "load": {"command": "cat /tmp/x", "high": 0.8, "low": 0.2, "step": 2}}]}
            """.utf8))
        let shop = rules.pans[0]
        #expect(shop.pan == "shop" && shop.min == 1 && shop.max == 6)
        #expect(shop.schedule == [ScheduleWindow(from: TimeOfDay(hour: 8, minute: 0), to: TimeOfDay(hour: 18, minute: 0), processors: 3),
                                  ScheduleWindow(from: TimeOfDay(hour: 22, minute: 0), to: TimeOfDay(hour: 2, minute: 0), processors: 2)])
        #expect(shop.load == LoadRule(source: .file("/proc/loadavg"), high: 4, low: 1.5, step: 1))
        #expect(shop.template == ProcessorTemplate(vlans: [10, 11], workload: "python3 -m http.server 8080"))
        #expect(rules.pans[1].load == LoadRule(source: .command("cat /tmp/x"), high: 0.8, low: 0.2, step: 2))
        #expect(rules.pans[1].schedule.isEmpty && rules.pans[1].template == ProcessorTemplate())
    }

    @Test("a bad rules file is refused, naming the field")
    func badRules() throws {
        let good = #""pan": "shop", "min": 1, "max": 4"#
        let cases: [(String, String)] = [
            ("not json", "rules"),
            ("[]", "rules"),
            ("{}", "pans"),
            (#"{"pans": []}"#, "pans"),
            (#"{"pans": [], "extra": 1}"#, "extra"),
            (#"{"pans": [5]}"#, "pans[0]"),
            (#"{"pans": [{"min": 1, "max": 2}]}"#, "pans[0].pan"),
            (#"{"pans": [{"pan": "Shop!", "min": 1, "max": 2}]}"#, "pans[0].pan"),
            (#"{"pans": [{"pan": "shop", "max": 2}]}"#, "pans[0].min"),
            (#"{"pans": [{"pan": "shop", "min": -1, "max": 2}]}"#, "pans[0].min"),
            (#"{"pans": [{"pan": "shop", "min": 3, "max": 2}]}"#, "pans[0].max"),
            (#"{"pans": [{"pan": "shop", "min": 1, "max": 2.5}]}"#, "pans[0].max"),
            (#"{"pans": [{\#(good), "colour": "red"}]}"#, "pans[0].colour"),
            (#"{"pans": [{\#(good)}, {\#(good)}]}"#, "pans[1].pan"),
            (#"{"pans": [{\#(good), "schedule": [{"from": "8am", "to": "18:00", "processors": 2}]}]}"#, "pans[0].schedule[0].from"),
            (#"{"pans": [{\#(good), "schedule": [{"from": "08:00", "to": "18:00", "processors": 2},"#
                + #"{"from": "08:00", "to": "24:01", "processors": 2}]}]}"#, "pans[0].schedule[1].to"),
            (#"{"pans": [{\#(good), "schedule": [{"from": "08:00", "to": "08:00", "processors": 2}]}]}"#, "pans[0].schedule[0].to"),
            (#"{"pans": [{\#(good), "schedule": [{"from": "08:00", "to": "18:00", "processors": 9}]}]}"#, "pans[0].schedule[0].processors"),
            (#"{"pans": [{\#(good), "schedule": [{"from": "08:00", "to": "18:00"}]}]}"#, "pans[0].schedule[0].processors"),
            (#"{"pans": [{\#(good), "load": {"high": 2, "low": 1}}]}"#, "pans[0].load.file"),
            (#"{"pans": [{\#(good), "load": {"file": "/a", "command": "b", "high": 2, "low": 1}}]}"#, "pans[0].load.command"),
            (#"{"pans": [{\#(good), "load": {"file": "/a", "high": 1, "low": 2}}]}"#, "pans[0].load.low"),
            (#"{"pans": [{\#(good), "load": {"file": "/a", "high": "x", "low": 1}}]}"#, "pans[0].load.high"),
            (#"{"pans": [{\#(good), "load": {"file": "/a", "high": 2, "low": 1, "step": 0}}]}"#, "pans[0].load.step"),
            (#"{"pans": [{\#(good), "template": {"vlans": [10, 5000]}}]}"#, "pans[0].template.vlans[1]"),
            (#"{"pans": [{\#(good), "template": {"vlans": [10, 10]}}]}"#, "pans[0].template.vlans[1]"),
            (#"{"pans": [{\#(good), "template": {"workload": " "}}]}"#, "pans[0].template.workload"),
            (#"{"pans": [{\#(good), "template": {"nics": [10]}}]}"#, "pans[0].template.nics"),
        ]
        for (text, field) in cases {
            do {
                _ = try AgentRules.parse(Data(text.utf8))
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.field == field, "\(text): \(error)")
            }
        }
    }

    @Test("plexus agent refuses a bad rules file naming the field, before it calls the API")
    func badRulesCLI() throws {
        let exe = try #require(plexusExecutable, "the plexus executable was not built next to the tests (run swift build first)")
        let t = try TempDatabase()
        let file = t.directory.appendingPathComponent("rules.json").path
        try #"{"pans": [{"pan": "shop", "min": 1, "max": 4, "schedule": [{"from": "8am", "to": "18:00", "processors": 2}]}]}"#
            .write(toFile: file, atomically: true, encoding: .utf8)
        let r = NamespaceFabric.execute([exe, "agent", "--rules", file, "--once", "--api", "http://127.0.0.1:1", "--token-file", "/nonexistent"])
        #expect(r.status != 0)
        #expect(r.output.contains("rules file \(file): pans[0].schedule[0].from: '8am' is not a time of day"), "\(r.output)")
        let help = NamespaceFabric.execute([exe, "agent", "--help"])
        #expect(help.status == 0 && help.output.contains("\"schedule\"") && help.output.contains("--rules"), "\(help.output)")
    }

    @Test("time of day: windows include from, exclude to, cross midnight, in the agent's time zone")
    func windows() throws {
        let day = ScheduleWindow(from: TimeOfDay("08:00")!, to: TimeOfDay("18:00")!, processors: 3)
        let night = ScheduleWindow(from: TimeOfDay("22:00")!, to: TimeOfDay("02:00")!, processors: 2)
        let late = ScheduleWindow(from: TimeOfDay("20:00")!, to: TimeOfDay("24:00")!, processors: 1)
        #expect(!day.contains(TimeOfDay("07:59")!) && day.contains(TimeOfDay("08:00")!) && day.contains(TimeOfDay("17:59")!))
        #expect(!day.contains(TimeOfDay("18:00")!))
        #expect(night.contains(TimeOfDay("22:00")!) && night.contains(TimeOfDay("23:59")!) && night.contains(TimeOfDay("00:00")!))
        #expect(night.contains(TimeOfDay("01:59")!) && !night.contains(TimeOfDay("02:00")!) && !night.contains(TimeOfDay("21:59")!))
        #expect(late.contains(TimeOfDay("23:59")!) && !late.contains(TimeOfDay("00:00")!))
        #expect(TimeOfDay("7:05") == TimeOfDay(hour: 7, minute: 5))
        for bad in ["24:01", "25:00", "12:60", "12", "12:5", "ab:cd", "-1:00", "１２:００"] { #expect(TimeOfDay(bad) == nil, "\(bad)") }
        // 23:30 UTC is 08:30 in Tokyo.
        #expect(TimeOfDay(at(23, 30), in: TimeZone(identifier: "Asia/Tokyo")!) == TimeOfDay("08:30"))
        #expect(TimeOfDay(at(23, 30), in: utc) == TimeOfDay("23:30"))
        let rule = PANRule(pan: "shop", min: 1, max: 5, schedule: [day, night])
        #expect(rule.baseline(at: TimeOfDay("12:00")!).processors == 3)
        #expect(rule.baseline(at: TimeOfDay("01:00")!).processors == 2)
        #expect(rule.baseline(at: TimeOfDay("19:00")!).processors == 1 && rule.baseline(at: TimeOfDay("19:00")!).window == nil)
    }

    @Test("schedule windows set the processor count: inside, outside, across midnight; the template is applied")
    func schedule() async throws {
        try await LiveAPI.with { api in
            try await setUp(api, nodes: [1, 2, 3, 4, 5, 6])
            let rules = try AgentRules.parse(Data("""
                {"pans": [{"pan": "shop", "min": 1, "max": 5,
                           "schedule": [{"from": "08:00", "to": "18:00", "processors": 3},
                                        {"from": "22:00", "to": "02:00", "processors": 2}],
                           "template": {"vlans": [10], "workload": "sleep 1000"}}]}
                """.utf8))
            let agent = ReconfigurationAgent(rules: rules, client: api.client, timeZone: utc)

            #expect(kinds(await agent.reconcile(now: at(7, 0))) == ["added shop-agent-1"])
            let first = try api.store.personality("shop-agent-1")
            #expect(first.nics.map(\.vlan) == [10] && first.workload == "sleep 1000" && first.node == 1, "\(first)")

            #expect(kinds(await agent.reconcile(now: at(8, 0))) == ["added shop-agent-2", "added shop-agent-3"])
            #expect(try members(api) == ["shop-agent-1", "shop-agent-2", "shop-agent-3"])
            #expect(await agent.lastDecisions.first?.window == "08:00-18:00")
            #expect(await agent.reconcile(now: at(17, 59)).isEmpty)

            // Leaving the window: the newest go first.
            #expect(kinds(await agent.reconcile(now: at(18, 0))) == ["removed shop-agent-3", "removed shop-agent-2"])
            #expect(try members(api) == ["shop-agent-1"])
            #expect(try api.store.processors().filter { $0.state == .free }.map(\.node) == [2, 3, 4, 5, 6])

            // The night window crosses midnight.
            #expect(await agent.reconcile(now: at(21, 59)).isEmpty)
            #expect(kinds(await agent.reconcile(now: at(23, 30))) == ["added shop-agent-4"])
            #expect(await agent.reconcile(now: at(0, 30, day: 11)).isEmpty)
            #expect(await agent.reconcile(now: at(1, 59, day: 11)).isEmpty)
            #expect(try members(api).count == 2)
            #expect(kinds(await agent.reconcile(now: at(2, 0, day: 11))) == ["removed shop-agent-4"])
            #expect(try members(api) == ["shop-agent-1"])
            // Four NICs were made (one per processor added), and the MAC counter says 4.
            #expect(try api.store.macsHandedOut() == 4)
        }
    }

    @Test("load: above high adds, below low removes, one step at a time, within min...max; the schedule is the baseline")
    func load() async throws {
        try await LiveAPI.with { api in
            try await setUp(api, nodes: [1, 2, 3, 4, 5, 6])
            let rules = AgentRules(pans: [PANRule(
                pan: "shop", min: 1, max: 4,
                schedule: [ScheduleWindow(from: TimeOfDay("08:00")!, to: TimeOfDay("18:00")!, processors: 2)],
                load: LoadRule(source: .file("/unused"), high: 2.0, low: 0.5),
                template: ProcessorTemplate(vlans: [10]))])
            let load = FakeLoad()
            let agent = ReconfigurationAgent(rules: rules, client: api.client, timeZone: utc, readLoad: load.reader)
            func step(_ l: Double, _ h: Int = 6) async -> [String] {
                load.set(l)
                return kinds(await agent.reconcile(now: at(h, 0)))
            }
            #expect(await step(1.0) == ["added shop-agent-1"])          // min, load in band
            #expect(await step(3.0) == ["added shop-agent-2"])          // above high: +1
            #expect(await step(3.0) == ["added shop-agent-3"])
            #expect(await step(3.0) == ["added shop-agent-4"])
            #expect(await step(9.0) == [])                              // max
            #expect(await agent.lastDecisions.first?.desired == 4)
            #expect(await step(1.0) == [])                              // in band: stays
            #expect(await step(0.1) == ["removed shop-agent-4"])        // below low: -1
            #expect(await step(0.1) == ["removed shop-agent-3"])
            #expect(await step(0.1) == ["removed shop-agent-2"])
            #expect(await step(0.1) == [])                              // min
            #expect(await agent.lastDecisions.first?.adjustment == 0, "the adjustment does not wind up below min")
            #expect(await step(3.0) == ["added shop-agent-5"])          // so one high step adds at once
            #expect(await step(1.0) == [])
            // The schedule moves the baseline; the adjustment (+1) stays on top of it.
            #expect(await step(1.0, 9) == ["added shop-agent-6"])       // 2 + 1 = 3
            let d = try #require(await agent.lastDecisions.first)
            #expect(d.baseline == 2 && d.adjustment == 1 && d.desired == 3 && d.current == 2 && d.load == 1.0, "\(d)")
            #expect(await step(0.1, 9) == ["removed shop-agent-6"])     // 2 + 0
            #expect(await step(0.1, 9) == ["removed shop-agent-5"])     // 2 - 1 = 1 = min, below the schedule
            #expect(await step(0.1, 9) == [])
            // A load that cannot be read is reported; the count holds.
            load.fail("no such file")
            let actions = await agent.reconcile(now: at(9, 0))
            #expect(kinds(actions) == ["load-unavailable"] && actions[0].message.contains("no such file"), "\(actions)")
            #expect(try members(api) == ["shop-agent-1"])
        }
    }

    @Test("the load's adjustment does not wind up while the pool is empty or the surplus is not the agent's")
    func noWindUp() async throws {
        try await LiveAPI.with { api in
            try await setUp(api, nodes: [1, 2])
            let load = FakeLoad()
            let rules = AgentRules(pans: [PANRule(pan: "shop", min: 1, max: 5, load: LoadRule(source: .file("/unused"), high: 2, low: 0.5),
                                                  template: ProcessorTemplate(vlans: [10]))])
            let agent = ReconfigurationAgent(rules: rules, client: api.client, timeZone: utc, readLoad: load.reader)
            func step(_ l: Double) async -> [String] {
                load.set(l)
                return kinds(await agent.reconcile(now: at(12, 0)))
            }
            #expect(await step(1.0) == ["added shop-agent-1"])
            #expect(await step(3.0) == ["added shop-agent-2"])
            for _ in 0..<4 {
                #expect(await step(3.0) == ["refused shop-agent-3"])     // the pool is empty: retried, aiming one above
                #expect(await agent.lastDecisions.first?.desired == 3)
            }
            #expect(await step(1.0) == [])                               // in band: keeps the 2 it has
            #expect(await agent.lastDecisions.first?.desired == 2)
            #expect(await step(0.1) == ["removed shop-agent-2"])         // the first low step acts

            // Personalities that are not the agent's: a low load does not pile up under them.
            try await api.must("POST", "/v1/processors", #"{"nodes": [3, 4, 5, 6, 7]}"#)
            for name in ["a", "b", "c"] { try await api.must("POST", "/v1/pans/shop/processors", #"{"name": "\#(name)"}"#) }
            let held = ReconfigurationAgent(rules: AgentRules(pans: [PANRule(
                pan: "shop", min: 0, max: 6,
                schedule: [ScheduleWindow(from: TimeOfDay("00:00")!, to: TimeOfDay("24:00")!, processors: 4)],
                load: LoadRule(source: .file("/unused"), high: 2, low: 0.5))]),
                client: api.client, timeZone: utc, readLoad: load.reader)
            load.set(0.1)
            #expect(kinds(await held.reconcile(now: at(12, 0))) == ["removed shop-agent-1"])   // 4 - 1
            for _ in 0..<3 {
                #expect(kinds(await held.reconcile(now: at(12, 0))) == ["held"])               // 4 - 2: a, b and c stay
                #expect(await held.lastDecisions.first?.desired == 2)
            }
            #expect(try members(api) == ["a", "b", "c"])
            load.set(3.0)
            #expect(kinds(await held.reconcile(now: at(12, 0))) == ["added shop-agent-2"], "the first high step adds at once")
            #expect(await held.lastDecisions.first?.desired == 4)
        }
    }

    @Test("the day of docs/operations.md, step by step")
    func docsDay() async throws {
        try await LiveAPI.with { api in
            try await setUp(api, nodes: [1, 2, 3, 4])
            let rules = try AgentRules.parse(Data("""
                {"pans": [{
                  "pan": "shop", "min": 1, "max": 6,
                  "schedule": [{"from": "08:00", "to": "18:00", "processors": 3},
                               {"from": "22:00", "to": "02:00", "processors": 2}],
                  "load": {"file": "/proc/loadavg", "high": 4.0, "low": 1.0, "step": 1},
                  "template": {"vlans": [10], "workload": "python3 -m http.server 8080"}
                }]}
                """.utf8))
            let load = FakeLoad()
            let agent = ReconfigurationAgent(rules: rules, client: api.client, timeZone: utc, readLoad: load.reader)
            let day: [(h: Int, m: Int, load: Double, baseline: Int, adjustment: Int, wanted: Int, did: [String])] = [
                (7, 0, 0.8, 1, 0, 1, ["added shop-agent-1"]),
                (8, 0, 2.0, 3, 0, 3, ["added shop-agent-2", "added shop-agent-3"]),
                (12, 0, 5.3, 3, 1, 4, ["added shop-agent-4"]),
                (12, 1, 5.1, 3, 2, 5, ["refused shop-agent-5"]),
                (14, 0, 0.6, 3, 0, 3, ["removed shop-agent-4"]),
                (18, 0, 0.6, 1, 0, 1, ["removed shop-agent-3", "removed shop-agent-2"]),
                (23, 30, 0.3, 2, -1, 1, []),
            ]
            for row in day {
                load.set(row.load)
                let did = kinds(await agent.reconcile(now: at(row.h, row.m)))
                let d = try #require(await agent.lastDecisions.first)
                #expect(did == row.did && d.baseline == row.baseline && d.adjustment == row.adjustment && d.desired == row.wanted,
                        "\(row.h):\(row.m): \(did), \(d)")
            }
        }
    }

    @Test("the load sources: the first number of a file or of a command's output")
    func loadSources() throws {
        let t = try TempDatabase()
        let file = t.directory.appendingPathComponent("loadavg").path
        try "3.25 1.00 0.50 2/345 6789\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try LoadSource.file(file).read() == 3.25)
        #expect(try LoadSource.command("echo 'load=0.75 of 4'").read() == 0.75)
        #expect(try LoadSource.command("printf '12\\n'").read() == 12)
        #expect(LoadSource.firstNumber(in: "queue: -3 items") == -3 && LoadSource.firstNumber(in: "none") == nil)
        #expect(throws: LoadError.self) { try LoadSource.command("exit 3").read() }
        #expect(throws: LoadError.self) { try LoadSource.command("echo none").read() }
        #expect(throws: LoadError.self) { try LoadSource.file(file + ".missing").read() }
        if FileManager.default.fileExists(atPath: "/proc/loadavg") { #expect(try LoadSource.file("/proc/loadavg").read() >= 0) }
    }

    @Test("an empty pool is reported (409, field node) and retried at the next step, not fatal")
    func poolEmpty() async throws {
        try await LiveAPI.with { api in
            try await setUp(api, nodes: [1])
            let rules = AgentRules(pans: [PANRule(pan: "shop", min: 2, max: 3, template: ProcessorTemplate(vlans: [10]))])
            let agent = ReconfigurationAgent(rules: rules, client: api.client, timeZone: utc)
            for round in 0..<2 {
                let actions = await agent.reconcile(now: at(12, 0))
                #expect(kinds(actions) == (round == 0 ? ["added shop-agent-1", "refused shop-agent-2"] : ["refused shop-agent-2"]))
                let refusal = try #require(actions.last?.refusal)
                #expect(refusal.status == 409 && refusal.kind == "conflict" && refusal.field == "node"
                        && refusal.message.contains("free pool is empty"), "\(refusal)")
                #expect(actions.last?.description.contains("409 conflict: node: the free pool is empty") == true, "\(actions)")
            }
            #expect(try members(api) == ["shop-agent-1"])
            // A processor comes back to the pool: the next step takes it.
            try await api.must("POST", "/v1/processors", #"{"nodes": [7]}"#)
            let actions = await agent.reconcile(now: at(12, 1))
            #expect(kinds(actions) == ["added shop-agent-2"] && actions.first?.node == 7, "\(actions)")
            #expect(await agent.reconcile(now: at(12, 2)).isEmpty)
            // A PAN that does not exist, and a wrong token: refused, reported, nothing changed.
            let ghost = ReconfigurationAgent(rules: AgentRules(pans: [PANRule(pan: "ghost", min: 1, max: 1)]), client: api.client)
            let g = await ghost.reconcile(now: at(12, 0))
            #expect(g.map(\.kind) == [.refused] && g.first?.refusal?.status == 404 && g.first?.refusal?.field == "pan", "\(g)")
            let intruder = ReconfigurationAgent(rules: rules, client: ManagementClient(base: api.base, token: "wrong"))
            let i = await intruder.reconcile(now: at(12, 0))
            #expect(i.map(\.kind) == [.refused] && i.first?.refusal?.status == 401, "\(i)")
            // An API that is not there: reported, not fatal.
            let lost = ReconfigurationAgent(rules: rules, client: ManagementClient(base: "http://127.0.0.1:1", token: LiveAPI.token))
            let l = await lost.reconcile(now: at(12, 0))
            #expect(l.map(\.kind) == [.refused] && l.first?.refusal?.status == 0, "\(l)")
            #expect(try members(api) == ["shop-agent-1", "shop-agent-2"])
        }
    }

    @Test("personalities the agent did not make are never removed")
    func othersLeftAlone() async throws {
        try await LiveAPI.with { api in
            try await setUp(api, nodes: Array(1...8))
            // The administrator's, including names that look like the agent's but are not.
            for name in ["web", "shop-agent-x", "shop-agent-07", "shop-agent-"] {
                try await api.must("POST", "/v1/pans/shop/processors", #"{"name": "\#(name)"}"#)
            }
            // In another PAN, with a name of the agent's form for this one.
            try await api.must("POST", "/v1/pans", #"{"name": "other"}"#)
            try await api.must("POST", "/v1/pans/other/processors", #"{"name": "shop-agent-9"}"#)
            let rules = AgentRules(pans: [PANRule(
                pan: "shop", min: 0, max: 6,
                schedule: [ScheduleWindow(from: TimeOfDay("08:00")!, to: TimeOfDay("18:00")!, processors: 6)])])
            let agent = ReconfigurationAgent(rules: rules, client: api.client, timeZone: utc)
            #expect(kinds(await agent.reconcile(now: at(9, 0))) == ["added shop-agent-1", "added shop-agent-2"])
            // Outside the window the count wanted is 0: only the agent's two go.
            let actions = await agent.reconcile(now: at(19, 0))
            #expect(kinds(actions) == ["removed shop-agent-2", "removed shop-agent-1", "held"], "\(actions)")
            #expect(actions.last?.message.contains("4 of its 6 processors were not made by the agent") == true, "\(actions)")
            #expect(try members(api) == ["shop-agent-", "shop-agent-07", "shop-agent-x", "web"])
            #expect(try members(api, "other") == ["shop-agent-9"])
            #expect(kinds(await agent.reconcile(now: at(19, 1))) == ["held"])
            #expect(try members(api).count == 4)
        }
    }

    @Test("nothing half-applied: a processor whose template is refused is removed again")
    func rollback() async throws {
        try await LiveAPI.with { api in
            try await setUp(api, nodes: [1, 2])
            let rules = AgentRules(pans: [
                // VLAN 99 is not the PAN's: the second NIC is refused.
                PANRule(pan: "shop", min: 1, max: 1, template: ProcessorTemplate(vlans: [10, 99])),
            ])
            let agent = ReconfigurationAgent(rules: rules, client: api.client, timeZone: utc)
            let actions = await agent.reconcile(now: at(12, 0))
            #expect(kinds(actions) == ["rolled-back shop-agent-1"], "\(actions)")
            #expect(actions.first?.refusal?.field == "vlan" && actions.first?.refusal?.status == 400, "\(actions)")
            #expect(actions.first?.message.contains("attaching a NIC on VLAN 99") == true, "\(actions)")
            #expect(try members(api).isEmpty)
            #expect(try api.store.processors().allSatisfy { $0.state == .free })
            // A workload the API refuses (over 4096 bytes): the same.
            let long = AgentRules(pans: [PANRule(pan: "shop", min: 1, max: 1,
                                                 template: ProcessorTemplate(vlans: [10], workload: String(repeating: "x", count: 5000)))])
            let other = ReconfigurationAgent(rules: long, client: api.client, timeZone: utc)
            let w = await other.reconcile(now: at(12, 0))
            #expect(kinds(w) == ["rolled-back shop-agent-1"] && w.first?.refusal?.field == "command", "\(w)")
            #expect(try members(api).isEmpty && api.store.personalities().isEmpty)
            // And with a good template the next attempt goes through.
            let fixed = ReconfigurationAgent(rules: AgentRules(pans: [PANRule(pan: "shop", min: 1, max: 1,
                                                                               template: ProcessorTemplate(vlans: [10]))]),
                                             client: api.client, timeZone: utc)
            #expect(kinds(await fixed.reconcile(now: at(12, 0))) == ["added shop-agent-1"])
        }
    }

    @Test("template addresses: each new processor gets the first free address of the range (skipping one an administrator bound); an exhausted range is refused and rolled back; a bad range names its field")
    func templateAddresses() async throws {
        #expect(AddressRange("10.10.0.100-10.10.0.102/24")?.firstFree(excluding: ["10.10.0.100"]) == "10.10.0.101/24")
        #expect(AddressRange("10.10.0.9-10.10.1.2/24") == nil && AddressRange("10.10.0.9-10.10.0.2/24") == nil
                && AddressRange("10.10.0.9/24") == nil && AddressRange("10.10.0.1-10.10.0.300/24") == nil
                && AddressRange("10.10.0.0-10.10.0.9/24") == nil && AddressRange("10.10.0.200-10.10.0.255/24") == nil)
        #expect(AddressRange("10.10.0.1-10.10.0.254/24") != nil && AddressRange("10.10.0.7-10.10.0.7/32") != nil)
        for (json, field) in [(#"{"vlans": [10], "addresses": {"11": "10.10.0.1-10.10.0.2/24"}}"#, "template.addresses.11"),
                              (#"{"vlans": [10], "addresses": {"10": "10.10.0.1/24"}}"#, "template.addresses.10"),
                              (#"{"vlans": [10], "addresses": ["10.10.0.1-10.10.0.2/24"]}"#, "template.addresses")] {
            let rules = #"{"pans": [{"pan": "shop", "min": 1, "max": 2, "template": \#(json)}]}"#
            #expect(throws: AgentRulesError.self) { try AgentRules.parse(Data(rules.utf8)) }
            do { _ = try AgentRules.parse(Data(rules.utf8)) } catch { #expect(error.field == "pans[0].\(field)", "\(error)") }
        }
        try await LiveAPI.with { api in
            try await setUp(api, nodes: [1, 2, 3, 4])
            // An address of the range the administrator already gave someone.
            try await api.must("POST", "/v1/pans/shop/processors", #"{"name": "db", "node": 4}"#)
            try await api.must("POST", "/v1/personalities/db/nics", #"{"vlan": 10}"#)
            try await api.must("POST", "/v1/personalities/db/ips", #"{"vlan": 10, "address": "10.10.0.100/24"}"#)
            let template = ProcessorTemplate(vlans: [10], addresses: [10: AddressRange("10.10.0.100-10.10.0.102/24")!])
            let agent = ReconfigurationAgent(rules: AgentRules(pans: [PANRule(pan: "shop", min: 4, max: 4, template: template)]),
                                             client: api.client, timeZone: utc)
            let actions = await agent.reconcile(now: at(12, 0))
            #expect(kinds(actions) == ["added shop-agent-1", "added shop-agent-2", "rolled-back shop-agent-3"], "\(actions)")
            #expect(try api.store.personality("shop-agent-1").ips.map(\.address) == ["10.10.0.101/24"])
            #expect(try api.store.personality("shop-agent-2").ips.map(\.address) == ["10.10.0.102/24"])
            #expect(actions.first?.message.contains("10.10.0.101/24 on VLAN 10") == true, "\(actions)")
            #expect(actions.last?.refusal?.field == "addresses" && actions.last?.message.contains("every address of 10.10.0.100-10.10.0.102/24") == true,
                    "\(actions)")
            #expect(try members(api).sorted() == ["db", "shop-agent-1", "shop-agent-2"])
            #expect(try api.store.processors().first { $0.node == 3 }?.state == .free)
        }
    }

    @Test("a rollback that fails is reported and retried at the next step until the personality is gone")
    func rollbackRetried() async throws {
        let refuseDeletes = Switch()
        try await LiveAPI.with(refuseDeletes: refuseDeletes) { api in
            try await setUp(api, nodes: [1, 2])
            let rules = AgentRules(pans: [PANRule(pan: "shop", min: 1, max: 1, template: ProcessorTemplate(vlans: [10, 99]))])
            let agent = ReconfigurationAgent(rules: rules, client: api.client, timeZone: utc)
            refuseDeletes.set(true)
            let first = await agent.reconcile(now: at(12, 0))
            #expect(kinds(first) == ["rollback-pending shop-agent-1"], "\(first)")
            #expect(first.first?.refusal?.field == "vlan" && first.first?.message.contains("503") == true, "\(first)")
            #expect(try members(api) == ["shop-agent-1"], "half-applied for now, and known")
            #expect(kinds(await agent.reconcile(now: at(12, 1))) == ["rollback-pending shop-agent-1"])
            refuseDeletes.set(false)
            // Gone first; then the count is short again and the next try fails the same way, whole.
            #expect(kinds(await agent.reconcile(now: at(12, 2))) == ["removed shop-agent-1", "rolled-back shop-agent-2"])
            #expect(try members(api).isEmpty && api.store.processors().allSatisfy { $0.state == .free })
        }
    }

    @Test("plexus agent --once against a control node: adds, prints JSON, exits 1 when refused")
    func cliOnce() async throws {
        let exe = try #require(plexusExecutable, "the plexus executable was not built next to the tests (run swift build first)")
        try await LiveAPI.with { api in
            try await setUp(api, nodes: [1])
            let t = try TempDatabase()
            let tokenFile = t.directory.appendingPathComponent("api-token").path
            try (LiveAPI.token + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
            let rulesFile = t.directory.appendingPathComponent("rules.json").path
            // The whole day is one window of 1, then of 2 (the pool has one processor).
            for (count, status, expected) in [(1, Int32(0), "\"kind\":\"added\""), (2, 1, "\"kind\":\"refused\"")] {
                try #"{"pans": [{"pan": "shop", "min": 0, "max": 2, "schedule": [{"from": "00:00", "to": "24:00", "processors": \#(count)}], "template": {"vlans": [10]}}]}"#
                    .write(toFile: rulesFile, atomically: true, encoding: .utf8)
                let args = [exe, "agent", "--rules", rulesFile, "--once", "--json", "--api", api.base, "--token-file", tokenFile]
                let r = await withCheckedContinuation { c in
                    DispatchQueue.global().async { c.resume(returning: NamespaceFabric.execute(args)) }
                }
                #expect(r.status == status && r.output.contains(expected), "\(r.output)")
            }
            #expect(try members(api) == ["shop-agent-1"])
            _ = t
        }
    }
}
