import CPlexus
import Foundation
import PlexusCore
import PlexusNamespaces
import PlexusRCLAN
import Synchronization

final class StopFlag: Sendable {
    let flag = Atomic<Bool>(false)
}

/// The second process of every benchmark, `plexus bench-peer`, which `plexus bench` runs. It
/// speaks a line protocol on stdin/stdout: READY {addresses} → PEER {addresses} → GO {region
/// key} → STOP → RESULT {counts}.
public struct PeerOptions: Sendable {
    public enum Mode: String, Sendable { case plexus, rvi, plain, uring = "io_uring" }
    public enum Role: String, Sendable { case sink, echo, rdmaSink = "rdma-sink" }

    public var mode: Mode = .plexus
    public var role: Role = .sink
    public var vis: Int = 1
    public var fabric: FabricChoice = .a
    public var busyPoll = false
    public var cpu: Int = 1
    public var node: UInt8 = 2
    public var regionBytes: Int = 64 << 20
    public var policy: String = "alternate"
    public var heartbeatUs: Int = 1000
    public var netns: String?

    public init() {}
}

/// Runs the far end of a benchmark on standard input and output until the benchmark says STOP.
public func runPeer(_ options: PeerOptions) throws { try options.run() }

extension PeerOptions {
    func run() throws {
        let input = LineReader(fd: 0)
        if mode == .plexus {
            try runPlexus(input)
        } else if mode == .rvi {
            try runRVI(input)
        } else {
            try runRaw(input)
        }
    }

    func runPlexus(_ input: LineReader) throws {
        var c = EngineConfiguration.loopback(node: node)
        c.cpu = cpu < ProcessInfo.processInfo.activeProcessorCount ? cpu : nil
        c.pollMode = busyPoll ? .busyPoll : .blocking
        c.maxVIs = max(16384, vis + 1)
        let role = self.role
        let thread = try EngineThread.start(c) {
            switch role {
            case .sink, .rdmaSink: CountingSink()
            case .echo: EchoDriver()
            }
        }
        writeLine(1, "READY " + jsonLine(["a": thread.info.ports[0].address, "b": thread.info.ports[1].address]))
        guard let line = input.readLine(), line.hasPrefix("PEER ") else { throw BenchError("expected PEER") }
        let peer = parseJSON(line.dropFirst(5))
        let pa = FabricAddress(peer["a"] as? String ?? "")!, pb = FabricAddress(peer["b"] as? String ?? "")!
        var list: [(vi: VI, peer: FabricAddress, remoteVI: UInt32)] = []
        for f in fabric.fabrics {
            for n in 1...UInt32(vis) { list.append((VI(f, n), f == .a ? pa : pb, n)) }
        }
        try thread.control.establishAndWait(list)
        let all = list.map(\.vi)
        try thread.runAndWait { e in for v in all { e.postReceives(1 << 40, on: v) } }
        var go: [String: Any] = [:]
        if role == .rdmaSink {
            let key = try thread.control.registerRegionAndWait(bytes: regionBytes, writers: all)
            go["key"] = Int(key.rawValue)
            go["region_bytes"] = regionBytes
        }
        writeLine(1, "GO " + jsonLine(go))
        _ = input.readLine()  // STOP
        // Let what is still queued in the socket arrive: report once the count stops moving.
        var last: UInt64 = .max
        while true {
            let (frames, bytes, landed, a, b) = try thread.runAndWait { e -> (UInt64, UInt64, UInt64, PortCounters, PortCounters) in
                var landed: UInt64 = 0
                for v in all { landed += e.counters(v)?.rdmaBytesLanded ?? 0 }
                if let s = e.installedDriver as? CountingSink { return (s.frames, s.bytes, landed, e.counters(.a), e.counters(.b)) }
                if let s = e.installedDriver as? EchoDriver { return (s.echoed, 0, landed, e.counters(.a), e.counters(.b)) }
                return (0, 0, landed, e.counters(.a), e.counters(.b))
            }
            let progress = frames + landed
            if progress == last {
                let dropped = a.dropped + b.dropped
                writeLine(1, "RESULT " + jsonLine([
                    "frames": frames, "bytes": bytes, "rdma_bytes": landed, "dropped": dropped,
                    "datagrams_in": a.datagramsIn + b.datagramsIn, "buffer_ring_empty": a.bufferRingEmpty + b.bufferRingEmpty,
                    "receive_overruns": a.receiveOverruns + b.receiveOverruns,
                ]))
                break
            }
            last = progress
            usleep(30_000)
        }
        thread.stopAndWait()
    }

    /// One RVI (VI 1 on both fabrics) to the benchmark's engine, with a sink or echo delegate.
    func runRVI(_ input: LineReader) throws {
        var c = EngineConfiguration.loopback(node: node)
        if let netns {
            // The ip-link variant of rvi-failover: this end lives in a namespace of its own.
            c.networkNamespace = netns
            c.fabricA = FabricAddress(BenchNamespace.peerAddress(.a))!
            c.fabricB = FabricAddress(BenchNamespace.peerAddress(.b))!
        }
        c.cpu = cpu < ProcessInfo.processInfo.activeProcessorCount ? cpu : nil
        c.pollMode = busyPoll ? .busyPoll : .blocking
        let echo = role == .echo
        let layer = rclanConfiguration(heartbeatUs: heartbeatUs)
        let thread = try EngineThread.start(c) { try! RCLAN(configuration: layer, delegate: RVIBenchSink(echo: echo)) }
        writeLine(1, "READY " + jsonLine(["a": thread.info.ports[0].address, "b": thread.info.ports[1].address]))
        guard let line = input.readLine(), line.hasPrefix("PEER ") else { throw BenchError("expected PEER") }
        let peer = parseJSON(line.dropFirst(5))
        let path = RVIPath(localA: 1, localB: 1, peerA: FabricAddress(peer["a"] as? String ?? "")!,
                           peerB: FabricAddress(peer["b"] as? String ?? "")!, remoteA: 1, remoteB: 1)
        let policy = try LoadBalancing(parsing: self.policy)
        try thread.runAndWait { e in
            let layer = RCLAN.on(e)!
            (layer.delegate as! RVIBenchSink).rvi = try layer.open(path, policy: policy)
        }
        writeLine(1, "GO {}")
        _ = input.readLine()  // STOP
        var last: UInt64 = .max
        while true {
            let r = try thread.runAndWait { e -> [String: UInt64] in
                let layer = RCLAN.on(e)!
                let s = layer.delegate as! RVIBenchSink
                let st = layer.statistics(RVI(id: 0))
                return ["frames": s.messages, "bytes": s.bytes, "lost": s.lost, "duplicated": s.duplicated,
                        "longest_gap_ns": s.longestGap, "echo_failures": s.echoFailures,
                        "duplicates_dropped": st?.duplicatesDropped ?? 0, "rdma_bytes": 0, "dropped": 0,
                        "overruns_a": e.receiveOverruns(.a), "overruns_b": e.receiveOverruns(.b)]
            }
            if r["frames"] == last {
                writeLine(1, "RESULT " + jsonLine(r))
                break
            }
            last = r["frames"]!
            usleep(30_000)
        }
        thread.stopAndWait()
    }

    func runRaw(_ input: LineReader) throws {
        let (fd, bound) = try RawUDP.open(FabricAddress.loopback(node: node, fabric: .a, port: 0))
        defer { close(fd) }
        writeLine(1, "READY " + jsonLine(["a": bound.description]))
        guard let line = input.readLine(), line.hasPrefix("PEER ") else { throw BenchError("expected PEER") }
        let peer = FabricAddress(parseJSON(line.dropFirst(5))["a"] as? String ?? "")!
        RawUDP.connect(fd, to: peer)
        let stop = StopFlag()
        let result = Mutex<[String: UInt64]>([:])
        let mode = self.mode, role = self.role, busy = busyPoll, cpu = self.cpu
        let done = DispatchSemaphore(value: 0)
        let worker = Thread {
            defer { done.signal() }
            _ = plx_pin_current_thread(Int32(cpu))
            var r: [String: UInt64] = [:]
            // The ring is created on the thread that submits to it (SINGLE_ISSUER).
            let u = mode == .uring ? try? UringUDP(fd: fd) : nil
            if mode == .uring {
                guard let u, (try? u.setUpReceiveRing()) != nil else {
                    result.withLock { $0 = ["error": 1] }
                    return
                }
            }
            switch (mode, role) {
            case (.plain, .echo): r["frames"] = RawUDP.plainEcho(fd: fd, busyPoll: busy, stop: stop.flag)
            case (.plain, _):
                let (f, b) = RawUDP.plainReceive(fd: fd, stop: stop.flag)
                r = ["frames": f, "bytes": b]
            case (_, .echo): r["frames"] = u!.echo(busyPoll: busy, stop: stop.flag)
            default:
                let (f, b) = u!.receive(stop: stop.flag)
                r = ["frames": f, "bytes": b]
            }
            result.withLock { $0 = r }
        }
        worker.start()
        writeLine(1, "GO {}")
        _ = input.readLine()  // STOP
        usleep(100_000)
        stop.flag.store(true, ordering: .releasing)
        done.wait()
        var r = result.withLock { $0 }
        r["rdma_bytes"] = 0
        r["dropped"] = 0
        writeLine(1, "RESULT " + jsonLine(r))
    }
}

/// The parent's handle on a `plexus bench-peer` child process (a ``ChildProcess``: it dies
/// with this one).
final class PeerProcess {
    let process: ChildProcess
    let toChild = Pipe()
    let fromChild = Pipe()
    let reader: LineReader

    init(_ arguments: [String]) throws {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        process = try ChildProcess(path: exe, arguments: ["plexus", "bench-peer"] + arguments,
                                   input: toChild.fileHandleForReading.fileDescriptor,
                                   output: fromChild.fileHandleForWriting.fileDescriptor,
                                   error: FileHandle.standardError.fileDescriptor)
        try? toChild.fileHandleForReading.close()
        try? fromChild.fileHandleForWriting.close()
        reader = LineReader(fd: fromChild.fileHandleForReading.fileDescriptor)
    }

    func expect(_ word: String) throws -> [String: Any] {
        guard let line = reader.readLine() else {
            let status = process.wait()
            throw BenchError("benchmark peer exited (status \(status)) before \(word)")
        }
        guard line.hasPrefix(word + " ") else { throw BenchError("benchmark peer said '\(line)', expected \(word)") }
        return parseJSON(line.dropFirst(word.count + 1))
    }

    func say(_ line: String) { writeLine(toChild.fileHandleForWriting.fileDescriptor, line) }

    func finish() throws -> [String: Any] {
        say("STOP")
        let r = try expect("RESULT")
        process.wait()
        return r
    }

    deinit {
        if process.isRunning {
            _ = kill(process.pid, SIGTERM)
            if !process.wait(seconds: 5) { process.signal(SIGKILL) }
        }
    }
}
