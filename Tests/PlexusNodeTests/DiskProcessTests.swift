import Foundation
import PlexusCore
import PlexusNode
import PlexusTestSupport
import Testing

@Suite("Disks with plexus control and plexus node as processes", .serialized, .requiresIOUring)
struct DiskProcessTests {
    @Test("the definition's storage: the node process offers its disk, nbdcopy writes it; kill -9 of that process; the spare process offers the same disk and it reads back",
          .requiresTool("nbdcopy"))
    func diskAcrossProcesses() throws {
        let exe = try #require(plexusExecutable)
        let state = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let image = state + "/web.img", size = 8 << 20
        #expect(FileManager.default.createFile(atPath: image, contents: Data(count: size)))
        let port = Int.random(in: 20_000..<40_000)
        let platform = try writeDefinition("""
            { "controlNodes": [1, 2], "processingNodes": [3, 4], "vlans": { "10": [3] }, "spares": [4],
              "storage": { "3": ["0:0=\(image)"] },
              "fabricA": "127.0.1.{node}:\(port)", "fabricB": "127.0.2.{node}:\(port)" }
            """)
        defer {
            try? FileManager.default.removeItem(atPath: platform)
            try? FileManager.default.removeItem(atPath: state)
        }
        let c0 = try WatchedProcess([exe, "control", "--platform", platform, "--index", "0", "--state", state])
        let c1 = try WatchedProcess([exe, "control", "--platform", platform, "--index", "1", "--state", state])
        defer { _ = c0.process.terminate(); _ = c1.process.terminate() }
        #expect(c0.waitFor("ready") && c1.waitFor("ready"), "\(c0.output) \(c1.output)")
        #expect(c0.output.contains("storage of node 3: 0:0=\(image)"), "\(c0.output)")
        let n3 = try WatchedProcess([exe, "node", "--platform", platform, "--node", "3", "--backend", "frames",
                                     "--disks", state + "/node3"])
        let n4 = try WatchedProcess([exe, "node", "--platform", platform, "--node", "4", "--backend", "frames",
                                     "--disks", state + "/node4"])
        defer { _ = n4.process.terminate() }
        #expect(n3.waitFor("disk t0-l0: nbd+unix:///?socket=\(state)/node3/t0-l0.sock"), "\(n3.output)")
        #expect(n4.waitFor("standby"), "\(n4.output)")

        var g = SplitMix64(seed: 30301)
        let data = Data((0..<(2 << 20)).map { _ in UInt8(truncatingIfNeeded: g.next()) })
        let source = state + "/written.bin", back = state + "/back.bin"
        #expect(FileManager.default.createFile(atPath: source, contents: data))
        let (put, putOut) = try runTool(["nbdcopy", "--flush", source, "nbd+unix:///?socket=\(state)/node3/t0-l0.sock"])
        #expect(put == 0, "\(putOut)\ncontrol 1: \(c0.output)\ncontrol 2: \(c1.output)\nnode 3: \(n3.output)")

        n3.process.kill()
        #expect(c0.waitFor("moved to spare node 4") && c1.waitFor("moved to spare node 4"),
                "control 1: \(c0.output)\ncontrol 2: \(c1.output)\nnode 4: \(n4.output)")
        #expect(n4.waitFor("disk t0-l0: nbd+unix:///?socket=\(state)/node4/t0-l0.sock"), "\(n4.output)")
        let (get, getOut) = try runTool(["nbdcopy", "nbd+unix:///?socket=\(state)/node4/t0-l0.sock", back])
        #expect(get == 0, "\(getOut)")
        let read = FileManager.default.contents(atPath: back) ?? Data()
        #expect(read.count == size && read.prefix(data.count) == data ? true : false, "the spare reads what node 3 wrote")
        print("Disks across processes: node 3 wrote \(data.count) bytes through its disk t0-l0 and was killed; "
              + "node 4 took the personality over, offered t0-l0 and read them back")
    }

    @Test("plexus storage discover asks a tgtd portal what it offers and prints each LUN as the URL to map; a portal nobody answers on is named",
          .requiresRoot, .requiresTool("tgtd"), .requiresTool("tgtadm"))
    func discoverAPortal() throws {
        let dir = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(FileManager.default.createFile(atPath: dir + "/lun.img", contents: Data(count: 4 << 20)))
        let san = try ISCSITargetDaemon(backing: dir + "/lun.img")
        defer { san.kill() }
        let shown = try plexus(["storage", "discover", "127.0.0.1:\(san.port)"])
        #expect(shown.status == 0 && shown.output.contains("\(san.iqn) (portals") && shown.output.contains("LUN 1: \(san.url)"),
                "\(shown.output)")
        let js = try plexus(["storage", "discover", "127.0.0.1:\(san.port)", "--json"])
        let offers = try JSONSerialization.jsonObject(with: Data(js.output.utf8)) as? [[String: Any]] ?? []
        #expect(offers.count == 1 && offers[0]["target"] as? String == san.iqn && (offers[0]["luns"] as? [Int])?.contains(1) == true,
                "\(js.output)")
        let nobody = freeLocalPort()
        let refused = try plexus(["storage", "discover", "127.0.0.1:\(nobody)"])
        #expect(refused.status != 0 && refused.output.contains("127.0.0.1:\(nobody)"), "\(refused.output)")
    }
}
