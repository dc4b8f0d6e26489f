import Foundation
import PlexusCore
import PlexusLAN
import PlexusNamespaces
import PlexusTestSupport
import Testing

/// A process seen in /proc: its parent, its group, and whether it is a zombie (ended, only its
/// parent's wait missing: it holds nothing).
struct SeenProcess {
    var pid: Int32
    var parent: Int32
    var group: Int32
    var zombie: Bool
    var command: String
}

func processTable() -> [SeenProcess] {
    let all = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return all.compactMap { Int32($0) }.compactMap { pid in
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
        let f = stat[stat.index(after: close)...].split(separator: " ")
        guard f.count > 2, let parent = Int32(f[1]), let group = Int32(f[2]) else { return nil }
        return SeenProcess(pid: pid, parent: parent, group: group, zombie: f[0] == "Z",
                           command: String(stat[stat.index(after: open)..<close]))
    }
}

/// Every live process below `root` (children, theirs, and everything in their process groups).
func descendants(of root: Int32) -> [SeenProcess] {
    let table = processTable().filter { !$0.zombie }
    var found: Set<Int32> = [], groups: Set<Int32> = []
    var frontier = [root]
    while let p = frontier.popLast() {
        for c in table where c.parent == p && !found.contains(c.pid) {
            found.insert(c.pid)
            groups.insert(c.group)
            frontier.append(c.pid)
        }
    }
    return table.filter { found.contains($0.pid) || (groups.contains($0.group) && $0.group != getpgrp()) }
}

/// Which of `pids` still run (zombies do not count).
func stillRunning(_ pids: [Int32]) -> [SeenProcess] {
    let wanted = Set(pids)
    return processTable().filter { wanted.contains($0.pid) && !$0.zombie }
}

/// Whether `name` is one that plexus process `pid` gives what it creates: `px<pid><letter>…`
/// (fabrics), `pxb<pid><letter>…` and `plx-bench-<pid>` (rvi-failover --link).
func named(_ name: String, by pid: Int32) -> Bool {
    for prefix in ["px\(pid)", "pxb\(pid)"] where name.hasPrefix(prefix) {
        if let next = name.dropFirst(prefix.count).first, next.isLetter { return true }
    }
    return name == "plx-bench-\(pid)"
}

/// Network namespaces and host links that plexus process `pid` named.
func namesWith(_ pid: Int32) -> (namespaces: [String], links: [String]) {
    let ns = NamespaceFabric.execute(["ip", "netns", "list"]).output.split(separator: "\n")
        .map { String($0.split(separator: " ")[0]) }.filter { named($0, by: pid) }
    let links = NamespaceFabric.execute(["ip", "-o", "link"]).output.split(separator: "\n").compactMap { line -> String? in
        let f = line.split(separator: " ")
        guard f.count > 1 else { return nil }
        let name = String(f[1].split(separator: "@")[0].split(separator: ":")[0])
        return named(name, by: pid) ? name : nil
    }
    return (ns, links)
}

/// After a test (even a failed one): a run still going gets SIGTERM, and whatever it left in
/// the test's run directory is removed.
func stopAndClean(_ p: WatchedProcess, runDirectory: String) {
    if p.process.isRunning {
        kill(p.process.processIdentifier, SIGTERM)
        if !waitUntil(seconds: 5, { !p.process.isRunning }) { p.process.kill() }
    }
    if let exe = plexusExecutable { _ = NamespaceFabric.execute(["env", "PLEXUS_RUN_DIR=\(runDirectory)", exe, "cleanup"]) }
}

/// Starts `plexus args` with its state files in a directory of the test's own.
func startPlexus(_ args: [String], runDirectory: String) throws -> WatchedProcess {
    let exe = try #require(plexusExecutable, "the plexus executable was not built next to the tests (run swift build first)")
    return try WatchedProcess(["PLEXUS_RUN_DIR=\(runDirectory)", exe] + args)
}

@Suite("A signal stops every long-running command within a second and leaves nothing behind", .serialized,
       .requiresIOUring, .requiresRoot, .requiresTool("ip"), .requiresTUN, .requiresTool("ping"), .requiresTool("iperf3"),
       .requiresTool("python3"))
struct InterruptTests {
    /// Each command that creates namespaces, the signal it gets, and its own way of saying
    /// that it is well under way (besides its namespaces existing).
    static let commands: [(args: [String], signal: Int32, namespaces: Int, child: String?)] = [
        (["bench", "vlan-ping", "--count", "1000000"], SIGINT, 4, "ping"),
        (["bench", "vlan-tcp", "--seconds", "60", "--rounds", "1"], SIGTERM, 4, "iperf3"),
        (["bench", "failover", "--rounds", "3"], SIGINT, 6, "python3"),
        (["bench", "rvi-failover", "--link", "--seconds", "60", "--rounds", "1"], SIGTERM, 1, nil),
        (["demo", "--frames", "1000", "--rvi-messages", "1000"], SIGINT, 7, nil),
    ]

    @Test("SIGINT or SIGTERM: the command ends within two seconds, with 128 + the signal, and no namespace, link or child of its remains",
          arguments: commands.indices)
    func signalStopsAndCleansUp(index: Int) throws {
        let (args, signal, namespaces, child) = Self.commands[index]
        let run = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: run) }
        let p = try startPlexus(args, runDirectory: run)
        let pid = p.process.processIdentifier
        let tag = pid
        defer { stopAndClean(p, runDirectory: run) }
        // Under way: all its namespaces exist (and, where it runs one, the tool it measures with).
        let underWay = waitUntil(seconds: 90) {
            namesWith(tag).namespaces.count >= namespaces
                && (child.map { c in descendants(of: pid).contains { $0.command == c } } ?? true)
        }
        try #require(underWay, "\(args.joined(separator: " ")) did not get under way: \(p.output.suffix(1500))")
        let before = namesWith(tag)
        let children = descendants(of: pid)
        #expect(!before.links.isEmpty, "its links carry its pid: \(before)")
        #expect(FileManager.default.fileExists(atPath: run), "it keeps a state file")

        let sent = ContinuousClock.now
        kill(pid, signal)
        let ended = waitUntil(seconds: 2) { !p.process.isRunning }
        let took = ContinuousClock.now - sent
        #expect(ended, "\(args.joined(separator: " ")) still runs 2 s after signal \(signal): \(p.output.suffix(800))")
        if !ended { p.process.kill() }
        #expect(p.process.wait() == 128 + signal, "\(p.output.suffix(800))")
        let after = namesWith(tag)
        #expect(after.namespaces.isEmpty && after.links.isEmpty, "left behind: \(after) (had \(before))")
        let left = stillRunning(children.map(\.pid))
        #expect(left.isEmpty, "children left running: \(left.map { "\($0.pid) \($0.command)" }) of \(children.map(\.command))")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []
        #expect(files.isEmpty, "its state file is gone: \(files)")
        print("plexus \(args.joined(separator: " ")): signal \(signal) → exit in \(took), removed \(before.namespaces.count) namespaces, \(before.links.count) links, \(children.count) child processes")
    }

    @Test("plexus control and plexus node (TAP NICs, a workload) stop cleanly on SIGINT and SIGTERM within a second; the workload and the TAP device go")
    func controlAndNodeStop() throws {
        let exe = try #require(plexusExecutable)
        let fabric = try NamespaceFabric(nodes: 2, linkMTU: 9000)
        defer { fabric.teardown() }
        let platform = try writeDefinition("""
            { "controlNodes": [1], "processingNodes": [2], "vlans": { "10": [2] },
              "workloads": { "2": "sleep 600" },
              "fabricA": "198.18.1.{node}:7000", "fabricB": "198.18.2.{node}:7000", "pathMTU": 9000 }
            """)
        let state = temporaryDirectory()
        let run = temporaryDirectory()
        defer {
            for path in [platform, state, run] { try? FileManager.default.removeItem(atPath: path) }
        }
        let control = try WatchedProcess(["ip", "netns", "exec", fabric.namespace(1), "env", "PLEXUS_RUN_DIR=\(run)", exe, "control",
                                          "--platform", platform, "--state", state])
        #expect(control.waitFor("ready"), "\(control.output)")
        let node = try WatchedProcess(["ip", "netns", "exec", fabric.namespace(2), "env", "PLEXUS_RUN_DIR=\(run)", exe, "node",
                                       "--platform", platform, "--node", "2"])
        let nodePID = node.process.processIdentifier
        let up = waitUntil(seconds: 30) {
            node.output.contains("ready") && descendants(of: nodePID).contains { $0.command == "sleep" }
        }
        try #require(up, "node: \(node.output)")
        #expect(fabric.execute(in: 2, ["ip", "link", "show", "pvl10"]).status == 0, "its TAP NIC exists")
        let workload = descendants(of: nodePID)

        let sent = ContinuousClock.now
        kill(nodePID, SIGINT)
        #expect(waitUntil(seconds: 1.5) { !node.process.isRunning }, "node still runs: \(node.output)")
        print("plexus node: SIGINT → exit in \(ContinuousClock.now - sent)")
        #expect(node.process.wait() == 0 && node.output.contains("node 2 stopping on signal 2"), "\(node.output)")
        #expect(stillRunning(workload.map(\.pid)).isEmpty, "its workload (\(workload.map(\.command))) is gone")
        #expect(fabric.execute(in: 2, ["ip", "link", "show", "pvl10"]).status != 0, "its TAP NIC is gone")

        let sentTerm = ContinuousClock.now
        kill(control.process.processIdentifier, SIGTERM)
        #expect(waitUntil(seconds: 1.5) { !control.process.isRunning }, "control still runs: \(control.output)")
        print("plexus control: SIGTERM → exit in \(ContinuousClock.now - sentTerm)")
        #expect(control.process.wait() == 0 && control.output.contains("stopping on signal 15"), "\(control.output)")
    }

    @Test("after a SIGKILL, plexus cleanup --dry-run lists the run's leftovers and removes nothing; plexus cleanup removes exactly them, not what a live process owns nor what plexus did not create")
    func cleanupAfterKill() throws {
        let run = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        let me = getpid()
        let live = "plxtest-live-\(me)", foreign = "plxtest-other-\(me)"
        defer {
            for ns in [live, foreign] { _ = NamespaceFabric.execute(["ip", "netns", "del", ns]) }
            try? FileManager.default.removeItem(atPath: run)
        }
        // A namespace that a live process (this one) lists as its own, and one nobody lists.
        for ns in [live, foreign] { try NamespaceFabric.run(["ip", "netns", "add", ns]) }
        let start = try #require(processStartTime(me))
        try #"{"owner":\#(me),"ownerStart":\#(start),"command":"a live test","namespaces":["\#(live)"],"links":[],"processes":[]}"#
            .write(toFile: "\(run)/\(me)-\(start).json", atomically: true, encoding: .utf8)

        let p = try startPlexus(["bench", "vlan-ping", "--count", "1000000"], runDirectory: run)
        let pid = p.process.processIdentifier
        let tag = pid
        defer { stopAndClean(p, runDirectory: run) }
        let underWay = waitUntil(seconds: 90) {
            namesWith(tag).namespaces.count == 4 && descendants(of: pid).contains { $0.command == "ping" }
        }
        try #require(underWay, "vlan-ping did not get under way: \(p.output.suffix(1500))")
        let children = descendants(of: pid)
        kill(pid, SIGKILL)
        #expect(p.process.wait() == 128 + SIGKILL)
        // Its direct children die with it (their parent-death signal).
        #expect(waitUntil(seconds: 2) { stillRunning(children.filter { $0.parent == pid }.map(\.pid)).isEmpty },
                "children of a SIGKILLed run: \(stillRunning(children.map(\.pid)).map(\.command))")
        let left = namesWith(tag)
        #expect(left.namespaces.count == 4 && left.links.count == 10, "a SIGKILLed run cannot clean up: \(left)")

        let exe = try #require(plexusExecutable)
        let dry = NamespaceFabric.execute(["env", "PLEXUS_RUN_DIR=\(run)", exe, "cleanup", "--dry-run"])
        #expect(dry.status == 0, "\(dry.output)")
        for name in left.namespaces + left.links { #expect(dry.output.contains(name), "dry run lists \(name): \(dry.output)") }
        #expect(namesWith(tag) == left, "a dry run removes nothing")

        let real = NamespaceFabric.execute(["env", "PLEXUS_RUN_DIR=\(run)", exe, "cleanup"])
        #expect(real.status == 0, "\(real.output)")
        #expect(real.output.contains("removed what pid \(pid)"), "\(real.output)")
        for name in left.namespaces { #expect(real.output.contains("namespace \(name)"), "\(real.output)") }
        for name in left.links { #expect(real.output.contains("link \(name)"), "\(real.output)") }
        let after = namesWith(tag)
        #expect(after.namespaces.isEmpty && after.links.isEmpty, "left after cleanup: \(after)")
        #expect(stillRunning(children.map(\.pid)).isEmpty, "its processes are gone")
        #expect(!real.output.contains(live) && !real.output.contains(foreign), "\(real.output)")
        let namespaces = NamespaceFabric.execute(["ip", "netns", "list"]).output
        #expect(namespaces.contains(live), "a live owner's namespace stays")
        #expect(namespaces.contains(foreign), "a namespace no state file lists stays")
        #expect(FileManager.default.fileExists(atPath: "\(run)/\(me)-\(start).json"), "a live owner's state file stays")
        let again = NamespaceFabric.execute(["env", "PLEXUS_RUN_DIR=\(run)", exe, "cleanup"])
        #expect(again.output.contains("nothing to remove"), "\(again.output)")
        print("plexus cleanup after a SIGKILL: removed \(left.namespaces.count) namespaces and \(left.links.count) links of pid \(pid); kept a live owner's and an unlisted namespace")
    }
}
