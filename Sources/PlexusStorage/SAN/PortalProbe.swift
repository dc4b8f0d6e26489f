#if canImport(Glibc)
import Glibc
#endif

/// A TCP connection attempt to an iSCSI portal before libiscsi's login, at setup: libiscsi's
/// synchronous login reports a portal that does not answer only as "Can not reconnect right
/// now", and waits as long as the kernel's connect does for a portal that drops SYNs. The probe
/// names the cause (refused, unreachable, no answer within the time-out) and bounds the wait.
enum PortalProbe {
    /// Nil when a TCP connection to the portal opened (and was closed) within `milliseconds`;
    /// otherwise why not.
    static func failure(_ url: ISCSIURL, milliseconds: Int32 = 3000) -> String? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(url.host, String(url.port), &hints, &list)
        guard rc == 0, let first = list else {
            return "cannot resolve \(url.host): \(String(cString: gai_strerror(rc)))"
        }
        defer { freeaddrinfo(list) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
                            | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return "socket: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        if connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 { return nil }
        guard errno == EINPROGRESS else { return "portal \(url.portal): \(String(cString: strerror(errno)))" }
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let n = poll(&p, 1, milliseconds)
        guard n > 0 else { return "portal \(url.portal) did not answer within \(milliseconds) ms" }
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        return err == 0 ? nil : "portal \(url.portal): \(String(cString: strerror(err)))"
    }
}
