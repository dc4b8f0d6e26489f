import Foundation
import PlexusCore
import PlexusLAN
import PlexusNode
import PlexusTestSupport
import Testing

/// `plexus api serve` as a process, driven by the `plexus` client commands, as an administrator
/// would: the state survives a restart of the control node, and bad requests exit non-zero with
/// the field named.
@Suite("Management CLI against a real control node", .serialized)
struct CLITests {
    /// Runs the API server on a free port over `state`; returns it and its base URL.
    func serve(_ exe: String, state: String) throws -> (WatchedProcess, String) {
        let server = try WatchedProcess([exe, "api", "serve", "--state", state, "--port", "0"])
        guard server.waitFor("serving http://", seconds: 20),
              let line = server.output.split(separator: "\n").first(where: { $0.contains("serving http://") }),
              let url = line.split(separator: " ").first(where: { $0.hasPrefix("http://") })
        else { throw CLIFailure("the API server did not start: \(server.output)") }
        return (server, String(url.dropLast(3)))  // without "/v1"
    }

    struct CLIFailure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    func plexus(_ exe: String, _ args: [String], api: String, state: String) -> (status: Int32, output: String) {
        NamespaceFabric.execute([exe] + args + ["--api", api, "--token-file", state + "/api-token"])
    }

    @Test("define a PAN from the command line, restart the control node, find everything; bad requests are refused by field")
    func endToEnd() throws {
        let exe = try #require(plexusExecutable, "the plexus executable was not built next to the tests (run swift build first)")
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-cli-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: state) }
        var (server, api) = try serve(exe, state: state)
        let token = try String(contentsOfFile: state + "/api-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.count == 64)
        #expect(!server.output.contains(token), "the token is never printed")
        let mode = try FileManager.default.attributesOfItem(atPath: state + "/api-token")[.posixPermissions] as? Int
        #expect(mode == 0o600)

        let steps: [[String]] = [
            ["pool", "add", "3", "4", "5"],
            ["pan", "create", "shop"],
            ["pan", "add-vlan", "shop", "10"],
            ["pan", "add-processor", "shop", "--name", "web"],
            ["personality", "attach-nic", "web", "10"],
            ["personality", "bind-ip", "web", "10", "10.10.0.3/24"],
            ["personality", "map-storage", "web", "0", "0", "/luns/web"],
            ["personality", "set-workload", "web", "python3 -m http.server 8080"],
        ]
        for s in steps {
            let r = plexus(exe, s, api: api, state: state)
            #expect(r.status == 0, "plexus \(s.joined(separator: " ")): \(r.output)")
        }
        // The platform's storage map, and a second mapping through `plexus storage map`.
        #expect(plexus(exe, ["storage", "map", "web", "0", "1", "/luns/catalog", "--read-only"], api: api, state: state).status == 0)
        let storage = plexus(exe, ["storage", "list"], api: api, state: state)
        #expect(storage.status == 0 && storage.output == """
            shop/web (node 3): target 0 LUN 0 → /luns/web (read-write)
            shop/web (node 3): target 0 LUN 1 → /luns/catalog (read-only)

            """, "\(storage.output)")
        #expect(plexus(exe, ["storage", "unmap", "web", "0", "1"], api: api, state: state).status == 0)
        // Readable, and JSON for programs.
        let shown = plexus(exe, ["personality", "show", "--node", "3"], api: api, state: state)
        #expect(shown.output.contains("name: web") && shown.output.contains("mac: 02:00:01:00:00:00"), "\(shown.output)")
        let js = plexus(exe, ["personality", "show", "web", "--json"], api: api, state: state)
        let object = try JSONSerialization.jsonObject(with: Data(js.output.utf8)) as? [String: Any]
        #expect(object?["workload"] as? String == "python3 -m http.server 8080")
        // Exactly as the command has always printed them: one `key: value` a line, sorted, lists
        // as `- `, booleans as 1 and 0; and the API's JSON, keys sorted.
        #expect(shown.status == 0 && shown.output == """
            generation: 0
            ips:
              - address: 10.10.0.3/24
                vlan: 10
            name: web
            nics:
              - mac: 02:00:01:00:00:00
                promiscuousAllowed: 0
                vlan: 10
            node: 3
            pan: shop
            storage:
              - access: read-write
                lun: 0
                storage: /luns/web
                target: 0
            workload: python3 -m http.server 8080

            """, "\(shown.output)")
        #expect(js.output == #"{"generation":0,"ips":[{"address":"10.10.0.3\/24","vlan":10}],"name":"web","#
                + #""nics":[{"mac":"02:00:01:00:00:00","promiscuousAllowed":false,"vlan":10}],"node":3,"pan":"shop","#
                + #""storage":[{"access":"read-write","lun":0,"storage":"\/luns\/web","target":0}],"#
                + #""workload":"python3 -m http.server 8080"}"# + "\n", "\(js.output)")
        let pool = plexus(exe, ["pool", "list"], api: api, state: state)
        #expect(pool.output == "- node: 3\n  personality: web\n  state: assigned\n- node: 4\n  state: free\n- node: 5\n  state: free\n",
                "\(pool.output)")

        // Bad requests: exit 1, the field named, nothing applied.
        for (args, expected) in [
            (["pan", "add-vlan", "shop", "5000"], "vlan: 5000 is not a VLAN number"),
            (["personality", "bind-ip", "web", "10", "10.10.0.3/24"], "address: 10.10.0.3 is bound to web"),
            (["personality", "attach-nic", "ghost", "10"], "personality: no personality ghost"),
            (["pan", "create", "Shop!"], "name: 'Shop!' is not a name"),
        ] {
            let r = plexus(exe, args, api: api, state: state)
            #expect(r.status != 0 && r.output.contains(expected), "plexus \(args.joined(separator: " ")): \(r.output)")
        }
        let badToken = NamespaceFabric.execute([exe, "pan", "list", "--api", api, "--token-file", "/dev/null"])
        #expect(badToken.status != 0 && badToken.output.contains("cannot read the API token"), "\(badToken.output)")

        // The control node restarts: everything is still there.
        server.process.kill()
        _ = server.process.wait()
        (server, api) = try serve(exe, state: state)
        let after = plexus(exe, ["personality", "show", "web", "--json"], api: api, state: state)
        let again = try JSONSerialization.jsonObject(with: Data(after.output.utf8)) as? [String: Any]
        #expect(again?["node"] as? Int == 3)
        #expect((again?["ips"] as? [[String: Any]])?.first?["address"] as? String == "10.10.0.3/24")
        #expect(try String(contentsOfFile: state + "/api-token", encoding: .utf8).contains(token), "the same token after a restart")
        let events = plexus(exe, ["events", "--json"], api: api, state: state)
        let list = try JSONSerialization.jsonObject(with: Data(events.output.utf8)) as? [[String: Any]] ?? []
        #expect(list.count == 12, "3 nodes added and 9 commands (storage map and unmap included): \(events.output)")
        _ = server
    }

    @Test("plexus console: prints a node's console as the control node keeps it, and --follow prints what arrives")
    func console() throws {
        let exe = try #require(plexusExecutable, "the plexus executable was not built next to the tests (run swift build first)")
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-cli-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: state) }
        let (server, api) = try serve(exe, state: state)
        // What a control node (`plexus control --state`) writes as pieces arrive from node 4.
        let archive = try ConsoleArchive(directory: state + "/console")
        archive.append(node: 4, incarnation: 1, sequence: 1, Array("first line\n".utf8))
        let once = plexus(exe, ["console", "4"], api: api, state: state)
        #expect(once.status == 0 && once.output == "first line\n", "\(once.output)")
        let follow = try WatchedProcess([exe, "console", "4", "--follow", "--interval", "20", "--api", api, "--token-file", state + "/api-token"])
        #expect(follow.waitFor("first line", seconds: 10), "\(follow.output)")
        archive.append(node: 4, incarnation: 1, sequence: 2, Array("second line\n".utf8))
        archive.note(node: 4, "node 4 failed")
        #expect(follow.waitFor("plexus control: node 4 failed", seconds: 10), "\(follow.output)")
        #expect(follow.output.components(separatedBy: "second line").count == 2, "each piece printed once: \(follow.output)")
        follow.process.kill()
        for (args, expected) in [(["console", "0"], "not a node number"), (["console", "4", "--from", "-1"], "--from")] {
            let r = plexus(exe, args, api: api, state: state)
            #expect(r.status != 0 && r.output.contains(expected), "plexus \(args.joined(separator: " ")): \(r.output)")
        }
        _ = server
    }

    @Test("plexus events --follow prints the events so far, then each new one once, as it is recorded")
    func watchEvents() throws {
        let exe = try #require(plexusExecutable, "the plexus executable was not built next to the tests (run swift build first)")
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-cli-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: state) }
        let (server, api) = try serve(exe, state: state)
        #expect(plexus(exe, ["pool", "add", "3", "4"], api: api, state: state).status == 0)
        let watch = try WatchedProcess([exe, "events", "--follow", "--interval", "20", "--api", api, "--token-file", state + "/api-token"])
        #expect(watch.waitFor("processor-added  node 4", seconds: 10), "\(watch.output)")
        #expect(plexus(exe, ["pan", "create", "shop"], api: api, state: state).status == 0)
        #expect(watch.waitFor("pan-created  pan shop", seconds: 10), "\(watch.output)")
        #expect(watch.output.components(separatedBy: "processor-added  node 3").count == 2, "each event once: \(watch.output)")
        watch.process.kill()
        let bad = plexus(exe, ["events", "--since", "-1"], api: api, state: state)
        #expect(bad.status != 0 && bad.output.contains("--since"), "\(bad.output)")
        _ = server
    }

    @Test("processes following the store: two `plexus control --store` and three `plexus node` processes; `plexus` commands change the running platform (an alias, a migration by hand); a kill -9 failover is written to the store and shown by `plexus personality show` and `plexus events`",
          .requiresIOUring, .requiresRoot, .requiresTool("ip"), .requiresTUN, .requiresTool("ping"), .requiresTool("curl"),
          .requiresTool("python3"), .requiresTool("pkill"))
    func controlProcessesFollowTheStore() throws {
        let exe = try #require(plexusExecutable, "the plexus executable was not built next to the tests (run swift build first)")
        let fabric = try NamespaceFabric(nodes: 5, linkMTU: 65535)
        defer { fabric.teardown() }
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-live-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        try Data("served by web\n".utf8).write(to: URL(fileURLWithPath: state + "/index.html"))
        let platform = state + "/platform.json"
        try Data(#"{ "controlNodes": [1, 2], "processingNodes": [3, 4, 5], "vlans": {}, "fabricA": "198.18.1.{node}:7000", "fabricB": "198.18.2.{node}:7000", "pathMTU": 65535 }"#.utf8)
            .write(to: URL(fileURLWithPath: platform))
        defer {
            _ = NamespaceFabric.execute(["pkill", "-9", "-f", state])  // a killed node's orphaned workload
            try? FileManager.default.removeItem(atPath: state)
        }
        let (server, api) = try serve(exe, state: state)
        defer { _ = server.process.terminate() }
        func admin(_ args: String...) {
            let r = plexus(exe, args, api: api, state: state)
            #expect(r.status == 0, "plexus \(args.joined(separator: " ")): \(r.output)")
        }
        admin("pool", "add", "3", "4", "5")
        admin("pan", "create", "shop")
        admin("pan", "add-vlan", "shop", "10")
        admin("pan", "add-processor", "shop", "--name", "client", "--node", "3")
        admin("personality", "attach-nic", "client", "10")
        admin("personality", "bind-ip", "client", "10", "10.10.0.3/24")
        admin("pan", "add-processor", "shop", "--name", "web", "--node", "4")
        admin("personality", "attach-nic", "web", "10")
        admin("personality", "bind-ip", "web", "10", "10.10.0.4/24")
        admin("personality", "set-workload", "web", try FailoverDrill.webService(address: "0.0.0.0", directory: state))

        func spawn(_ n: Int, _ args: [String]) throws -> WatchedProcess {
            try WatchedProcess(["ip", "netns", "exec", fabric.namespace(n), exe] + args)
        }
        let c1 = try spawn(1, ["control", "--platform", platform, "--index", "0", "--state", state, "--store"])
        let c2 = try spawn(2, ["control", "--platform", platform, "--index", "1", "--state", state, "--store"])
        let nodes = try [3, 4, 5].map { try spawn($0, ["node", "--platform", platform, "--node", "\($0)"]) }
        for p in [c1, c2] + nodes { #expect(p.waitFor("ready"), "\(p.output)") }
        #expect(nodes[2].output.contains("standby"), "\(nodes[2].output)")
        func fetch() -> String { fabric.execute(in: 3, ["curl", "-s", "--max-time", "1", "http://10.10.0.4:8080/"]).output }
        func ping(_ ip: String) -> Bool { fabric.execute(in: 3, ["ping", "-c", "1", "-W", "1", ip]).status == 0 }
        #expect(waitUntil(seconds: 10) { fetch() == "served by web\n" }, "node 4 serves: \(fetch())")

        // Changes through the API reach the running processes.
        admin("personality", "bind-ip", "web", "10", "10.10.0.40/24")
        #expect(waitUntil(seconds: 10) { ping("10.10.0.40") }, "\(c1.output)")
        admin("personality", "migrate", "web", "--to", "5")
        #expect(nodes[1].waitFor("released to the free pool", seconds: 10), "\(nodes[1].output)")
        #expect(waitUntil(seconds: 10) { fetch() == "served by web\n" && ping("10.10.0.40") }, "node 5 serves: \(fetch())")

        // kill -9 of node 5's process: both control processes move web to node 4 (free again)
        // and the store records it.
        nodes[2].process.kill()
        #expect(c1.waitFor("moved to spare node 4", seconds: 10), "\(c1.output)")
        #expect(waitUntil(seconds: 10) { fetch() == "served by web\n" }, "node 4 serves again: \(fetch())")
        #expect(waitUntil(seconds: 10) { plexus(exe, ["personality", "show", "web"], api: api, state: state).output.contains("node: 4") })
        #expect(waitUntil(seconds: 10) { plexus(exe, ["events"], api: api, state: state).output.contains("node 5 → spare node 4") },
                "\(plexus(exe, ["events"], api: api, state: state).output)")
        let pool = plexus(exe, ["pool", "list"], api: api, state: state).output
        #expect(pool.contains("fenced"), "\(pool)")
        print("plexus control --store: alias and migration carried into running processes; failover 5 → 4 written to the store; "
              + (c1.output.split(separator: "\n").filter { $0.contains("store:") }.joined(separator: " | ")))
    }
}
