import Foundation
import PlexusStorage
import PlexusTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The export named `name` of `nbdinfo --json` output.
func nbdinfoExport(_ json: String) throws -> [String: Any] {
    let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
    let exports = object?["exports"] as? [[String: Any]]
    return try #require(exports?.first)
}

@Suite("NBD server with real clients")
struct NBDClientToolTests {
    @Test("nbdinfo --json shows the size, flags and block sizes of each export", .requiresTool("nbdinfo"))
    func nbdinfo() throws {
        let bed = try ServerBed()
        let (status, out) = try runTool(["nbdinfo", "--json", bed.uri])
        #expect(status == 0, "\(out)")
        let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
        #expect(json?["protocol"] as? String == "newstyle-fixed")
        #expect(json?["structured"] as? Bool == false)
        let e = try nbdinfoExport(out)
        #expect(e["export-size"] as? Int == ServerBed.size)
        #expect(e["is_read_only"] as? Bool == false && e["can_flush"] as? Bool == true && e["can_fua"] as? Bool == true)
        #expect(e["can_trim"] as? Bool == true && e["can_multi_conn"] as? Bool == true && e["can_zero"] as? Bool == false)
        #expect(e["block_size_minimum"] as? Int == 1 && e["block_size_preferred"] as? Int == 4096)
        #expect(e["block_size_maximum"] as? Int == 1 << 20)

        let (roStatus, roOut) = try runTool(["nbdinfo", "--json", "nbd+unix:///ro?socket=\(bed.socket)"])
        #expect(roStatus == 0, "\(roOut)")
        let ro = try nbdinfoExport(roOut)
        #expect(ro["is_read_only"] as? Bool == true && ro["can_trim"] as? Bool == false)

        let (listStatus, list) = try runTool(["nbdinfo", "--list", "--json", bed.uri])
        #expect(listStatus == 0, "\(list)")
        let names = ((try JSONSerialization.jsonObject(with: Data(list.utf8)) as? [String: Any])?["exports"] as? [[String: Any]])?
            .compactMap { $0["export-name"] as? String }
        #expect(names?.sorted() == ["", "ro"])
    }

    @Test("nbdcopy copies a random file into the export and back out, byte for byte", .requiresTool("nbdcopy"))
    func nbdcopy() throws {
        let bed = try ServerBed()
        let source = bed.dir.file("random.bin")
        let random = randomBytes(ServerBed.size)
        #expect(FileManager.default.createFile(atPath: source, contents: Data(random)))
        let (inStatus, inOut) = try runTool(["nbdcopy", "--flush", source, bed.uri])
        #expect(inStatus == 0, "\(inOut)")
        #expect(fileBytes(bed.image, 0..<ServerBed.size) == random, "the image holds the random file")
        let copy = bed.dir.file("copy.bin")
        let (outStatus, outOut) = try runTool(["nbdcopy", bed.uri, copy])
        #expect(outStatus == 0, "\(outOut)")
        #expect(fileBytes(copy, 0..<(ServerBed.size + 1)) == random)
        let (roStatus, _) = try runTool(["nbdcopy", source, "nbd+unix:///ro?socket=\(bed.socket)"])
        #expect(roStatus != 0, "copying into the read-only export fails")
        #expect(bed.server.statistics.snapshot.malformed == 0)
    }

    @Test("fio's nbd engine: random 4 KiB writes at queue depth 8, verified with crc32c", .requiresTool("fio"))
    func fio() throws {
        let bed = try ServerBed()
        let (status, out) = try runTool(["fio", "--name=plexus-nbd", "--ioengine=nbd", "--uri=\(bed.uri)", "--rw=randwrite",
                                         "--bs=4k", "--size=\(ServerBed.size)", "--iodepth=8", "--verify=crc32c",
                                         "--do_verify=1", "--verify_state_save=0", "--output-format=json"], seconds: 120)
        #expect(status == 0, "\(out)")
        let json = try JSONSerialization.jsonObject(with: Data(out.utf8.drop { $0 != UInt8(ascii: "{") })) as? [String: Any]
        let job = (json?["jobs"] as? [[String: Any]])?.first
        #expect(job?["error"] as? Int == 0)
        let written = (job?["write"] as? [String: Any])?["io_bytes"] as? Int
        #expect(written == ServerBed.size)
        #expect(bed.server.statistics.snapshot.writes >= UInt64(ServerBed.size / 4096) && bed.server.statistics.snapshot.errorReplies == 0)
    }

    @Test("nbdfuse, losetup, mkfs.ext4, mount: files written, unmounted, mounted again through a new chain and read back",
          .requiresRoot, .requiresTool("nbdfuse"), .requiresTool("losetup"), .requiresTool("mkfs.ext4"),
          .requiresTool("e2fsck"), .requiresTool("mount"), .requiresTool("umount"),
          .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse"))
    func mountedFileSystem() throws {
        FuseLoopChain.sweepStale()
        // Named like the chains' directories, so that a killed run's image is swept with them.
        let dir = TemporaryDirectory("plexus-nbdfuse-\(getpid())")
        let image = dir.file("disk.img")
        createSparseFile(image, size: 64 << 20)
        let server = NBDServer(socketPath: dir.file("nbd.sock"), exports: [try .file(path: image)])
        try server.start()
        defer { server.stop() }
        let files: [(String, [UInt8])] = [("big.bin", randomBytes(3 << 20)), ("small.bin", randomBytes(100_000)),
                                          ("hello.txt", Array("written through NBD\n".utf8))]
        do {
            let chain = FuseLoopChain(socket: server.socketPath)
            defer { chain.tearDown() }
            let loop = try chain.attach()
            let (mkfs, mkfsOut) = try runTool(["mkfs.ext4", "-q", "-F", loop], seconds: 120)
            try #require(mkfs == 0, "\(mkfsOut)")
            try chain.mount()
            try FileManager.default.createDirectory(atPath: "\(chain.mountPoint)/dir", withIntermediateDirectories: true)
            for (name, bytes) in files {
                #expect(FileManager.default.createFile(atPath: "\(chain.mountPoint)/dir/\(name)", contents: Data(bytes)))
            }
            _ = try runTool(["sync"])
            try chain.unmount()
            let (fsck, fsckOut) = try runTool(["e2fsck", "-fn", loop], seconds: 120)
            #expect(fsck == 0, "\(fsckOut)")
        }
        // A second chain over the same export: what was written went through NBD into the image.
        let chain = FuseLoopChain(socket: server.socketPath)
        defer { chain.tearDown() }
        _ = try chain.attach()
        try chain.mount()
        for (name, bytes) in files {
            let back = FileManager.default.contents(atPath: "\(chain.mountPoint)/dir/\(name)").map { [UInt8]($0) }
            #expect(back == bytes, "\(name)")
        }
        try chain.unmount()
        chain.tearDown()
        #expect(access(chain.dir, F_OK) != 0, "nothing is left: mounts, loop device, nbdfuse, directory")
        let stats = server.statistics.snapshot
        #expect(stats.errorReplies == 0 && stats.malformed == 0 && stats.bytesWritten > 3 << 20)
    }
}
