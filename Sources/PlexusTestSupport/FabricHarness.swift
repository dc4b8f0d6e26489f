import Foundation
import PlexusCore

/// Whether this machine lets us create an io_uring (it may be disabled by sysctl).
public let ioUringAvailable: Bool = {
    if let s = try? String(contentsOfFile: "/proc/sys/kernel/io_uring_disabled", encoding: .utf8),
       let v = Int(s.trimmingCharacters(in: .whitespacesAndNewlines)), v == 2 {
        return false
    }
    return true
}()

/// Real fabrics for tests: each node in its own network namespace, fabric A and fabric B as two
/// Linux bridges, each node joined to each bridge by a veth pair. A fabric (or one node's cable
/// to it) fails with `ip link set … down`. Needs root and iproute2; CI runs as root.
///
/// Addresses come from 198.18.0.0/15, the range RFC 2544 sets aside for benchmarking: fabric A
/// is 198.18.1.N/24 and fabric B 198.18.2.N/24, and they exist only inside these namespaces.
public final class FabricHarness {
    public let prefix: String
    public let nodes: Int
    private var namespaces: [String] = []
    private var bridges: [String] = []

    /// Why the harness cannot run here, or nil when it can.
    public static let unavailableReason: String? = {
        if getuid() != 0 { return "network namespaces need root (CI runs as root)" }
        if (try? run(["ip", "-V"])) == nil { return "iproute2 (`ip`) is not installed (scripts/setup.sh installs it)" }
        return nil
    }()

    public init(nodes: Int) throws {
        prefix = "px" + String(UInt32.random(in: 0..<0xFFFF), radix: 16)
        self.nodes = nodes
        do {
            for f in Fabric.allCases {
                let br = bridge(f)
                try Self.run(["ip", "link", "add", br, "type", "bridge"])
                bridges.append(br)
                try Self.run(["ip", "link", "set", br, "up"])
            }
            for n in 1...nodes {
                let ns = namespace(n)
                try Self.run(["ip", "netns", "add", ns])
                namespaces.append(ns)
                try Self.run(["ip", "-n", ns, "link", "set", "lo", "up"])
                for f in Fabric.allCases {
                    let host = hostVeth(n, f), inside = "\(prefix)\(n)\(f)n".lowercased()
                    try Self.run(["ip", "link", "add", host, "type", "veth", "peer", "name", inside])
                    try Self.run(["ip", "link", "set", inside, "netns", ns])
                    try Self.run(["ip", "link", "set", host, "master", bridge(f)])
                    try Self.run(["ip", "link", "set", host, "up"])
                    try Self.run(["ip", "-n", ns, "addr", "add", "\(ip(n, f))/24", "dev", inside])
                    try Self.run(["ip", "-n", ns, "link", "set", inside, "up"])
                }
            }
        } catch {
            teardown()
            throw error
        }
    }

    public func namespace(_ n: Int) -> String { "\(prefix)n\(n)" }
    public func bridge(_ f: Fabric) -> String { "\(prefix)br\(f)".lowercased() }
    public func hostVeth(_ n: Int, _ f: Fabric) -> String { "\(prefix)\(n)\(f)h".lowercased() }
    public func ip(_ n: Int, _ f: Fabric) -> String { "198.18.\(f == .a ? 1 : 2).\(n)" }
    public func address(_ n: Int, _ f: Fabric, port: UInt16 = 7000) -> FabricAddress { FabricAddress("\(ip(n, f)):\(port)")! }

    /// An engine configuration for node `n`, inside its namespace, on both fabrics.
    public func configuration(node n: Int) -> EngineConfiguration {
        var c = EngineConfiguration(name: "ns-node\(n)", fabricA: address(n, .a), fabricB: address(n, .b))
        c.networkNamespace = namespace(n)
        c.pathMTU = 1500  // veth's MTU: Plexus segments above it, IP never fragments
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

    public func teardown() {
        for ns in namespaces { _ = try? Self.run(["ip", "netns", "del", ns]) }
        for br in bridges { _ = try? Self.run(["ip", "link", "del", br]) }
        namespaces = []
        bridges = []
    }

    deinit { teardown() }

    @discardableResult
    public static func run(_ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard p.terminationStatus == 0 else {
            throw PlexusError(.system, "`\(args.joined(separator: " "))` failed: \(text)")
        }
        return text
    }
}
