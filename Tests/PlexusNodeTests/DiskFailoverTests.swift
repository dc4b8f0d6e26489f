import Foundation
import PlexusCore
import PlexusLAN
import PlexusNode
import PlexusStorage
import PlexusTestSupport
import Testing

@Suite("Disks of a personality: served by both control nodes, exported by the processor, moved by failover", .serialized,
       .requiresIOUring)
struct DiskFailoverTests {
    @Test("a processor's disk is written through NBD; the processor is killed; the spare exports the same disk and reads it back",
          .requiresTool("nbdcopy"), .requiresTool("nbdinfo"))
    func diskMovesWithPersonality() throws {
        let v10 = VLANID(10)!
        var d = PlatformDefinition(controlNodes: [91, 92], processingNodes: [93, 94], vlans: [v10: [93]])
        d.spares = [94]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-disks-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = "\(dir)/lun0.img", size = 16 << 20
        #expect(FileManager.default.createFile(atPath: image, contents: nil))
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: image))
        try h.truncate(atOffset: UInt64(size))
        try h.close()
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        d.storage = [93: [StorageMapping(target: 0, lun: 0, path: image), StorageMapping(target: 0, lun: 1, path: "\(dir)/missing.img")]]
        let p = try LANPlatform(d, macState: state, disksDirectory: "\(dir)/disks")
        defer { p.stop() }

        #expect(waitUntil(seconds: 10) { p.disks(node: 93)["t0-l0"] != nil }, "node 93 exports its disk")
        // The mapping whose file does not exist is left out at both control nodes, and named.
        #expect(p.disks(node: 93)["t0-l1"] == nil)
        for c in p.controlNodes {
            let problems = try #require(c).storageProblems()
            #expect(problems.count == 1 && problems[0].contains("node 93's target 0 LUN 1 (\(dir)/missing.img) cannot be served"),
                    "\(problems)")
        }
        let socket93 = try #require(p.disks(node: 93)["t0-l0"])
        #expect(p.disks(node: 94).isEmpty, "the spare has no disk while it holds no personality")
        let (info, infoOut) = try runTool(["nbdinfo", "--size", "nbd+unix:///?socket=\(socket93)"])
        #expect(info == 0 && infoOut.trimmingCharacters(in: .whitespacesAndNewlines) == "\(size)", "\(infoOut)")

        var g = SplitMix64(seed: 9301)
        let data = (0..<(4 << 20)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
        let source = "\(dir)/written.bin", back = "\(dir)/back.bin"
        #expect(FileManager.default.createFile(atPath: source, contents: Data(data)))
        let (put, putOut) = try runTool(["nbdcopy", "--flush", source, "nbd+unix:///?socket=\(socket93)"], seconds: 60)
        #expect(put == 0, "\(putOut)")

        p.kill(node: 93)
        #expect(waitUntil(seconds: 10) { p.failovers(0).count == 1 && p.failovers(1).count == 1 })
        #expect(waitUntil(seconds: 10) { p.disks(node: 94)["t0-l0"] != nil }, "the spare exports the personality's disk")
        let socket94 = try #require(p.disks(node: 94)["t0-l0"])
        let (get, getOut) = try runTool(["nbdcopy", "nbd+unix:///?socket=\(socket94)", back], seconds: 60)
        #expect(get == 0, "\(getOut)")
        let read = (FileManager.default.contents(atPath: back).map { [UInt8]($0) }) ?? []
        #expect(read.count == size && Array(read.prefix(data.count)) == data ? true : false,
                "the spare reads the \(data.count) bytes node 93 wrote")
        let spare = try #require(p.processingNodes[94]?.disks)
        let counters = try p.processingNodes[94]!.thread.runAndWait { _ in spare.counters }
        print("Disk failover: node 93 wrote \(data.count) bytes to t0-l0 and was killed; after "
              + (p.failovers(0).first?.timeline ?? []).joined(separator: ", ") + ", node 94 exported t0-l0 and read it back: "
              + "\(counters.disks.submitted) SCSI commands, \(counters.disks.failed) failed")
    }

    @Test("two personalities with the same (target, LUN) reach different storage; neither reaches the other's",
          .requiresTool("nbdcopy"))
    func sameTargetAndLUNDifferentStorage() throws {
        let v10 = VLANID(10)!, v20 = VLANID(20)!
        var d = PlatformDefinition(controlNodes: [111, 112], processingNodes: [113, 114], vlans: [v10: [113], v20: [114]])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-pans-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let size = 1 << 20
        #expect(FileManager.default.createFile(atPath: dir + "/shop.img", contents: Data(repeating: 0x5A, count: size)))
        #expect(FileManager.default.createFile(atPath: dir + "/lab.img", contents: Data(repeating: 0xA5, count: size)))
        d.storage = [113: [StorageMapping(target: 0, lun: 0, path: dir + "/shop.img")],
                     114: [StorageMapping(target: 0, lun: 0, path: dir + "/lab.img")]]
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let p = try LANPlatform(d, macState: state, disksDirectory: dir + "/disks")
        defer { p.stop() }
        #expect(waitUntil(seconds: 10) { p.disks(node: 113)["t0-l0"] != nil && p.disks(node: 114)["t0-l0"] != nil })
        #expect(p.disks(node: 113).count == 1 && p.disks(node: 114).count == 1, "each sees its own map only")
        for (n, byte) in [(NodeNumber(113), UInt8(0x5A)), (NodeNumber(114), UInt8(0xA5))] {
            let socket = try #require(p.disks(node: n)["t0-l0"])
            let out = "\(dir)/read-\(n).bin"
            let (status, output) = try runTool(["nbdcopy", "nbd+unix:///?socket=\(socket)", out])
            #expect(status == 0, "\(output)")
            let data = FileManager.default.contents(atPath: out) ?? Data()
            #expect(data.count == size && data.allSatisfy { $0 == byte }, "node \(n)'s (0, 0) is its own storage")
        }
    }

    @Test("ext4 on a processor's disk: files written and synced, the processor killed, the spare mounts the same file system and every file reads back",
          .requiresRoot, .requiresTool("nbdfuse"), .requiresTool("losetup"), .requiresTool("mkfs.ext4"),
          .requiresTool("e2fsck"), .requiresTool("mount"), .requiresTool("umount"),
          .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse"))
    func fileSystemMovesWithPersonality() throws {
        try fileSystemFailover(name: "platform") { image in image }
    }

    @Test("ext4 on a LUN of an iSCSI SAN (tgtd) behind the control nodes: files written and synced, the processor killed, the spare mounts the same file system and every file reads back",
          .requiresRoot, .requiresTool("tgtd"), .requiresTool("tgtadm"), .requiresTool("nbdfuse"), .requiresTool("losetup"),
          .requiresTool("mkfs.ext4"), .requiresTool("e2fsck"), .requiresTool("mount"), .requiresTool("umount"),
          .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse"))
    func fileSystemOnTheSANMovesWithPersonality() throws {
        var san: ISCSITargetDaemon?
        defer { san?.kill() }
        try fileSystemFailover(name: "san") { image in
            let daemon = try ISCSITargetDaemon(backing: image)
            san = daemon
            return daemon.url
        }
    }

    @Test("a SAN LUN that goes away while assigned is an event at both control nodes naming the node, the LUN and the URL; its return is one too",
          .requiresRoot, .requiresTool("tgtd"), .requiresTool("tgtadm"))
    func sanLossIsNamed() throws {
        let v10 = VLANID(10)!
        var d = PlatformDefinition(controlNodes: [121, 122], processingNodes: [123], vlans: [v10: [123]])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-sanloss-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(FileManager.default.createFile(atPath: dir + "/lun.img", contents: Data(count: 4 << 20)))
        let san = try ISCSITargetDaemon(backing: dir + "/lun.img")
        defer { san.kill() }
        d.storage = [123: [StorageMapping(target: 2, lun: 5, path: san.url)]]
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let p = try LANPlatform(d, macState: state, disksDirectory: dir + "/disks")
        defer { p.stop() }
        #expect(waitUntil(seconds: 10) { p.disks(node: 123)["t2-l5"] != nil })
        san.kill()
        let down = "storage: node 123's target 2 LUN 5 (\(san.url)) is DOWN"
        for c in p.controlNodes {
            let control = try #require(c)
            #expect(waitUntil(seconds: 10) { ((try? control.storageProblems()) ?? []).contains { $0.hasPrefix(down) } },
                    "\((try? control.storageProblems()) ?? [])")
        }
        try san.start()
        let up = "storage: node 123's target 2 LUN 5 (\(san.url)) is up again"
        for k in 0..<2 {
            #expect(waitUntil(seconds: 15) { ((try? p.server(k) { Array($0.log.suffix(20)) }) ?? []).contains { $0.contains(up) } })
        }
        print("SAN loss named: \((try? p.controlNodes[0]!.storageProblems().last) ?? nil ?? "?")")
    }

    /// Node 103's personality has (target 0, LUN 0) on a 64 MiB image, through `storage(image)`
    /// (the image itself, or a SAN LUN on it): ext4 made and mounted there, files written and
    /// synced, node 103 killed with the file system mounted, and the spare, node 104, mounts it.
    func fileSystemFailover(name: String, storage: (String) throws -> String) throws {
        FuseLoopChain.sweepStale()
        let v10 = VLANID(10)!
        var d = PlatformDefinition(controlNodes: [101, 102], processingNodes: [103, 104], vlans: [v10: [103]])
        d.spares = [104]
        // Named like the chains' directories, so that a killed run's leftovers are swept with them.
        let dir = "\(fuseTestPrefix)\(getpid())-\(name)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = "\(dir)/lun0.img"
        #expect(FileManager.default.createFile(atPath: image, contents: nil))
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: image))
        try h.truncate(atOffset: 64 << 20)
        try h.close()
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let path = try storage(image)
        d.storage = [103: [StorageMapping(target: 0, lun: 0, path: path)]]
        let p = try LANPlatform(d, macState: state, disksDirectory: "\(dir)/disks")
        defer { p.stop() }
        #expect(waitUntil(seconds: 10) { p.disks(node: 103)["t0-l0"] != nil }, "\(p.diskProblem(node: 103) ?? "")")
        let socket = try #require(p.disks(node: 103)["t0-l0"])
        var g = SplitMix64(seed: 10301)
        let files: [(String, [UInt8])] = [
            ("big.bin", (0..<(3 << 20)).map { _ in UInt8(truncatingIfNeeded: g.next()) }),
            ("notes.txt", Array("written by node 103 before it was killed\n".utf8)),
        ]
        do {
            let chain = FuseLoopChain(socket: socket)
            defer { chain.tearDown() }
            let loop = try chain.attach()
            let (mkfs, mkfsOut) = try runTool(["mkfs.ext4", "-q", "-F", loop], seconds: 120)
            try #require(mkfs == 0, "\(mkfsOut)")
            try chain.mount()
            for (name, bytes) in files {
                #expect(FileManager.default.createFile(atPath: "\(chain.mountPoint)/\(name)", contents: Data(bytes)))
            }
            _ = try runTool(["sync", "-f", "\(chain.mountPoint)/big.bin"])
            // kill -9 of the processor while its file system is mounted: the chain over its
            // socket dies with it and is torn down.
            p.kill(node: 103)
        }
        #expect(waitUntil(seconds: 10) { p.failovers(0).count == 1 && p.failovers(1).count == 1 })
        #expect(waitUntil(seconds: 10) { p.disks(node: 104)["t0-l0"] != nil },
                "the spare exports the personality's disk: \(p.diskProblem(node: 104) ?? "")")
        let chain = FuseLoopChain(socket: try #require(p.disks(node: 104)["t0-l0"]))
        defer { chain.tearDown() }
        let loop = try chain.attach()
        try chain.mount()
        for (name, bytes) in files {
            let back = FileManager.default.contents(atPath: "\(chain.mountPoint)/\(name)").map { [UInt8]($0) }
            #expect(back?.count == bytes.count && back == bytes, "\(name) reads back at the spare")
        }
        try chain.unmount()
        let (fsck, fsckOut) = try runTool(["e2fsck", "-fn", loop], seconds: 120)
        #expect(fsck == 0, "\(fsckOut)")
        print("File system failover (\(path)): node 103 wrote \(files.map(\.1.count).reduce(0, +)) bytes in \(files.count) files on "
              + "ext4 over its disk and was killed; node 104's take-over: " + (p.failovers(0).first?.timeline ?? []).joined(separator: ", ")
              + "; node 104 mounted the same file system, every file matched, e2fsck clean")
    }
}
