import Foundation
import PlexusCore
import PlexusLAN
import PlexusNamespaces
import PlexusNode
import PlexusTestSupport
import Testing

/// A platform definition file for the process tests.
func writeDefinition(_ json: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-platform-\(UUID().uuidString).json").path
    try json.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

func temporaryDirectory() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("plexus-state-\(UUID().uuidString)").path
}

/// Runs `plexus` to the end and returns its status and output.
func plexus(_ args: [String]) throws -> (status: Int32, output: String) {
    let exe = try #require(plexusExecutable, "the plexus executable was not built next to the tests (run swift build first)")
    return NamespaceFabric.execute([exe] + args)
}

@Suite("plexus control and plexus node as processes of their own", .serialized,
       .requiresIOUring)
struct ProcessTests {
    @Test("two control processes hand out the same MACs from one state directory; nodes register, a node on no VLAN is refused (exit 3), MACs survive a control node's restart")
    func registrationAcrossProcesses() throws {
        let exe = try #require(plexusExecutable)
        let port = Int.random(in: 20_000..<40_000)
        let platform = try writeDefinition("""
            { "controlNodes": [1, 2], "processingNodes": [3, 4, 5, 6],
              "vlans": { "10": [3, 4], "20": [4, 5] },
              "fabricA": "127.0.1.{node}:\(port)", "fabricB": "127.0.2.{node}:\(port)" }
            """)
        let state = temporaryDirectory()
        defer {
            try? FileManager.default.removeItem(atPath: platform)
            try? FileManager.default.removeItem(atPath: state)
        }
        func control(_ k: Int) throws -> WatchedProcess {
            try WatchedProcess([exe, "control", "--platform", platform, "--index", "\(k)", "--state", state])
        }
        var c0: WatchedProcess? = try control(0)
        let c1 = try control(1)
        #expect(c0!.waitFor("ready") && c1.waitFor("ready"), "control output: \(c0!.output) \(c1.output)")
        let macs = try String(contentsOfFile: state + "/nics.json", encoding: .utf8)

        // Node 4 sits on both VLANs: two NICs, and peers 3 and 5.
        let n4 = try plexus(["node", "--platform", platform, "--node", "4", "--backend", "frames", "--seconds", "0.5"])
        #expect(n4.status == 0, "\(n4.output)")
        #expect(n4.output.contains("configured"))
        let nicLines = n4.output.split(separator: "\n").filter { $0.hasPrefix("  NIC ") }
        #expect(nicLines.count == 2, "\(n4.output)")
        for line in nicLines {
            let mac = String(line.split(separator: " ")[1])
            #expect(macs.contains(mac), "node 4's \(mac) is in the control nodes' NIC list")
        }
        #expect(n4.output.contains("peer node 3") && n4.output.contains("peer node 5"))

        // Node 6 is on no VLAN: refused, exit status 3; both control nodes log it.
        let n6 = try plexus(["node", "--platform", platform, "--node", "6", "--backend", "frames"])
        #expect(n6.status == 3, "\(n6.output)")
        #expect(n6.output.contains("refused: node 6 is a member of no VLAN"))
        #expect(c0!.waitFor("node 6 refused") && c1.waitFor("node 6 refused"))
        #expect(c0!.waitFor("node 4 registered"))

        // Control node 0 dies and comes back: the same MACs; node 3 registers (with either).
        c0!.process.kill()
        c0 = nil
        c0 = try control(0)
        #expect(c0!.waitFor("ready"))
        #expect(try String(contentsOfFile: state + "/nics.json", encoding: .utf8) == macs)
        let n3 = try plexus(["node", "--platform", platform, "--node", "3", "--backend", "frames", "--seconds", "0.5"])
        #expect(n3.status == 0 && n3.output.contains("configured"), "\(n3.output)")

        // A clean stop on SIGTERM prints the counters.
        #expect(c1.process.terminate() == 0)
        #expect(c1.output.contains("control node 2 stopping on signal 15"), "\(c1.output)")
        print("plexus control/node processes: node 4 got \(nicLines.count) NICs, node 6 refused, MACs kept across a restart")
    }

    @Test("bad definitions and bad arguments get an error that names the field, and nothing starts", arguments: [
        (#"{ "controlNodes": [1], "processingNodes": [2], "vlans": { "10": [2] }, "promiscous": {} }"#, "unknown field \"promiscous\""),
        (#"{ "controlNodes": [1], "processingNodes": [2] }"#, "vlans: required"),
        (#"{ "controlNodes": [1], "processingNodes": [2], "vlans": { "5000": [2] } }"#, "vlans.5000: a VLAN number is 1...4094"),
        (#"{ "controlNodes": [1], "processingNodes": [2], "vlans": { "10": [3] } }"#, "VLAN 10: node 3 is not a processing node"),
        (#"{ "controlNodes": [1], "processingNodes": [2], "vlans": { "10": ["two"] } }"#, "vlans.10[0]: expected a whole number"),
        (#"{ "controlNodes": [1], "processingNodes": [2], "vlans": {}, "fabricA": "10.0.0.1:7000" }"#, "fabricA: \"10.0.0.1:7000\" must contain {node}"),
        (#"{ "controlNodes": [1, 2, 3], "processingNodes": [4], "vlans": {} }"#, "one or two control nodes, not 3"),
        ("not json", "not a JSON object"),
        (#"{ "controlNodes": [1], "processingNodes": [2], "vlans": { "10": [2] }, "addresses": { "2": ["10.0.0.2/24"] } }"#,
         "addresses.2[0]: expected \"VLAN=a.b.c.d/len\""),
        (#"{ "controlNodes": [1], "processingNodes": [2, 3], "vlans": { "10": [2] }, "failoverServers": [{ "name": "fs" }] }"#,
         "failoverServers[0]: expected {\"name\""),
        (#"{ "controlNodes": [1], "processingNodes": [2, 3], "vlans": { "10": [2, 3] }, "failoverServers": [{ "name": "fs", "virtualNodes": [3] }] }"#,
         "virtual node 3 is on a VLAN"),
        (#"{ "controlNodes": [1], "processingNodes": [2, 3], "vlans": { "10": [2] }, "spares": [2] }"#, "spares: node 2 is on a VLAN"),
        (#"{ "controlNodes": [1], "processingNodes": [2], "vlans": { "10": [2] }, "storage": { "2": ["0=/tmp/x.img"] } }"#,
         "storage.2[0]: expected \"TARGET:LUN=PATH\""),
        (#"{ "controlNodes": [1], "processingNodes": [2, 3], "vlans": { "10": [2] }, "spares": [3], "storage": { "3": ["0:0=/tmp/x.img"] } }"#,
         "storage: node 3 is not a processing node with a personality"),
        (#"{ "controlNodes": [1], "processingNodes": [2], "vlans": { "10": [2] }, "storage": { "2": ["0:0=/a.img", "0:0=/b.img"] } }"#,
         "storage: node 2 maps target 0 LUN 0 twice"),
    ])
    func badDefinitions(json: String, message: String) throws {
        let platform = try writeDefinition(json)
        defer { try? FileManager.default.removeItem(atPath: platform) }
        let state = temporaryDirectory()
        let r = try plexus(["control", "--platform", platform, "--state", state])
        #expect(r.status == 64, "\(r.output)")  // EX_USAGE
        #expect(r.output.contains(message), "\(r.output)")
        #expect(!FileManager.default.fileExists(atPath: state), "nothing was written")
    }

    @Test("bad node arguments: a node that is not a processing node, an address on a VLAN it is not on, a malformed address")
    func badNodeArguments() throws {
        let platform = try writeDefinition(#"{ "controlNodes": [1], "processingNodes": [2, 3], "vlans": { "10": [2, 3] } }"#)
        defer { try? FileManager.default.removeItem(atPath: platform) }
        for (args, message) in [
            (["--node", "1"], "--node: 1 is not one of the platform's processing nodes [2, 3]"),
            (["--node", "2", "--address", "20=10.0.0.2/24"], "--address: node 2 has no NIC on VLAN 20"),
            (["--node", "2", "--address", "10=10.0.0.300/24"], "--address '10=10.0.0.300/24': expected VLAN=a.b.c.d/len"),
            (["--node", "2", "--backend", "frames", "--address", "10=10.0.0.2/24"], "--address needs the TAP backend"),
            (["--node", "2", "--index", "1"], "Unknown option '--index'"),
        ] {
            let r = try plexus(["node", "--platform", platform] + args)
            #expect(r.status == 64, "\(args): \(r.output)")
            #expect(r.output.contains(message), "\(args): \(r.output)")
        }
        let r = try plexus(["control", "--platform", platform, "--index", "1"])
        #expect(r.status == 64 && r.output.contains("--index: 1, but the platform has 1 control node(s)"), "\(r.output)")
        let level = try plexus(["node", "--platform", platform, "--node", "2", "--log-level", "loud"])
        #expect(level.status == 64 && level.output.contains("--log-level"), "\(level.output)")
        let version = try plexus(["--version"])
        #expect(version.status == 0 && version.output.contains("plexus \(PlexusVersion.package) (frame format \(FrameLayout.version))"),
                "\(version.output)")
    }

    @Test("control and processing nodes as processes in their own namespaces: ping across TAP NICs, and on after a control node is killed",
          .requiresRoot, .requiresTool("ip"), .requiresTUN, .requiresTool("ping"))
    func tapAcrossProcesses() throws {
        let exe = try #require(plexusExecutable)
        let fabric = try NamespaceFabric(nodes: 5, linkMTU: 65535)
        defer { fabric.teardown() }
        let platform = try writeDefinition("""
            { "controlNodes": [1, 2], "processingNodes": [3, 4, 5],
              "vlans": { "10": [3, 4], "20": [5] },
              "fabricA": "198.18.1.{node}:7000", "fabricB": "198.18.2.{node}:7000", "pathMTU": 65535 }
            """)
        let state = temporaryDirectory()
        defer {
            try? FileManager.default.removeItem(atPath: platform)
            try? FileManager.default.removeItem(atPath: state)
        }
        func spawn(_ n: Int, _ args: [String]) throws -> WatchedProcess {
            try WatchedProcess(["ip", "netns", "exec", fabric.namespace(n), exe] + args)
        }
        var c1: WatchedProcess? = try spawn(1, ["control", "--platform", platform, "--index", "0", "--state", state])
        let c2 = try spawn(2, ["control", "--platform", platform, "--index", "1", "--state", state])
        let n3 = try spawn(3, ["node", "--platform", platform, "--node", "3", "--address", "10=10.10.0.3/24"])
        let n4 = try spawn(4, ["node", "--platform", platform, "--node", "4", "--address", "10=10.10.0.4/24"])
        let n5 = try spawn(5, ["node", "--platform", platform, "--node", "5", "--address", "20=10.10.0.5/24"])
        for p in [c1!, c2, n3, n4, n5] { #expect(p.waitFor("ready"), "\(p.output)") }
        func ping(_ from: Int, _ to: String) -> Bool {
            fabric.execute(in: from, ["ping", "-c", "3", "-i", "0.2", "-W", "1", to]).status == 0
        }
        #expect(waitUntil(seconds: 10) { ping(3, "10.10.0.4") }, "node 3 pings node 4 over VLAN 10")
        // Node 5 is on VLAN 20 with an address in VLAN 10's subnet: it reaches nobody.
        #expect(!ping(5, "10.10.0.3"), "isolation: VLAN 20 cannot reach VLAN 10")
        // Control node 1's process is killed: a new address needs ARP through control node 2.
        c1!.process.kill()
        c1 = nil
        try NamespaceFabric.run(["ip", "-n", fabric.namespace(4), "addr", "add", "10.10.0.44/24", "dev", "pvl10"])
        #expect(waitUntil(seconds: 10) { ping(3, "10.10.0.44") }, "ARP and ping through the surviving control node")
        #expect(n3.process.terminate() == 0)
        #expect(n3.output.contains("node 3 stopping on signal 15"), "\(n3.output)")
        print("plexus processes in namespaces: ping over VLAN 10, isolation, and ARP after control node 1 was killed; node 3 said: "
              + (n3.output.split(separator: "\n").last.map(String.init) ?? ""))
    }

    @Test("processes: the definition's personality comes up on its node (addresses, workload, console at the control node); when that node's process is killed, the spare process takes it over and serves",
          .requiresRoot, .requiresTool("ip"), .requiresTUN, .requiresTool("curl"), .requiresTool("python3"),
          .requiresTool("pkill"))
    func failoverAcrossProcesses() throws {
        let exe = try #require(plexusExecutable)
        let fabric = try NamespaceFabric(nodes: 5, linkMTU: 65535)
        defer { fabric.teardown() }
        let state = temporaryDirectory(), www = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: www, withIntermediateDirectories: true)
        try Data("served by the personality\n".utf8).write(to: URL(fileURLWithPath: www + "/index.html"))
        let workload = "echo workload up; " + (try FailoverDrill.webService(address: "10.10.0.4", directory: www))
        let platform = try writeDefinition("""
            { "controlNodes": [1, 2], "processingNodes": [3, 4, 5], "vlans": { "10": [3, 4] }, "spares": [5],
              "addresses": { "3": ["10=10.10.0.3/24"], "4": ["10=10.10.0.4/24"] },
              "workloads": { "4": \(String(decoding: try JSONEncoder().encode(workload), as: UTF8.self)) },
              "fabricA": "198.18.1.{node}:7000", "fabricB": "198.18.2.{node}:7000", "pathMTU": 65535 }
            """)
        defer {
            _ = NamespaceFabric.execute(["pkill", "-9", "-f", www])  // the killed node's orphaned workload
            try? FileManager.default.removeItem(atPath: platform)
            try? FileManager.default.removeItem(atPath: state)
            try? FileManager.default.removeItem(atPath: www)
        }
        func spawn(_ n: Int, _ args: [String]) throws -> WatchedProcess {
            try WatchedProcess(["ip", "netns", "exec", fabric.namespace(n), exe] + args)
        }
        let c1 = try spawn(1, ["control", "--platform", platform, "--index", "0", "--state", state])
        let c2 = try spawn(2, ["control", "--platform", platform, "--index", "1", "--state", state])
        let n3 = try spawn(3, ["node", "--platform", platform, "--node", "3"])
        let n4 = try spawn(4, ["node", "--platform", platform, "--node", "4"])
        let n5 = try spawn(5, ["node", "--platform", platform, "--node", "5"])
        for p in [c1, c2, n3, n4, n5] { #expect(p.waitFor("ready"), "\(p.output)") }
        #expect(n5.output.contains("standby"), "\(n5.output)")
        func fetch() -> String { fabric.execute(in: 3, ["curl", "-s", "--max-time", "1", "http://10.10.0.4:8080/"]).output }
        #expect(waitUntil(seconds: 10) { fetch() == "served by the personality\n" }, "node 4 serves: \(fetch())")
        // The workload's output reached the control nodes' console archive.
        let archive = try ConsoleArchive(directory: state + "/console")
        func log(_ n: NodeNumber) -> String { String(decoding: archive.read(node: n).text, as: UTF8.self) }
        #expect(waitUntil(seconds: 5) { log(4).contains("workload up") }, "\(log(4))")

        n4.process.kill()  // kill -9 of node 4's process
        #expect(c1.waitFor("moved to spare node 5", seconds: 10) && c2.waitFor("moved to spare node 5", seconds: 10), "\(c1.output)")
        #expect(waitUntil(seconds: 10) { fetch() == "served by the personality\n" }, "the spare serves: \(fetch())")
        #expect(n5.waitFor("took over a personality", seconds: 5), "\(n5.output)")
        #expect(waitUntil(seconds: 5) { log(5).contains("workload up") && log(5).contains("takes over node 4's personality") }, "\(log(5))")
        print("plexus processes: node 4 killed, spare node 5 took its personality and serves; control node 0 said: "
              + (c1.output.split(separator: "\n").first { $0.contains("moved to spare") }.map(String.init) ?? ""))
    }
}
