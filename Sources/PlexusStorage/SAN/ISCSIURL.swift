/// A LUN on an iSCSI SAN, as libiscsi names it: `iscsi://host[:port]/target-iqn/lun`
/// (port 3260 by default; an IPv6 host in brackets). Parsed and checked before anything
/// connects, so a bad one is refused naming the part that is wrong. Credentials in the URL
/// (`user%password@`) are not accepted: a storage map is not a place for secrets.
public struct ISCSIURL: Sendable, Hashable, CustomStringConvertible {
    /// The host name or address (without brackets).
    public var host: String
    public var port: Int
    /// The target's name (`iqn.…`, `eui.…` or `naa.…`).
    public var target: String
    public var lun: Int

    /// The portal as libiscsi takes it: `host:port`, `[v6]:port`.
    public var portal: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    public var description: String { "iscsi://\(portal)/\(target)/\(lun)" }

    /// A portal given as `host[:port]` (an IPv6 host in brackets), checked as a URL's host and
    /// port are and written as ``portal`` writes it (the port always present).
    /// - Throws: ``ISCSIError/badURL(_:reason:)`` when it is not a host and port.
    public static func portal(_ hostPort: String) throws(ISCSIError) -> String {
        try ISCSIURL("iscsi://\(hostPort)/iqn.portal/0").portal
    }

    /// Whether `path` names an iSCSI LUN (a storage mapping's path that starts with `iscsi://`).
    public static func isISCSI(_ path: String) -> Bool { path.hasPrefix("iscsi://") }

    /// Parses `text`.
    /// - Throws: ``ISCSIError/badURL(_:reason:)`` naming what is wrong.
    public init(_ text: String) throws(ISCSIError) {
        func bad(_ reason: String) -> ISCSIError { .badURL(text, reason: reason) }
        guard text.hasPrefix("iscsi://") else { throw bad("it does not start with iscsi://") }
        let rest = text.dropFirst("iscsi://".count)
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw bad("expected iscsi://host[:port]/target-iqn/lun, found \(parts.count - 1) path parts")
        }
        let authority = parts[0], target = parts[1], lunText = parts[2]
        guard !authority.contains("@") else { throw bad("credentials in the URL are not accepted") }
        var host: Substring
        var portText: Substring? = nil
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw bad("an IPv6 host without its closing ]") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw bad("unexpected '\(after)' after the IPv6 host") }
                portText = after.dropFirst()
            }
        } else if let colon = authority.firstIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw bad("no host") }
        guard host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" || $0 == "_" }) else {
            throw bad("host '\(host)' has characters a host name cannot have")
        }
        var port = 3260
        if let p = portText {
            guard let n = Int(p), (1...65535).contains(n) else { throw bad("port '\(p)' is not 1…65535") }
            port = n
        }
        guard !target.isEmpty else { throw bad("no target name") }
        let lower = target.lowercased()
        guard lower.hasPrefix("iqn.") || lower.hasPrefix("eui.") || lower.hasPrefix("naa.") else {
            throw bad("target '\(target)' is not an iSCSI name (iqn.…, eui.… or naa.…)")
        }
        guard target.utf8.count <= 223, !target.contains(where: { $0.isWhitespace }) else {
            throw bad("target '\(target)' is longer than 223 bytes or has white space")
        }
        guard let lun = Int(lunText), (0...16383).contains(lun) else {
            throw bad("LUN '\(lunText)' is not a number 0…16383")
        }
        self.host = String(host)
        self.port = port
        self.target = String(target)
        self.lun = lun
    }
}

/// Why an iSCSI LUN could not be used, naming it.
public enum ISCSIError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The URL is malformed.
    case badURL(String, reason: String)
    /// The portal did not answer, refused the login, or has no such target or LUN.
    case cannotLogIn(String, reason: String)
    /// The LUN's geometry could not be read, or is not usable.
    case badGeometry(String, reason: String)
    /// The session could not be set up (memory, a libiscsi context).
    case resources(String, reason: String)

    public var description: String {
        switch self {
        case .badURL(let u, let r): "bad iSCSI URL '\(u)': \(r)"
        case .cannotLogIn(let u, let r): "cannot log in to \(u): \(r)"
        case .badGeometry(let u, let r): "cannot use \(u): \(r)"
        case .resources(let u, let r): "cannot set up a session for \(u): \(r)"
        }
    }
}
