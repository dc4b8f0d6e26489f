import Foundation
import PlexusCore
import PlexusLAN
import PlexusNamespaces
import PlexusNode
import PlexusRCLAN

/// The failover drill of the main job, its test and `plexus bench failover`: a web service
/// runs as the workload of one processor, a client on another processor requests a page from it
/// over and over on fresh TCP connections, and the service's processor is killed. The drill
/// measures, from the kill, when the control nodes detected the failure, when the spare had the
/// personality and its workload running, and when the client got its first good reply from the
/// spare, and counts the requests that failed meanwhile.
///
/// The client is Python (`urllib`), one request per connection with a 250 ms timeout, each line
/// of its output stamped with `CLOCK_MONOTONIC` (the clock of ``nowNanos()``: namespaces share
/// it). Needs a ``NamespaceFabric`` (root) and `python3`.
public enum FailoverDrill {
    /// What the drill measured.
    public struct Result: Sendable {
        /// Kill to detection (the control node's verdict).
        public var detectMilliseconds: Double
        /// Detection to the spare's workload running (personality moved, peers updated, addresses
        /// and workload up on the spare).
        public var migrateMilliseconds: Double
        /// Kill to the first good reply from the spare, as the client saw it.
        public var totalMilliseconds: Double
        /// Requests that failed between the kill and that reply.
        public var failedRequests: Int
        /// Good replies before the kill, and after it.
        public var repliesBefore: Int
        public var repliesAfter: Int
        public var record: FailoverRecord
        /// The timeline from the kill: "+0.0 ms killed", "+51.2 ms detected", …
        public var timeline: [String]
    }

    /// The client: requests `url` until `seconds` pass; prints `ok START END` or `fail START ERROR`.
    static let clientScript = """
        import sys, time, urllib.request
        url, end = sys.argv[1], time.monotonic() + float(sys.argv[2])
        while time.monotonic() < end:
            t = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=0.25) as r:
                    r.read()
                print("ok %.6f %.6f" % (t, time.monotonic()), flush=True)
            except Exception as e:
                print("fail %.6f %s" % (t, type(e).__name__), flush=True)
                time.sleep(0.005)
        """

    /// The web service: answers every HTTP request on a connection with the file it was given
    /// (a small static service; Python with only `socket`, so that it starts in tens of
    /// milliseconds: `http.server` alone takes a few hundred to import here).
    static let serviceScript = """
        import socket, sys
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((sys.argv[1], int(sys.argv[2])))
        s.listen(128)
        body = open(sys.argv[3], "rb").read()
        head = b"HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body)
        while True:
            c, _ = s.accept()
            try:
                c.recv(65536)
                c.sendall(head + body)
            except OSError:
                pass
            c.close()
        """

    /// A workload that serves `directory/file` (read when it starts) over HTTP on
    /// `address:port`: writes the service's script into `directory` and returns the command.
    public static func webService(address: String, port: Int = 8080, directory: String, file: String = "index.html") throws -> String {
        let script = directory + "/plexus-service.py"
        try Data(serviceScript.utf8).write(to: URL(fileURLWithPath: script))
        return "exec python3 -S -E \(script) \(address) \(port) \(directory)/\(file)"
    }

    /// The drill's platform: control nodes 1 and 2, the client on node 3, the web service on
    /// node 4 (on VLANs 10 and 20, at 10.10.0.4 and 10.20.0.4, serving `www/index.html` on port
    /// 8080), node 6 on VLAN 20, node 5 the spare.
    ///
    /// With `processingNodes` above 4, nodes 7, 8, … up to that many processing nodes in all join
    /// the platform and idle: members of VLAN 10 and VLAN 20 in turn (7 on 10, 8 on 20, …), with
    /// no address and no workload. The control nodes watch every one of them, and the web
    /// service's personality has every one of them as a peer. The platform then needs
    /// `processingNodes + 2` hosts (a ``NamespaceFabric`` of that many nodes).
    public static func definition(www: String, processingNodes: Int = 4) throws -> PlatformDefinition {
        guard processingNodes >= 4 else {
            throw PlexusError(.configuration, "the failover drill needs at least 4 processing nodes, not \(processingNodes)")
        }
        let v10 = VLANID(10)!, v20 = VLANID(20)!
        let idle = (7..<(3 + processingNodes)).map { NodeNumber(UInt32($0)) }
        let (odd, even) = (idle.filter { $0.rawValue % 2 == 1 }, idle.filter { $0.rawValue % 2 == 0 })
        var d = PlatformDefinition(controlNodes: [1, 2], processingNodes: [3, 4, 5, 6] + idle,
                                   vlans: [v10: [3, 4] + odd, v20: [4, 6] + even])
        d.spares = [5]
        d.addresses = [3: [AddressBinding(vlan: v10, cidr: "10.10.0.3/24")],
                       4: [AddressBinding(vlan: v10, cidr: "10.10.0.4/24"), AddressBinding(vlan: v20, cidr: "10.20.0.4/24")],
                       6: [AddressBinding(vlan: v20, cidr: "10.20.0.6/24")]]
        d.workloads = [4: try webService(address: "10.10.0.4", directory: www)]
        return d
    }

    /// The baseline of `plexus bench failover`: the same service restarted in place on node
    /// `node` (its workload killed and started again, no failover), from the kill to the first
    /// good reply at `client`: what the service itself costs to come back.
    public static func restartInPlace(_ p: LANPlatform, fabric: NamespaceFabric, client: Int, node: NodeNumber, url: String,
                                      seconds: Double = 20) throws -> (totalMilliseconds: Double, failedRequests: Int) {
        guard let command = p.personalities.personality(of: node)?.workload, p.personalities.workload(of: node) != nil else {
            throw PlexusError(.configuration, "node \(node) runs no workload")
        }
        let log = try ClientLog(fabric: fabric, client: client, url: url, seconds: seconds)
        defer { log.stop() }
        var again: BackgroundProcess?
        defer { again?.kill() }
        let o = try log.outage(of: "node \(node)'s service restarted in place", seconds: seconds) {
            p.personalities.stopWorkload(of: node)  // on purpose: not a failed process
            again = try fabric.spawn(in: Int(node), ["sh", "-c", command])
        }
        return (Double(o.first.end &- o.killed) / 1e6, o.failed)
    }

    /// The client's output, parsed.
    final class ClientLog {
        struct Line { var ok: Bool; var start: UInt64; var end: UInt64 }
        /// What the client saw around an interruption.
        struct Outage {
            var killed: UInt64
            /// The first good reply to a request started after the interruption.
            var first: Line
            /// Failures after the last good reply before the interruption (a request in flight
            /// at it counts) and before `first`.
            var failed: Int
            var repliesBefore: Int
            var repliesAfter: Int
        }
        let path: String
        let process: BackgroundProcess
        init(fabric: NamespaceFabric, client: Int, url: String, seconds: Double) throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-drill-\(UUID().uuidString).log").path
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            let out = FileHandle(forWritingAtPath: path)!
            process = try fabric.spawn(in: client, ["python3", "-c", FailoverDrill.clientScript, url, "\(seconds + 10)"], output: out)
        }
        func lines() -> [Line] {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { l in
                let f = l.split(separator: " ")
                guard f.count >= 3, let s = Double(f[1]) else { return nil }
                let start = UInt64(s * 1e9)
                return Line(ok: f[0] == "ok", start: start, end: f[0] == "ok" ? UInt64((Double(f[2]) ?? s) * 1e9) : start)
            }
        }
        /// Waits for good replies, runs `interrupt`, and waits (up to `seconds`) for the first
        /// good reply after it.
        func outage(of what: String, seconds: Double, _ interrupt: () throws -> Void) throws -> Outage {
            guard waitUntil(seconds: seconds, { lines().filter(\.ok).count >= 5 }) else {
                throw PlexusError(.timedOut, "before \(what): the client got no good replies (\(lines().count) requests)")
            }
            let killed = nowNanos()
            try interrupt()
            var first: Line?
            guard waitUntil(seconds: seconds, {
                first = lines().first { $0.ok && $0.start > killed }
                return first != nil
            }), let first else {
                throw PlexusError(.timedOut, "no good reply within \(seconds) s of \(what)")
            }
            let all = lines()
            let lastGood = all.filter { $0.ok && $0.start <= killed }.map(\.start).max() ?? 0
            return Outage(killed: killed, first: first,
                          failed: all.filter { !$0.ok && $0.start > lastGood && $0.start < first.start }.count,
                          repliesBefore: all.filter { $0.ok && $0.start <= killed }.count,
                          repliesAfter: all.filter { $0.ok && $0.start > killed }.count)
        }
        func stop() {
            process.kill()
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    /// Runs the drill on a platform that is up: `client` requests `url` (served by the workload
    /// of node `service`), the drill waits for good replies, kills `service`, and waits (up to
    /// `seconds`) for the spare to answer.
    public static func run(_ p: LANPlatform, fabric: NamespaceFabric, client: Int, service: NodeNumber, url: String,
                           seconds: Double = 20) throws -> Result {
        let log = try ClientLog(fabric: fabric, client: client, url: url, seconds: seconds)
        defer { log.stop() }
        let o: ClientLog.Outage
        do {
            o = try log.outage(of: "killing node \(service)", seconds: seconds) { p.kill(node: service) }
        } catch {
            // What the control nodes did meanwhile says why.
            let said = (0..<2).compactMap { k -> String? in
                guard let lines = try? p.server(k, { Array($0.log.suffix(6)) }) else { return nil }
                let moved = p.failovers(k).map { "\($0.failed) → \($0.spare)" }.joined(separator: ", ")
                return "control node \(k + 1): failovers [\(moved)], last logged: " + lines.joined(separator: "; ")
            }
            throw PlexusError(.timedOut, "\(error)" + said.map { "\n  " + $0 }.joined())
        }
        // The spare's own report of its first frame can trail the client's reply by a turn.
        _ = waitUntil(seconds: 2) { p.failovers(0).last?.time(of: .firstPacketServed) != nil }
        guard let record = p.failovers(0).last(where: { $0.failed == service }),
              let detected = record.time(of: .detected), let started = record.time(of: .workloadStarted) else {
            throw PlexusError(.timedOut, "the control node recorded no complete failover of node \(service)")
        }
        let ms = { (t: UInt64) in Double(Int64(bitPattern: t &- o.killed)) / 1e6 }
        var timeline = ["+0.0 ms killed (node \(service))"]
        timeline += record.steps.map { String(format: "%+.1f ms ", ms($0.at)) + "\($0.step)" }
        timeline.append(String(format: "%+.1f ms ", ms(o.first.end)) + "first good reply at the client (node \(client))")
        return Result(detectMilliseconds: ms(detected), migrateMilliseconds: Double(started &- detected) / 1e6,
                      totalMilliseconds: ms(o.first.end), failedRequests: o.failed,
                      repliesBefore: o.repliesBefore, repliesAfter: o.repliesAfter, record: record, timeline: timeline)
    }
}
