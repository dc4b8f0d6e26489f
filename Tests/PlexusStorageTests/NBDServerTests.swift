import Foundation
import PlexusCore
import PlexusStorage
import PlexusTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A server of a 4 MiB patterned file ("", writable) and of the same file read-only ("ro"),
/// in a temporary directory; stopped when dropped.
final class ServerBed {
    let dir = TemporaryDirectory("plexus-nbd")
    let image: String
    let socket: String
    let server: NBDServer
    static let size = 4 << 20

    init(maxPayload: Int = 1 << 20) throws {
        image = dir.file("disk.img")
        socket = dir.file("nbd.sock")
        writePatternFile(image, size: Self.size)
        server = NBDServer(socketPath: socket, exports: [try .file(path: image), try .file(path: image, name: "ro", readOnly: true)],
                           maxPayload: maxPayload)
        try server.start()
    }

    deinit { server.stop() }

    var uri: String { "nbd+unix:///?socket=\(socket)" }

    func client() -> NBDTestClient? { NBDTestClient(socketPath: socket) }
}

@Suite("NBD server on a Unix socket")
struct NBDServerTests {
    @Test("reads, writes with and without FUA, flushes and trims reach the file; errors keep the connection")
    func requests() throws {
        let bed = try ServerBed()
        let c = try #require(bed.client())
        let export = try #require(c.go())
        #expect(export.size == UInt64(ServerBed.size) && export.flags == 0x012D, "HAS_FLAGS FLUSH FUA TRIM MULTI_CONN")

        c.request(NBDProtocol.cmdRead, handle: 1, offset: 1000, length: 3000)
        let read = c.reply()
        #expect(read?.error == 0 && read?.handle == 1)
        #expect(c.receive(3000) == (1000..<4000).map { pattern($0) })

        let data = [UInt8](repeating: 0x5A, count: 8192)
        c.request(NBDProtocol.cmdWrite, handle: 2, offset: 65536, length: 8192, payload: data)
        #expect(c.reply()?.error == 0)
        c.request(NBDProtocol.cmdWrite, handle: 3, offset: 0, length: 512, flags: NBDProtocol.cmdFlagFUA,
                  payload: [UInt8](repeating: 0xA5, count: 512))
        #expect(c.reply()?.error == 0)
        #expect(fileBytes(bed.image, 65536..<73728) == data && fileBytes(bed.image, 0..<512) == [UInt8](repeating: 0xA5, count: 512))
        c.request(NBDProtocol.cmdFlush, handle: 4)
        #expect(c.reply()?.handle == 4)
        c.request(NBDProtocol.cmdTrim, handle: 5, offset: 1 << 20, length: 1 << 20, flags: NBDProtocol.cmdFlagFUA)
        #expect(c.reply()?.error == 0)
        #expect(fileBytes(bed.image, (1 << 20)..<(2 << 20)).allSatisfy { $0 == 0 })

        // Refusals: each answered, the connection goes on.
        c.request(NBDProtocol.cmdRead, handle: 6, offset: UInt64(ServerBed.size) - 100, length: 200)
        #expect(c.reply()?.error == NBDProtocol.errInvalid)
        c.request(NBDProtocol.cmdWrite, handle: 7, offset: UInt64(ServerBed.size), length: 512, payload: [UInt8](repeating: 1, count: 512))
        #expect(c.reply()?.error == NBDProtocol.errNoSpace, "the payload was read and dropped")
        c.request(NBDProtocol.cmdRead, handle: 8, length: (1 << 20) + 1)
        #expect(c.reply()?.error == NBDProtocol.errInvalid, "over the 1 MiB payload limit")
        c.request(NBDProtocol.cmdWrite, handle: 9, length: (1 << 20) + 512, payload: [UInt8](repeating: 2, count: (1 << 20) + 512))
        #expect(c.reply()?.error == NBDProtocol.errInvalid, "an oversized payload is drained, not written")
        c.request(6, handle: 10, length: 512)
        #expect(c.reply()?.error == NBDProtocol.errInvalid, "WRITE_ZEROES is not offered")
        c.request(NBDProtocol.cmdRead, handle: 11, length: 4)
        #expect(c.reply()?.handle == 11 && c.receive(4) == [0xA5, 0xA5, 0xA5, 0xA5])
        c.request(NBDProtocol.cmdDisconnect, handle: 12)
        #expect(c.closedByServer)
        #expect(fileBytes(bed.image, 0..<512) == [UInt8](repeating: 0xA5, count: 512) && fileBytes(bed.image, 512..<1024) == (512..<1024).map { pattern($0) })

        let s = bed.server.statistics.snapshot
        #expect(s.requests == 12 && s.reads == 2 && s.writes == 2 && s.flushes == 1 && s.trims == 1)
        #expect(s.bytesRead == 3004 && s.bytesWritten == 8704 && s.errorReplies == 5 && s.malformed == 0)
    }

    @Test("a read-only export refuses writes and trims with EPERM")
    func readOnly() throws {
        let bed = try ServerBed()
        let c = try #require(bed.client())
        let export = try #require(c.go("ro"))
        #expect(export.flags & NBDProtocol.flagReadOnly != 0 && export.flags & NBDProtocol.flagSendTrim == 0)
        c.request(NBDProtocol.cmdWrite, handle: 1, length: 512, payload: [UInt8](repeating: 1, count: 512))
        #expect(c.reply()?.error == NBDProtocol.errPerm)
        c.request(NBDProtocol.cmdTrim, handle: 2, length: 512)
        #expect(c.reply()?.error == NBDProtocol.errPerm)
        c.request(NBDProtocol.cmdRead, handle: 3, length: 16)
        #expect(c.reply()?.error == 0 && c.receive(16) == (0..<16).map { pattern($0) })
        #expect(fileBytes(bed.image, 0..<512) == (0..<512).map { pattern($0) })
    }

    @Test("protocol violations end the connection and are counted; the server serves the next client")
    func violations() throws {
        let bed = try ServerBed()
        let badFlags = try #require(bed.client())
        #expect(badFlags.greet(flags: 0x80) != nil && badFlags.closedByServer)

        let badOption = try #require(bed.client())
        #expect(badOption.greet() != nil)
        badOption.send([UInt8](repeating: 0x11, count: 16))
        #expect(badOption.closedByServer)

        let hugeOption = try #require(bed.client())
        #expect(hugeOption.greet() != nil)
        hugeOption.send(NBDTestClient.be(NBDProtocol.optionMagic) + NBDTestClient.be(UInt32(99)) + NBDTestClient.be(UInt32(1 << 30)))
        #expect(hugeOption.closedByServer)

        let badRequest = try #require(bed.client())
        #expect(badRequest.go() != nil)
        badRequest.send([UInt8](repeating: 0, count: 28))
        #expect(badRequest.closedByServer)

        let unknown = try #require(bed.client())
        #expect(unknown.greet() != nil)
        unknown.option(NBDProtocol.optExportName, Array("missing".utf8))
        #expect(unknown.closedByServer, "no error reply exists for NBD_OPT_EXPORT_NAME")

        let aborting = try #require(bed.client())
        #expect(aborting.greet() != nil)
        aborting.option(NBDProtocol.optAbort)
        #expect(aborting.optionReply()?.type == NBDProtocol.repAck && aborting.closedByServer)

        #expect(waitUntil(seconds: 5) { bed.server.statistics.snapshot.malformed == 4 })
        let good = try #require(bed.client())
        #expect(good.go() != nil)
        good.request(NBDProtocol.cmdFlush, handle: 1)
        #expect(good.reply()?.error == 0)
    }

    @Test("stop ends every connection, waits for them and removes the socket; a stale socket file is replaced")
    func stop() throws {
        let bed = try ServerBed()
        let a = try #require(bed.client())
        let b = try #require(bed.client())
        #expect(a.go() != nil && b.greet() != nil)
        #expect(waitUntil(seconds: 5) { bed.server.activeConnections == 2 })
        bed.server.stop()
        #expect(bed.server.activeConnections == 0 && a.closedByServer && b.closedByServer)
        #expect(access(bed.socket, F_OK) != 0, "the socket file is gone")
        bed.server.stop()

        // A socket file nothing listens on (a server that was killed) is replaced...
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(bed.socket.utf8))
        }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        close(stale)
        #expect(access(bed.socket, F_OK) == 0)
        let again = NBDServer(socketPath: bed.socket, exports: bed.server.exports)
        try again.start()
        defer { again.stop() }
        // ...but one a server answers on is not taken over.
        let rival = NBDServer(socketPath: bed.socket, exports: bed.server.exports)
        #expect(throws: PlexusError.self) { try rival.start() }
        #expect(NBDTestClient(socketPath: bed.socket)?.go() != nil)

        // A path that holds anything but a socket is never replaced.
        let notASocket = bed.dir.file("not-a-socket")
        _ = FileManager.default.createFile(atPath: notASocket, contents: Data("keep me".utf8))
        #expect(throws: PlexusError.self) { try NBDServer(socketPath: notASocket, exports: bed.server.exports).start() }
        #expect(FileManager.default.contents(atPath: notASocket) == Data("keep me".utf8))
    }
}
