import ArgumentParser
import Foundation
import PlexusCore
import PlexusRCLAN
import Synchronization

/// Receives on node 2: checks every frame's sequence number and content, per VI.
final class DemoReceiver: EngineDriver {
    var expected: [VI: UInt64] = [:]
    var frames = 0
    var bytes = 0
    var outOfOrder = 0
    var corrupt = 0
    var immediates: [(UInt32, UInt64, Int)] = []

    func received(_ frame: consuming InboundFrame, engine: Engine) {
        let vi = frame.vi
        engine.postReceives(1, on: vi)
        frames += 1
        bytes += frame.count
        frame.withUnsafeBytes { b in
            guard b.count >= 8 else { return }
            let seq = b.loadUnaligned(as: UInt64.self)
            if seq != expected[vi, default: 0] { outOfOrder += 1 }
            expected[vi] = seq + 1
            for i in stride(from: 8, to: b.count, by: 97) where b[i] != UInt8(truncatingIfNeeded: seq &+ UInt64(i)) {
                corrupt += 1
                break
            }
        }
    }

    func rdmaImmediate(_ immediate: UInt32, on vi: VI, region: RegionKey, offset: UInt64, length: Int, engine: Engine) {
        immediates.append((immediate, offset, length))
    }
}

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run two nodes on loopback and show them exchanging traffic over both fabrics.",
        discussion: """
            The embedded default: node 1 and node 2 in this process, each on its own engine \
            thread with its own io_uring, each with a port on fabric A (127.0.1.N) and fabric B \
            (127.0.2.N). The control plane establishes a VI pair on each fabric; node 1 streams \
            frames of mixed sizes over both, checks a round trip, RDMA-writes into a region node 2 \
            registered for it, and tries a VI node 2 never established. Then two more nodes run a \
            redundant VI (the RCLAN layer) under 5 % loss on fabric A and 1 % on B, with fabric A \
            failed for good halfway: every message arrives exactly once, in order. Then two \
            control nodes and five processing nodes bring up two virtual LANs (as root in network \
            namespaces with TAP NICs and real ping; otherwise in this process), and control node 1 \
            is stopped. As root, a web service's processor fails over to a spare. Then a \
            processor's disk: two control nodes serve a file as its LUN, nbdcopy writes through \
            the processor's NBD socket, the processor is killed, and the spare reads the data \
            back. Every counter is printed.
            """)

    @Option(help: "Frames node 1 streams to node 2 (split across the two fabrics).")
    var frames: Int = 100_000
    @Option(help: "Messages sent over the redundant VI of step 4.")
    var rviMessages: Int = 100_000
    @Option(help: "Path MTU of both fabrics (frames above it are segmented by Plexus).")
    var mtu: Int = 65536
    @Option(name: .customLong("fault"), parsing: .singleValue, help: ArgumentHelp(
        "Inject faults under one fabric of node 1 (repeatable): FABRIC:PLAN.",
        discussion: "PLAN is comma-separated: drop=PCT, dup=PCT, reorder=PCT, delay=500us|2ms, down, partition=IP:PORT+..., seed=N. Example: --fault a:drop=5,seed=7 --fault b:dup=1"))
    var faults: [String] = []

    func validate() throws { try validateFaults(faults) }

    func run() throws {
        guard frames > 0 && frames <= 100_000_000 else { throw ValidationError("--frames must be in 1...100000000") }
        guard rviMessages > 0 && rviMessages <= 100_000_000 else { throw ValidationError("--rvi-messages must be in 1...100000000") }
        var c1 = EngineConfiguration.loopback(node: 1)
        var c2 = EngineConfiguration.loopback(node: 2)
        c1.pathMTU = mtu
        c2.pathMTU = mtu
        let node1 = try EngineThread.start(c1)
        let node2 = try EngineThread.start(c2) { DemoReceiver() }
        defer {
            node1.stopAndWait()
            node2.stopAndWait()
        }
        print("Plexus demo: two nodes on loopback, each with a port on fabric A and fabric B\n")
        for (name, t) in [("node 1", node1), ("node 2", node2)] {
            let i = t.info
            print("\(name): fabric A \(i.ports[0].address), fabric B \(i.ports[1].address)")
            print("        io_uring \(i.ringSetup); \(i.poolFrames) frames in \(i.memoryBacking) memory"
                  + (i.numaNode.map { " on NUMA node \($0)" } ?? "") + (i.fixedBuffers ? ", registered" : ""))
            print("        socket buffers rcv \(i.ports[0].receiveBufferBytes) / snd \(i.ports[0].sendBufferBytes) bytes"
                  + " (asked \(i.ports[0].requestedSocketBufferBytes); rmem_max \(i.rmemMax ?? 0))")
        }

        // The control plane (here: this program) establishes one VI per fabric at each end.
        let a = VI(.a, 1), b = VI(.b, 1)
        for vi in [a, b] {
            try node1.control.establishAndWait(vi, peer: FabricAddress(node2.info.ports[Int(vi.fabric.rawValue)].address)!, remoteVI: 1)
            try node2.control.establishAndWait(vi, peer: FabricAddress(node1.info.ports[Int(vi.fabric.rawValue)].address)!, remoteVI: 1)
        }
        try node2.runAndWait { e in
            e.postReceives(1024, on: a)
            e.postReceives(1024, on: b)
        }
        print("\ncontrol plane: established \(a) and \(b) between node 1 and node 2")
        let injected = faults.compactMap(FaultOption.init(argument:))
        for f in injected {
            try node1.control.setFaultsAndWait(f.plan, on: f.fabric)
            print("fault layer: node 1, fabric \(f.fabric): \(f.plan)")
        }

        // 1. Stream frames of mixed sizes, alternating fabrics, in batches the pool can hold.
        let sizes = [64, 512, 1500, 9000, 16896]
        let start = Date()
        var sent = 0
        var seq: [UInt64] = [0, 0]
        while sent < frames {
            let from = sent, want = frames, seqNow = seq
            let (n, newSeq) = try node1.runAndWait { e -> (Int, [UInt64]) in
                var k = from
                var s = seqNow
                while k < want, var f = e.takeFrame() {
                    let vi = k % 2 == 0 ? a : b
                    let size = sizes[k % sizes.count]
                    let q = s[Int(vi.fabric.rawValue)]
                    f.withUnsafeMutablePayload { p in
                        p.storeBytes(of: q, as: UInt64.self)
                        for i in stride(from: 8, to: size, by: 97) { p[i] = UInt8(truncatingIfNeeded: q &+ UInt64(i)) }
                    }
                    f.length = size
                    try e.send(f, on: vi)
                    s[Int(vi.fabric.rawValue)] += 1
                    k += 1
                }
                return (k, s)
            }
            sent = n
            seq = newSeq
            if sent < frames { usleep(200) }
        }
        var delivered = 0
        let deadline = Date().addingTimeInterval(10)
        var expected = frames
        while Date() < deadline {
            delivered = try node2.runAndWait { ($0.installedDriver as! DemoReceiver).frames }
            let (pa, pb) = try node1.runAndWait { ($0.counters(.a), $0.counters(.b)) }
            expected = frames - Int(pa.faultDropped + pb.faultDropped) + Int(pa.faultDuplicated + pb.faultDuplicated)
            let settled = try node1.runAndWait { $0.pool.outstanding == 0 }
            if delivered >= expected && settled { break }
            usleep(1000)
        }
        let elapsed = Date().timeIntervalSince(start)
        let (bytes, ooo, corrupt) = try node2.runAndWait { e in
            let d = e.installedDriver as! DemoReceiver
            return (d.bytes, d.outOfOrder, d.corrupt)
        }
        print("\n1. node 1 streamed \(frames) frames (64 to 16896 bytes, alternating fabric A and B)")
        print(String(format: "   node 2 received %d frames, %.1f MB, in %.2f s; out of order %d, corrupt %d",
                     delivered, Double(bytes) / 1e6, elapsed, ooo, corrupt))
        if !injected.isEmpty {
            let (pa, pb) = try node1.runAndWait { ($0.counters(.a), $0.counters(.b)) }
            print("   fault layer: dropped \(pa.faultDropped + pb.faultDropped), duplicated \(pa.faultDuplicated + pb.faultDuplicated), "
                  + "reordered \(pa.faultReordered + pb.faultReordered), delayed \(pa.faultDelayed + pb.faultDelayed); "
                  + "expected \(expected) deliveries, got \(delivered) (no reliability layer yet: losses stay lost)")
        }

        // 2. RDMA WRITE with immediate data into a region node 2 registered for node 1's VI.
        let key = try node2.control.registerRegionAndWait(bytes: 1 << 20, writers: [a])
        try node1.runAndWait { e in
            var list = e.makeGatherList()
            for i in 0..<4 {
                var f = e.takeFrame()!
                _ = f.withUnsafeMutablePayload { $0.initializeMemory(as: UInt8.self, repeating: UInt8(0xA0 + i)) }
                f.length = 16384
                list.append(f)
            }
            try e.rdmaWrite(list, on: a, region: key, offset: 4096, immediate: 0xD00D)
        }
        var imm: (UInt32, UInt64, Int)? = nil
        for _ in 0..<5000 {
            imm = try node2.runAndWait { ($0.installedDriver as! DemoReceiver).immediates.first }
            if imm != nil { break }
            usleep(1000)
        }
        let check = try node2.runAndWait { e -> Bool in
            try e.withRegion(key) { (r: UnsafeMutableRawBufferPointer) -> Bool in
                for i in 0..<4 {
                    let first: Int = 4096 + i * 16384
                    let want = UInt8(0xA0 + i)
                    if r[first] != want || r[first + 16383] != want { return false }
                }
                return true
            }
        }
        print("\n2. node 1 RDMA-wrote 4 frames (64 KiB, scatter-gather) into node 2's region \(key) at offset 4096")
        if let imm {
            print("   node 2 got immediate 0x\(String(imm.0, radix: 16)) with the last datagram; bytes in place: \(check ? "yes" : "NO")")
        } else {
            print("   the immediate did not arrive")
        }

        // 3. A bad key and a VI node 2 never established: refused and counted.
        try node1.runAndWait { e in
            var f = e.takeFrame()!
            f.length = 100
            try e.rdmaWrite(f, on: a, region: RegionKey(rawValue: 0x1234_5000), offset: 0)
        }
        try node1.control.establishAndWait(VI(.a, 77), peer: FabricAddress(node2.info.ports[0].address)!, remoteVI: 77)
        try node1.runAndWait { e in
            var f = e.takeFrame()!
            f.length = 10
            try e.send(f, on: VI(.a, 77))
        }
        var refused: UInt64 = 0
        for _ in 0..<5000 {
            refused = try node1.runAndWait { $0.counters(a)!.rdmaProtectionErrors }
            if refused > 0 { break }
            usleep(1000)
        }
        var unknown: UInt64 = 0
        for _ in 0..<5000 {
            unknown = try node2.runAndWait { $0.counters(.a).unknownVI }
            if unknown > 0 { break }
            usleep(1000)
        }
        print("\n3. a write with a bad key: node 2 refused it (\(refused) protection error reported to node 1)")
        print("   a frame for VI A/77, which node 2 never established: dropped and counted (\(unknown))")

        // 4. A redundant VI (the RCLAN layer) between two more nodes, under loss on both
        //    fabrics, with fabric A failed for good halfway through.
        let showcase = RVIShowcase(
            messages: UInt64(rviMessages), size: 1024, policy: .alternate,
            faults: [FaultOption(argument: "a:drop=5,seed=3")!, FaultOption(argument: "b:drop=1,seed=4")!], killLeg: .a)
        let rvi = try showcase.run()
        print("\n4. a redundant VI (a VI on each fabric, the RCLAN layer) between two more nodes:")
        print("   \(rviMessages) messages of 1 KiB; fabric A loses 5 %, fabric B 1 %, and fabric A dies halfway through")
        print("   " + rvi.summary)
        print("   sender: retransmissions \(rvi.sender.retransmissions); receiver: duplicates dropped \(rvi.receiver.duplicatesDropped)")
        for e in rvi.senderEvents { print("   sender event at " + e.trimmingCharacters(in: .whitespaces)) }
        print("   (`plexus rvi --help` runs this with your own faults and prints every counter per leg)")
        let lanOK = try lanShowcase()
        let failoverOK = try failoverShowcase()
        let storageOK = try storageShowcase()

        print("\ncounters")
        for (name, t) in [("node 1", node1), ("node 2", node2)] {
            let (pa, pb) = try t.runAndWait { ($0.counters(.a), $0.counters(.b)) }
            for (f, p) in [("A", pa), ("B", pb)] {
                print("  \(name) fabric \(f): out \(p.framesOut) frames / \(p.datagramsOut) datagrams, in \(p.framesIn) frames / \(p.datagramsIn) datagrams; "
                      + "dropped \(p.dropped) (unknown VI \(p.unknownVI), wrong peer \(p.wrongPeer), malformed \(p.malformed), "
                      + "receive queue empty \(p.receiveQueueEmpty), rdma refused \(p.rdmaRejected)); "
                      + "receive overruns \(p.receiveOverruns)")
            }
        }
        let r1 = node1.stopAndWait(), r2 = node2.stopAndWait()
        print("\nshutdown: every frame and receive buffer returned: \(r1.leakedFrames + r2.leakedFrames + r1.leakedReceiveBuffers + r2.leakedReceiveBuffers == 0 ? "yes" : "NO")")
        let faultsExplain = !injected.isEmpty
        if corrupt != 0 || !rvi.clean || !lanOK || !failoverOK || !storageOK || (!faultsExplain && (delivered != frames || ooo != 0 || !check || imm == nil))
            || (faultsExplain && delivered != expected)
        {
            throw ExitCode.failure
        }
    }
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start one engine, report what the kernel granted (ring flags, memory, socket buffers), and stop.")

    @Option(help: "Node number N: ports at 127.0.1.N and 127.0.2.N.")
    var node: UInt8 = 1
    @Option(help: "Fabric A address ip:port (overrides --node).")
    var fabricA: String?
    @Option(help: "Fabric B address ip:port (overrides --node).")
    var fabricB: String?
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        var c = EngineConfiguration.loopback(node: node)
        if let s = fabricA {
            guard let a = FabricAddress(s) else { throw ValidationError("--fabric-a: '\(s)' is not ip:port") }
            c.fabricA = a
        }
        if let s = fabricB {
            guard let b = FabricAddress(s) else { throw ValidationError("--fabric-b: '\(s)' is not ip:port") }
            c.fabricB = b
        }
        let t = try EngineThread.start(c)
        defer { t.stopAndWait() }
        let i = t.info
        if json {
            let data = try JSONEncoder().encode(i)
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("engine \(i.name): io_uring \(i.ringSetup), \(i.pollMode)")
        print("  frame pool: \(i.poolFrames) × 16960 bytes, \(i.memoryBacking)" + (i.numaNode.map { ", NUMA node \($0)" } ?? "")
              + ", fixed buffer: \(i.fixedBuffers ? "registered" : "not registered (RLIMIT_MEMLOCK?)")")
        print("  zero-copy send: \(i.zeroCopy); UDP GSO batching: \(i.udpSegmentationOffload ? "on" : "off"); VIs per port: \(i.maxVIs - 1)")
        for p in i.ports {
            print("  fabric \(p.fabric): \(p.address), max datagram \(p.maxDatagramBytes), \(p.receiveBuffers) receive buffers, "
                  + "SO_RCVBUF \(p.receiveBufferBytes) / SO_SNDBUF \(p.sendBufferBytes) (asked \(p.requestedSocketBufferBytes))")
        }
        print("  system ceilings: rmem_max \(i.rmemMax.map(String.init) ?? "?"), wmem_max \(i.wmemMax.map(String.init) ?? "?")")
    }
}
