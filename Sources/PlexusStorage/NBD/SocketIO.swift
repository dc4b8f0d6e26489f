#if canImport(Glibc)
import Glibc
#endif

/// Blocking stream-socket I/O for the NBD server: whole reads and writes, retried on EINTR,
/// never raising SIGPIPE. The pointers are the callers' and live only for the call.
enum SocketIO {
    /// Why a transfer stopped.
    enum Failure: Error, Sendable, Hashable {
        /// The peer closed the connection (possibly in the middle).
        case closed
        case errno(Int32)
    }

    /// Reads exactly `count` bytes into `p`.
    static func read(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ count: Int) throws(Failure) {
        var done = 0
        while done < count {
            let r = recv(fd, p + done, count - done, 0)
            if r > 0 {
                done += r
            } else if r == 0 {
                throw .closed
            } else if errno != EINTR {
                throw errno == ECONNRESET ? .closed : .errno(errno)
            }
        }
    }

    /// Reads and drops `count` bytes, through `scratch` (`scratchSize` bytes).
    static func discard(_ fd: Int32, _ count: Int, scratch: UnsafeMutableRawPointer, scratchSize: Int) throws(Failure) {
        var left = count
        while left > 0 {
            let n = min(left, scratchSize)
            try read(fd, scratch, n)
            left -= n
        }
    }

    /// Writes `first` (and then `second`, when given) completely, in as few calls as the kernel
    /// allows (sendmsg with two iovecs).
    static func write(_ fd: Int32, _ first: UnsafeRawBufferPointer,
                      _ second: UnsafeRawBufferPointer? = nil) throws(Failure) {
        var a = first, b = second ?? UnsafeRawBufferPointer(start: nil, count: 0)
        while a.count + b.count > 0 {
            var iov = (iovec(iov_base: UnsafeMutableRawPointer(mutating: a.baseAddress), iov_len: a.count),
                       iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count))
            let r: Int = withUnsafeMutableBytes(of: &iov) { raw in
                var m = msghdr()
                let vectors = raw.baseAddress!.assumingMemoryBound(to: iovec.self)
                m.msg_iov = a.count > 0 ? vectors : vectors + 1
                m.msg_iovlen = a.count > 0 ? (b.count > 0 ? 2 : 1) : 1
                return sendmsg(fd, &m, Int32(MSG_NOSIGNAL))
            }
            if r < 0 {
                if errno == EINTR { continue }
                throw errno == EPIPE || errno == ECONNRESET ? .closed : .errno(errno)
            }
            var sent = r
            let fromA = min(sent, a.count)
            a = UnsafeRawBufferPointer(rebasing: a[fromA...])
            sent -= fromA
            if sent > 0 { b = UnsafeRawBufferPointer(rebasing: b[sent...]) }
        }
    }

    /// Writes `bytes` completely.
    static func write(_ fd: Int32, _ bytes: [UInt8]) throws(Failure) {
        var failure: Failure?
        bytes.withUnsafeBytes { raw in
            do throws(Failure) { try write(fd, raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Reads a big-endian integer.
    static func read<T: FixedWidthInteger>(_ fd: Int32, as _: T.Type) throws(Failure) -> T {
        var v: T = 0
        var failure: Failure?
        withUnsafeMutableBytes(of: &v) { raw in
            do throws(Failure) { try read(fd, raw.baseAddress!, raw.count) } catch { failure = error }
        }
        if let failure { throw failure }
        return T(bigEndian: v)
    }

    /// Whether something accepts connections on the Unix socket at `path`.
    static func answers(_ path: String) -> Bool {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return false }
        defer { close(probe) }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
    }

    /// A listening Unix stream socket at `path`. A socket file left by a server that is gone
    /// (nothing accepts on it) is replaced; one that still answers is an error (EADDRINUSE), and
    /// so is anything at the path that is not a socket (EEXIST).
    static func listen(at path: String, backlog: Int32 = 16) throws(Failure) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { throw .errno(ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.size)
        var existing = stat()
        if lstat(path, &existing) == 0 {
            // Only a socket file is ever replaced; anything else at the path is left alone.
            guard existing.st_mode & S_IFMT == S_IFSOCK else { throw .errno(EEXIST) }
            guard !answers(path) else { throw .errno(EADDRINUSE) }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .errno(errno) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0, Glibc.listen(fd, backlog) == 0 else {
            let e = errno
            close(fd)
            throw .errno(e)
        }
        return fd
    }
}

/// Starts `body` on a new detached thread. The closure is retained until the thread runs it.
func startThread(_ body: @escaping @Sendable () -> Void) throws(SocketIO.Failure) -> pthread_t {
    final class Box: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var tid = pthread_t()
    let rc = pthread_create(&tid, nil, { arg in
        let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
        box.body()
        return nil
    }, box)
    guard rc == 0 else {
        Unmanaged<Box>.fromOpaque(box).release()
        throw .errno(rc)
    }
    return tid
}
