import Foundation
import PlexusCore
import Synchronization

/// Real fabrics on one machine, for the platform's main job, its tests and its benchmarks: each
/// node in its own network namespace, fabric A and fabric B as two Linux bridges, each node joined to each bridge by a veth pair. A fabric (or one node's cable
/// to it) fails with `ip link set … down`. Needs root and iproute2; CI runs as root.
///
/// With `linkMTU` above 1500 the bridges and veths carry datagrams that large, so a 16896-byte
/// Plexus frame crosses in one datagram (`pathMTU` of ``configuration(node:)`` follows).
///
/// Addresses come from 198.18.0.0/15, the range RFC 2544 sets aside for benchmarking: fabric A
/// is 198.18.1.N/24 and fabric B 198.18.2.N/24, and they exist only inside these namespaces.
public final class NamespaceFabric {
    public let prefix: String
    public let nodes: Int
    public let linkMTU: Int
    private var namespaces: [String] = []
    private var bridges: [String] = []
    private var hostVeths: [String] = []

    /// Why the harness cannot run here, or nil when it can.
    public static let unavailableReason: String? = {
        if getuid() != 0 { return "network namespaces need root (CI runs as root)" }
        if (try? run(["ip", "-V"])) == nil { return "iproute2 (`ip`) is not installed (scripts/setup.sh installs it)" }
        return nil
    }()

    /// Fabrics this process made so far (each gets a letter in its prefix).
    private static let made = Mutex(0)

    /// The prefix of a new fabric's names: `px`, this process's pid, and a letter or two that
    /// tell this process's fabrics apart (`px4711a`): whose leftovers a name is shows in
    /// `ip netns list` and `ip link`, and ``Leftovers`` lists each name for `plexus cleanup`.
    static func newPrefix() -> String {
        var k = made.withLock { m in
            defer { m += 1 }
            return m
        }
        var letters = ""
        repeat {
            letters = String(UnicodeScalar(UInt8(97 + k % 26))) + letters
            k = k / 26 - 1
        } while k >= 0
        return "px\(getpid())\(letters)"
    }

    /// The most nodes a fabric holds: node `n` is 198.18.1.`n` and 198.18.2.`n` in a /24, and
    /// .254 is the router's (``putBehindRouter(node:fabric:)``).
    public static let maximumNodes = 253

    /// Creates the bridges and, for each of nodes 1...`nodes` (at most ``maximumNodes``), a
    /// namespace joined to both.
    public init(nodes: Int, linkMTU: Int = 1500) throws {
        guard (1...Self.maximumNodes).contains(nodes) else {
            throw PlexusError(.configuration, "a namespace fabric holds 1...\(Self.maximumNodes) nodes (198.18.1.N/24), not \(nodes)")
        }
        prefix = Self.newPrefix()
        self.nodes = nodes
        self.linkMTU = linkMTU
        // Interface names hold at most 15 bytes (IFNAMSIZ - 1).
        let longest = "\(prefix)\(nodes)an"
        guard longest.utf8.count <= 15 else {
            throw PlexusError(.configuration, "interface name \(longest) would be longer than 15 bytes (fewer nodes, or fewer fabrics in this process)")
        }
        do {
            for f in Fabric.allCases {
                let br = bridge(f)
                try Leftovers.shared.creating(.link(br)) {
                    try Self.run(["ip", "link", "add", br, "mtu", "\(linkMTU)", "type", "bridge"])
                }
                bridges.append(br)
                try Self.run(["ip", "link", "set", br, "up"])
            }
            for n in 1...nodes {
                let ns = namespace(n)
                try Leftovers.shared.creating(.namespace(ns)) { try Self.run(["ip", "netns", "add", ns]) }
                namespaces.append(ns)
                try Self.run(["ip", "-n", ns, "link", "set", "lo", "up"])
                for f in Fabric.allCases {
                    try plug(ns, host: hostVeth(n, f), inside: adapter(n, f), into: bridge(f), address: ip(n, f))
                }
            }
        } catch {
            teardown()
            throw error
        }
    }

    /// Gives node `n` a second adapter on fabric `f`: another veth into the fabric's bridge,
    /// with address ``alternateIP(_:_:)`` (seed 003: a node with a primary and an alternate
    /// address). Returns the name of the veth end inside the namespace; the primary's is
    /// ``adapter(_:_:)``.
    @discardableResult
    public func addAlternateAdapter(node n: Int, fabric f: Fabric) throws -> String {
        let inside = "\(prefix)\(n)\(f)2n".lowercased()
        try plug(namespace(n), host: "\(prefix)\(n)\(f)2h".lowercased(), inside: inside, into: bridge(f),
                 address: alternateIP(n, f))
        return inside
    }

    /// A veth pair: `host` in this namespace joined to `bridge`, `inside` in namespace `ns` with
    /// `address`/24, both up.
    private func plug(_ ns: String, host: String, inside: String, into bridge: String, address: String) throws {
        try Leftovers.shared.creating(.link(host)) {
            try Self.run(["ip", "link", "add", host, "mtu", "\(linkMTU)", "type", "veth", "peer", "name", inside,
                          "mtu", "\(linkMTU)"])
        }
        hostVeths.append(host)
        try Self.run(["ip", "link", "set", inside, "netns", ns])
        try Self.run(["ip", "link", "set", host, "master", bridge])
        try Self.run(["ip", "link", "set", host, "up"])
        try Self.run(["ip", "-n", ns, "addr", "add", "\(address)/24", "dev", inside])
        try Self.run(["ip", "-n", ns, "link", "set", inside, "up"])
    }

    /// Moves node `n`'s adapter on fabric `f` to a subnet of its own behind a router: a second
    /// bridge for the fabric, a router namespace joined to both bridges that forwards between
    /// them, and node `n` re-addressed as ``routedIP(_:_:)`` on the new bridge. Nothing routes
    /// between the subnets but the router, and no namespace has a route through it: the nodes
    /// must set their own (seed 003's gateways). Returns the router's address on each side, the
    /// fabric's main subnet first.
    @discardableResult
    public func putBehindRouter(node n: Int, fabric f: Fabric) throws -> (main: String, routed: String) {
        let router = "\(prefix)r"
        let far = "\(prefix)br\(f)2".lowercased()
        let main = "198.18.\(f == .a ? 1 : 2).254", routed = "198.18.\(f == .a ? 11 : 12).254"
        try Leftovers.shared.creating(.link(far)) {
            try Self.run(["ip", "link", "add", far, "mtu", "\(linkMTU)", "type", "bridge"])
        }
        bridges.append(far)
        try Self.run(["ip", "link", "set", far, "up"])
        try Leftovers.shared.creating(.namespace(router)) { try Self.run(["ip", "netns", "add", router]) }
        namespaces.append(router)
        try Self.run(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        for (side, bridge, address) in [("1", bridge(f), main), ("2", far, routed)] {
            try plug(router, host: "\(prefix)r\(side)h", inside: "\(prefix)r\(side)n", into: bridge, address: address)
        }
        try Self.run(["ip", "link", "set", hostVeth(n, f), "master", far])
        let ns = namespace(n)
        try Self.run(["ip", "-n", ns, "addr", "flush", "dev", adapter(n, f)])
        try Self.run(["ip", "-n", ns, "addr", "add", "\(routedIP(n, f))/24", "dev", adapter(n, f)])
        return (main, routed)
    }

    /// Node `n`'s address on fabric `f` once ``putBehindRouter(node:fabric:)`` moved it.
    public func routedIP(_ n: Int, _ f: Fabric) -> String { "198.18.\(f == .a ? 11 : 12).\(n)" }

    /// The veth end inside node `n`'s namespace that joins it to fabric `f` (its primary adapter).
    public func adapter(_ n: Int, _ f: Fabric) -> String { "\(prefix)\(n)\(f)n".lowercased() }
    /// The address of node `n`'s alternate adapter on fabric `f` (``addAlternateAdapter(node:fabric:)``).
    public func alternateIP(_ n: Int, _ f: Fabric) -> String { "198.18.\(f == .a ? 1 : 2).\(100 + n)" }

    public func namespace(_ n: Int) -> String { Self.namespace(prefix: prefix, n) }
    public static func namespace(prefix: String, _ n: Int) -> String { "\(prefix)n\(n)" }
    public func bridge(_ f: Fabric) -> String { "\(prefix)br\(f)".lowercased() }
    public func hostVeth(_ n: Int, _ f: Fabric) -> String { "\(prefix)\(n)\(f)h".lowercased() }
    public func ip(_ n: Int, _ f: Fabric) -> String { "198.18.\(f == .a ? 1 : 2).\(n)" }
    public func address(_ n: Int, _ f: Fabric, port: UInt16 = 7000) -> FabricAddress { FabricAddress("\(ip(n, f)):\(port)")! }

    /// An engine configuration for node `n`, inside its namespace, on both fabrics.
    public func configuration(node n: Int) -> EngineConfiguration {
        var c = EngineConfiguration(name: "ns-node\(n)", fabricA: address(n, .a), fabricB: address(n, .b))
        c.networkNamespace = namespace(n)
        c.pathMTU = linkMTU  // the veths' MTU: Plexus segments above it, IP never fragments
        c.poolFrames = 256
        c.receiveBuffers = 256
        return c
    }

    /// Pulls (or plugs back) node `n`'s cable to fabric `f`: the host side of its veth.
    public func setCable(node n: Int, fabric f: Fabric, up: Bool) throws {
        try Self.run(["ip", "link", "set", hostVeth(n, f), up ? "up" : "down"])
    }

    /// Fails (or restores) a whole fabric: its bridge.
    public func setFabric(_ f: Fabric, up: Bool) throws {
        try Self.run(["ip", "link", "set", bridge(f), up ? "up" : "down"])
    }

    /// Deletes the namespaces (their veths go with them) and the bridges.
    public func teardown() {
        for ns in namespaces { _ = try? Self.run(["ip", "netns", "del", ns]) }
        for br in bridges { _ = try? Self.run(["ip", "link", "del", br]) }
        Leftovers.shared.forget(namespaces.map(Leftovers.Item.namespace) + (bridges + hostVeths).map(Leftovers.Item.link))
        namespaces = []
        bridges = []
        hostVeths = []
    }

    deinit { teardown() }

    /// Starts `args` inside node `n`'s namespace in the background (a server: `iperf3 -s`,
    /// `python3 -m http.server`); stop it with ``BackgroundProcess/kill()``.
    public func spawn(in n: Int, _ args: [String], output: FileHandle? = nil) throws -> BackgroundProcess {
        try BackgroundProcess(["ip", "netns", "exec", namespace(n)] + args, output: output)
    }

    /// Runs `args` inside node `n`'s namespace and returns its exit status and output.
    public func execute(in n: Int, _ args: [String]) -> (status: Int32, output: String) {
        Self.execute(["ip", "netns", "exec", namespace(n)] + args)
    }

    /// Runs `args` (a ``ChildProcess``: it dies with this process) and returns its exit status
    /// (or 128 + the signal that ended it) and its output (stdout and stderr).
    public static func execute(_ args: [String]) -> (status: Int32, output: String) {
        let out = Pipe()
        let w = out.fileHandleForWriting.fileDescriptor
        let child = try? ChildProcess(args, output: w, error: w)
        try? out.fileHandleForWriting.close()
        guard let child else { return (-1, "cannot start \(args.first ?? "")") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        return (child.wait(), String(decoding: data, as: UTF8.self))
    }

    /// Runs `args` and returns its output; throws, with the output, if it fails.
    @discardableResult
    public static func run(_ args: [String]) throws -> String {
        let r = execute(args)
        guard r.status == 0 else {
            throw PlexusError(.system, "`\(args.joined(separator: " "))` failed: \(r.output)")
        }
        return r.output
    }
}

/// A program running in the background: a ``ChildProcess`` (it dies with this process, and
/// leads a process group of its own, which ``signal(_:)`` and ``kill()`` reach).
public final class BackgroundProcess: Sendable {
    let child: ChildProcess
    /// Starts `args` (looked up in `PATH`), its stdout and stderr on `output` (nil: discarded).
    /// `onExit` is called, on a thread of its own, with the process id and its status
    /// (the exit status, or 128 + the signal that killed it) when it ends.
    public init(_ args: [String], output: FileHandle? = nil, onExit: (@Sendable (Int32, Int32) -> Void)? = nil) throws {
        let fd = output?.fileDescriptor
        child = try ChildProcess(args, output: fd, error: fd, onExit: onExit)
    }
    /// Sends `signal` to the process's group (a shell's children go too).
    public func signal(_ signal: Int32) { child.signal(signal) }
    public var isRunning: Bool { child.isRunning }
    public var processIdentifier: Int32 { child.pid }
    /// Waits for it to end by itself (a client given a duration); returns its exit status
    /// (or 128 + the signal that ended it).
    public func wait() -> Int32 { child.wait() }
    /// Sends SIGTERM (a clean stop) to the process and waits; returns the exit status, or nil
    /// when it did not end within `seconds` (it is then killed).
    public func terminate(seconds: Double = 10) -> Int32? {
        guard child.isRunning else { return child.status }
        _ = Glibc.kill(child.pid, SIGTERM)
        guard child.wait(seconds: seconds) else {
            kill()
            return nil
        }
        return child.status
    }
    /// SIGKILL to its process group; waits for it to end.
    public func kill() {
        child.signal(SIGKILL)
        child.wait()
    }
    deinit { kill() }
}

/// The parts of `iperf3 -J` output the tests and benchmarks read.
public struct IPerf3Result: Sendable {
    /// The receiver's average rate over the whole run.
    public var receivedBitsPerSecond: Double
    public var sentBytes: Double
    public var retransmits: Int
    /// Each interval's rate (bits/s) and length (s).
    public var intervals: [(bitsPerSecond: Double, seconds: Double)]

    public init?(json: String) {
        guard let start = json.firstIndex(of: "{"),
              let object = try? JSONSerialization.jsonObject(with: Data(json[start...].utf8)) as? [String: Any],
              let end = object["end"] as? [String: Any],
              let received = end["sum_received"] as? [String: Any],
              let sent = end["sum_sent"] as? [String: Any]
        else { return nil }
        receivedBitsPerSecond = received["bits_per_second"] as? Double ?? 0
        sentBytes = sent["bytes"] as? Double ?? 0
        retransmits = sent["retransmits"] as? Int ?? 0
        intervals = ((object["intervals"] as? [[String: Any]]) ?? []).compactMap { i in
            guard let sum = i["sum"] as? [String: Any], let bps = sum["bits_per_second"] as? Double,
                  let s = sum["seconds"] as? Double else { return nil }
            return (bps, s)
        }
    }
}
