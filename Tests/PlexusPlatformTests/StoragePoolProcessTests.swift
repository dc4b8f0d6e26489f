import Foundation
import PlexusCore
import PlexusNode
import PlexusTestSupport
import Testing

@Suite("The storage pool with plexus control --store and the CLI", .serialized, .requiresIOUring)
struct StoragePoolProcessTests {
    @Test("two control processes rediscover an image directory at start (each change written once); plexus storage discover asks them again and shows the pool: a new file free, a mapped file that vanished vanished-assigned, an error in the events and the control node's output")
    func discoverThroughTheControlNodes() throws {
        let exe = try #require(plexusExecutable, "the plexus executable was not built next to the tests (run swift build first)")
        let cli = CLITests()
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-pool-\(UUID().uuidString)").path
        let images = state + "/images"
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: state) }
        let a = images + "/a.img", b = images + "/b.img"
        #expect(FileManager.default.createFile(atPath: a, contents: Data(count: 1 << 20)))
        let port = Int.random(in: 20_000..<40_000)
        let platform = state + "/platform.json"
        try Data("""
            { "controlNodes": [1, 2], "processingNodes": [3], "vlans": {},
              "fabricA": "127.0.1.{node}:\(port)", "fabricB": "127.0.2.{node}:\(port)",
              "discovery": { "directories": ["\(images)"], "everySeconds": 0 } }
            """.utf8).write(to: URL(fileURLWithPath: platform))
        let (server, api) = try cli.serve(exe, state: state)
        defer { _ = server.process.terminate() }
        func admin(_ args: String...) -> String {
            let r = cli.plexus(exe, args, api: api, state: state)
            #expect(r.status == 0, "plexus \(args.joined(separator: " ")): \(r.output)")
            return r.output
        }
        // No control node yet: a rediscovery request is not carried out, and the CLI says why.
        let unanswered = cli.plexus(exe, ["storage", "discover", "--wait", "0.5"], api: api, state: state)
        #expect(unanswered.status != 0 && unanswered.output.contains("no control node carried out"), "\(unanswered.output)")

        _ = admin("pool", "add", "3")
        _ = admin("pan", "create", "shop")
        _ = admin("pan", "add-processor", "shop", "--name", "web", "--node", "3")
        let c1 = try WatchedProcess([exe, "control", "--platform", platform, "--index", "0", "--state", state, "--store"])
        let c2 = try WatchedProcess([exe, "control", "--platform", platform, "--index", "1", "--state", state, "--store"])
        defer { _ = c1.process.terminate(); _ = c2.process.terminate() }
        #expect(c1.waitFor("ready") && c2.waitFor("ready"), "\(c1.output) \(c2.output)")
        // The request left unanswered above, and the start-up discoveries: a.img joins, once.
        #expect(waitUntil(seconds: 20) { admin("storage", "pool").contains("free              \(a)") }, "\(c1.output)\n\(c2.output)")
        let joinedLines = (c1.output + c2.output).split(separator: "\n").filter { $0.contains("plexus.storage-pool") && $0.contains("storage \(a): joined the pool") }
        #expect(joinedLines.count == 1, "\(c1.output)\n\(c2.output)")
        _ = admin("storage", "map", "web", "0", "2", a)

        #expect(FileManager.default.createFile(atPath: b, contents: Data(count: 4096)))
        try FileManager.default.removeItem(atPath: a)
        let shown = admin("storage", "discover")
        print("plexus storage discover:\n\(shown)")
        #expect(shown.contains("rediscovery") && shown.contains("1 joined") && shown.contains("1 vanished while assigned"), "\(shown)")
        #expect(shown.contains("free              \(b)") && shown.contains("vanished-assigned \(a)"), "\(shown)")
        #expect(shown.contains("shop/web (node 3) target 0 LUN 2"), "\(shown)")

        let json = admin("storage", "pool", "--json")
        let pool = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] ?? [:]
        let states = (pool["items"] as? [[String: Any]] ?? []).map { "\($0["path"] ?? "") \($0["state"] ?? "")" }
        #expect(states == ["\(a) vanished-assigned", "\(b) free"], "\(json)")

        let events = admin("events")
        #expect(events.components(separatedBy: "storage-vanished-assigned").count - 1 == 1, "\(events)")
        #expect(waitUntil(seconds: 5) {
            (c1.output + c2.output).contains("storage \(a): ERROR: assigned storage vanished")
        }, "\(c1.output)\n\(c2.output)")
        #expect((c1.output + c2.output).contains("personality web (node 3) in PAN shop as target 0 LUN 2"))
    }
}
