import Foundation
import PlexusCore
import PlexusNamespaces
import PlexusPlatform
import PlexusTestSupport
import Testing

@Suite("Storage statistics published by plexus control --store processes", .serialized, .requiresIOUring)
struct StorageStatisticsProcessTests {
    @Test("fio's reads through a processor's disk reach plexus storage stats: the control processes publish them to the store",
          .requiresTool("fio"))
    func controlProcessesPublish() throws {
        let exe = try #require(plexusExecutable, "the plexus executable was not built next to the tests (run swift build first)")
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-stats-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: state) }
        let image = state + "/web.img"
        #expect(FileManager.default.createFile(atPath: image, contents: Data(count: 4 << 20)))
        let port = Int.random(in: 20_000..<40_000)
        let platform = state + "/platform.json"
        try Data(#"{ "controlNodes": [1, 2], "processingNodes": [3, 4], "vlans": {}, "fabricA": "127.0.1.{node}:\#(port)", "fabricB": "127.0.2.{node}:\#(port)" }"#.utf8)
            .write(to: URL(fileURLWithPath: platform))

        let server = try WatchedProcess([exe, "api", "serve", "--state", state, "--port", "0"])
        defer { server.process.terminate() }
        #expect(server.waitFor("serving http://", seconds: 20), "\(server.output)")
        let line = try #require(server.output.split(separator: "\n").first { $0.contains("serving http://") })
        let api = String(try #require(line.split(separator: " ").first { $0.hasPrefix("http://") }).dropLast(3))
        func plexus(_ args: String...) -> (status: Int32, output: String) {
            NamespaceFabric.execute([exe] + args + ["--api", api, "--token-file", state + "/api-token"])
        }
        for step in [["pool", "add", "3", "4"], ["pan", "create", "shop"], ["pan", "add-vlan", "shop", "10"],
                     ["pan", "add-processor", "shop", "--name", "web", "--node", "3"], ["personality", "attach-nic", "web", "10"],
                     ["personality", "map-storage", "web", "0", "0", image]] {
            let r = NamespaceFabric.execute([exe] + step + ["--api", api, "--token-file", state + "/api-token"])
            #expect(r.status == 0, "plexus \(step.joined(separator: " ")): \(r.output)")
        }

        let controls = try (0..<2).map { k in
            try WatchedProcess([exe, "control", "--platform", platform, "--index", "\(k)", "--state", state, "--store"])
        }
        defer { for c in controls { c.process.terminate() } }
        for c in controls { #expect(c.waitFor("ready"), "\(c.output)") }
        let node = try WatchedProcess([exe, "node", "--platform", platform, "--node", "3", "--backend", "frames",
                                       "--disks", state + "/node3"])
        defer { node.process.terminate() }
        let socket = state + "/node3/t0-l0.sock"
        #expect(node.waitFor("disk t0-l0: nbd+unix:///?socket=\(socket)"), "\(node.output)\n\(controls[0].output)")

        let (status, out) = try runTool(["fio", "--name=stats", "--ioengine=nbd", "--uri=nbd+unix:///?socket=\(socket)",
                                         "--rw=read", "--bs=4k", "--size=256k", "--iodepth=1"], seconds: 60)
        #expect(status == 0, "\(out)")
        var report: StorageStatisticsReport?
        let published = waitUntil(seconds: 10) {
            let r = plexus("storage", "stats", "--json")
            report = try? JSONDecoder().decode(StorageStatisticsReport.self, from: Data(r.output.utf8))
            return report?.luns.first?.statistics.reads == 64
        }
        #expect(published, "\(String(describing: report))")
        let r = try #require(report)
        #expect(r.controls.map(\.control) == [1, 2], "both control processes publish")
        #expect(r.luns.count == 1 && r.luns[0].processor == 3 && r.luns[0].pan == "shop" && r.luns[0].path == image)
        #expect(r.luns[0].statistics.bytesRead == 64 * 4096 && r.luns[0].statistics.writes == 0)
        #expect(r.pans.map(\.pan) == ["shop"] && r.pans[0].statistics.reads == 64)
        let text = plexus("storage", "stats", "--pan", "shop")
        #expect(text.status == 0 && text.output.contains("node 3 target 0 LUN 0 (shop/web) \(image): 64 ops (64 reads"), "\(text.output)")
        print("plexus storage stats after fio's 64 reads of 4 KiB through node 3's disk:\n\(text.output)")
    }
}
