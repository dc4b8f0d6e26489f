import Foundation
import PlexusStorage
#if canImport(Glibc)
import Glibc
#endif

/// A minimal NBD client over a Unix socket, for protocol tests: it sends exactly the bytes a
/// test asks for and reads replies field by field.
final class NBDTestClient {
    let fd: Int32

    init?(socketPath: String) {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let b = Array(socketPath.utf8)
            raw.copyBytes(from: b)
            raw[b.count] = 0
        }
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
        guard ok else {
            close(fd)
            return nil
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Ends the connection at once (the server sees it closed), without waiting for replies.
    func disconnect() { shutdown(fd, Int32(SHUT_RDWR)) }

    func send(_ bytes: [UInt8]) {
        var done = 0
        while done < bytes.count {
            let r = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
            if r <= 0 { return }
            done += r
        }
    }

    /// Exactly `n` bytes, or nil when the server closed (or 10 s passed) first.
    func receive(_ n: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: n)
        var done = 0
        while done < n {
            let r = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, n - done, 0) }
            if r <= 0 { return nil }
            done += r
        }
        return out
    }

    func receive<T: FixedWidthInteger>(_: T.Type) -> T? {
        guard let b = receive(MemoryLayout<T>.size) else { return nil }
        return b.reduce(T(0)) { $0 << 8 | T($1) }
    }

    /// Whether the server has closed the connection: a read returns end of file, or a reset (a
    /// server that closes with bytes it did not read resets the connection).
    var closedByServer: Bool {
        var b: UInt8 = 0
        let r = recv(fd, &b, 1, 0)
        return r == 0 || (r < 0 && errno == ECONNRESET)
    }

    static func be<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }

    /// Reads the greeting and answers with `flags`; the greeting's handshake flags.
    func greet(flags: UInt32 = NBDProtocol.clientFixedNewstyle | NBDProtocol.clientNoZeroes) -> UInt16? {
        guard receive(UInt64.self) == NBDProtocol.initMagic, receive(UInt64.self) == NBDProtocol.optionMagic,
              let serverFlags = receive(UInt16.self)
        else { return nil }
        send(Self.be(flags))
        return serverFlags
    }

    func option(_ option: UInt32, _ data: [UInt8] = []) {
        send(Self.be(NBDProtocol.optionMagic) + Self.be(option) + Self.be(UInt32(data.count)) + data)
    }

    /// One option reply: (option, type, data), nil on a bad magic or a closed connection.
    func optionReply() -> (option: UInt32, type: UInt32, data: [UInt8])? {
        guard receive(UInt64.self) == NBDProtocol.optionReplyMagic, let option = receive(UInt32.self),
              let type = receive(UInt32.self), let length = receive(UInt32.self), let data = receive(Int(length))
        else { return nil }
        return (option, type, data)
    }

    /// NBD_OPT_GO data for `name` with information requests `infos`.
    static func goData(_ name: String, infos: [UInt16] = []) -> [UInt8] {
        be(UInt32(name.utf8.count)) + Array(name.utf8) + be(UInt16(infos.count)) + infos.flatMap { be($0) }
    }

    /// Handshakes into transmission on `name` with NBD_OPT_GO; the export's size and flags.
    func go(_ name: String = "") -> (size: UInt64, flags: UInt16)? {
        guard greet() != nil else { return nil }
        option(NBDProtocol.optGo, Self.goData(name, infos: [NBDProtocol.infoBlockSize]))
        var size: UInt64?, flags: UInt16?
        while let r = optionReply() {
            if r.type == NBDProtocol.repAck { break }
            guard r.type == NBDProtocol.repInfo else { return nil }
            if r.data.count == 12 && r.data[0] == 0 && r.data[1] == 0 {
                size = r.data[2..<10].reduce(0) { $0 << 8 | UInt64($1) }
                flags = UInt16(r.data[10]) << 8 | UInt16(r.data[11])
            }
        }
        guard let size, let flags else { return nil }
        return (size, flags)
    }

    func request(_ type: UInt16, handle: UInt64, offset: UInt64 = 0, length: UInt32 = 0, flags: UInt16 = 0,
                 payload: [UInt8] = []) {
        send(Self.be(NBDProtocol.requestMagic) + Self.be(flags) + Self.be(type) + Self.be(handle) + Self.be(offset)
             + Self.be(length) + payload)
    }

    /// A simple reply's (error, handle), nil on a bad magic or a closed connection.
    func reply() -> (error: UInt32, handle: UInt64)? {
        guard receive(UInt32.self) == NBDProtocol.simpleReplyMagic, let error = receive(UInt32.self),
              let handle = receive(UInt64.self)
        else { return nil }
        return (error, handle)
    }
}
