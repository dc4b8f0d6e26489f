import Foundation
import PlexusCore
import PlexusLAN
import PlexusNamespaces
import PlexusRCLAN
import Synchronization

/// Brings a personality up on the node that is configured with it, off the engine threads: the
/// IPv4 addresses go on its TAP NICs (`ip -n NS addr add`) and its workload starts in its
/// network namespace (`ip netns exec NS sh -c COMMAND`). The node then reports
/// ``FailoverStep/workloadStarted`` to the servers: after a failover, that is a step of the
/// timeline.
///
/// It also routes each node's console and watches its workload (seed 002): the workload's
/// output (stdout and stderr, through a pipe) and the lines this manager logs about the node go
/// to the node's driver, which sends them to the control nodes (``ConsoleArchive``); a workload
/// that ends by itself is reported to the control nodes as a failed process.
///
/// Without a namespace fabric (the in-process NIC backend) there is no kernel stack to put
/// addresses on and no namespace to run a command in: the personality is up as soon as its
/// NICs are.
public final class PersonalityManager: Sendable {
    let namespacePrefix: String?
    /// The control nodes' console archive, for lines about a node whose driver is gone.
    public let archive: ConsoleArchive?
    enum Work {
        case bringUp(NodeConfiguration)
        case reconfigure(old: NodeConfiguration, new: NodeConfiguration?)
        case fence
    }
    let queue = Mutex<[(node: NodeNumber, work: Work)]>([])
    let signal = DispatchSemaphore(value: 0)
    let running = Atomic<Bool>(false)
    let finished = DispatchSemaphore(value: 0)
    let threads = Mutex<[NodeNumber: EngineThread]>([:])
    let up = Mutex<[NodeNumber: ProcessorPersonality]>([:])
    let processes = Mutex<[NodeNumber: BackgroundProcess]>([:])
    let failures = Mutex<[String]>([])

    /// Whether personalities come up in this process's own network namespace (a node running
    /// as a process of its own, `plexus node`) rather than in per-node namespaces.
    let here: Bool

    /// A manager for nodes in namespaces named by `namespacePrefix` (the in-process platform),
    /// or, with `here`, for the one node of this process in its own namespace.
    public init(namespacePrefix: String?, archive: ConsoleArchive?, here: Bool = false) {
        self.namespacePrefix = namespacePrefix
        self.archive = archive
        self.here = here
    }

    /// Node `n`'s engine thread, to report through.
    public func attach(_ n: NodeNumber, _ t: EngineThread) { threads.withLock { $0[n] = t } }
    func detach(_ n: NodeNumber) { _ = threads.withLock { $0.removeValue(forKey: n) } }

    /// Called on node `n`'s engine thread when it is configured.
    public func arrived(_ n: NodeNumber, _ c: NodeConfiguration) { enqueue(n, .bringUp(c)) }
    /// Called on node `n`'s engine thread when the control nodes changed its personality while
    /// it runs (`new`), or released it to the free pool (nil).
    public func reconfigured(_ n: NodeNumber, from old: NodeConfiguration, to new: NodeConfiguration?) {
        enqueue(n, .reconfigure(old: old, new: new))
    }
    /// Called on node `n`'s engine thread when the servers fenced it.
    public func fenced(_ n: NodeNumber) { enqueue(n, .fence) }

    func enqueue(_ n: NodeNumber, _ w: Work) {
        queue.withLock { $0.append((n, w)) }
        signal.signal()
    }

    /// Whether node `n`'s personality is up (addresses added, workload started).
    public func isUp(_ n: NodeNumber) -> Bool { up.withLock { $0[n] != nil } }
    /// The personality node `n` carries now, if it is up.
    public func personality(of n: NodeNumber) -> ProcessorPersonality? { up.withLock { $0[n] } }
    /// What went wrong bringing personalities up (an address refused, a workload that did not start).
    public var errors: [String] { failures.withLock { $0 } }
    /// Node `n`'s workload, if one runs.
    public func workload(of n: NodeNumber) -> BackgroundProcess? { processes.withLock { $0[n] } }

    public func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let t = Thread { [self] in
            while running.load(ordering: .acquiring) {
                _ = signal.wait(timeout: .now() + .milliseconds(100))
                let batch = queue.withLock { q in
                    defer { q = [] }
                    return q
                }
                for (n, w) in batch {
                    switch w {
                    case .bringUp(let c): bringUp(n, c.personality)
                    case .reconfigure(let old, let new): reconfigure(n, from: old.personality, to: new?.personality)
                    case .fence:
                        console(n, "fenced: the personality moved away; the workload is stopped")
                        kill(n)
                    }
                }
            }
            finished.signal()
        }
        t.name = "plexus-personalities"
        t.start()
    }

    public func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        signal.signal()
        finished.wait()
    }

    /// The console log of node `n` at the control nodes.
    public func consolePath(_ n: NodeNumber) -> String? { archive?.path(of: n) }

    /// Adds a line to node `n`'s console: through its driver to the control nodes, or, when
    /// the node is gone, straight into the archive as the control node's note.
    public func console(_ n: NodeNumber, _ line: String) {
        let stamp = ISO8601DateFormatter().string(from: Date())
        let text = Array("[\(stamp)] plexus node \(n): \(line)\n".utf8)
        if !forward(n, text) { archive?.note(node: n, "node \(n) (gone): \(line)") }
    }

    /// Hands console bytes to node `n`'s driver; false when the node has no engine any more.
    func forward(_ n: NodeNumber, _ bytes: [UInt8]) -> Bool {
        guard let t = threads.withLock({ $0[n] }) else { return false }
        return (try? t.runAndWait { e -> Bool in
            guard let eth = RCLAN.on(e)?.service(VirtualEthernet.self) else { return false }
            eth.console(bytes)
            return true
        }) ?? false
    }

    func bringUp(_ n: NodeNumber, _ p: ProcessorPersonality) {
        let ns = namespacePrefix.map { NamespaceFabric.namespace(prefix: $0, Int(n)) }
        if ns != nil || here {
            for a in p.addresses { addAddress(n, ns: ns, a) }
            if let w = p.workload {
                console(n, "starting workload: \(w)")
                startWorkload(n, ns: ns, command: w)
            }
        }
        up.withLock { $0[n] = p }
        if let t = threads.withLock({ $0[n] }) {
            _ = try? t.runAndWait { e in
                (RCLAN.on(e)?.service(VirtualEthernet.self))?.report(.workloadStarted)
            }
        }
    }

    /// Puts address `a` on node `n`'s NIC (in namespace `ns`, or here), and says so on its console.
    func addAddress(_ n: NodeNumber, ns: String?, _ a: AddressBinding) {
        let dev = LANPlatform.interface(vlan: a.vlan)
        let r = NamespaceFabric.execute((ns.map { ["ip", "-n", $0] } ?? ["ip"]) + ["addr", "add", a.cidr, "dev", dev])
        if r.status != 0 && !r.output.contains("File exists") {
            failures.withLock { $0.append("node \(n): cannot add \(a.cidr) to \(dev): \(r.output)") }
        }
        console(n, "address \(a.cidr) on \(dev)")
    }

    /// Carries a change of node `n`'s personality into its namespace: addresses that left are
    /// removed (those on a NIC that is gone went with its TAP device), new ones added (all of
    /// a NIC's when its TAP device is new), and the workload restarted if its command changed
    /// (stopped on purpose: not a failure). Released to the free pool (`new` nil), the node
    /// stops its workload and waits as a spare.
    func reconfigure(_ n: NodeNumber, from old: ProcessorPersonality, to new: ProcessorPersonality?) {
        let ns = namespacePrefix.map { NamespaceFabric.namespace(prefix: $0, Int(n)) }
        guard let new else {
            if processes.withLock({ $0[n] }) != nil { console(n, "released to the free pool: the workload is stopped") }
            else { console(n, "released to the free pool") }
            stopWorkload(of: n)
            _ = up.withLock { $0.removeValue(forKey: n) }
            return
        }
        if ns != nil || here {
            let ip = ns.map { ["ip", "-n", $0] } ?? ["ip"]
            let oldMAC = Dictionary(old.nics.map { ($0.vlan, $0.mac) }, uniquingKeysWith: { a, _ in a })
            let newMAC = Dictionary(new.nics.map { ($0.vlan, $0.mac) }, uniquingKeysWith: { a, _ in a })
            let fresh = Set(newMAC.keys.filter { oldMAC[$0] != newMAC[$0] })  // NICs with a new TAP device
            for a in old.addresses where !new.addresses.contains(a) && newMAC[a.vlan] != nil && !fresh.contains(a.vlan) {
                let dev = LANPlatform.interface(vlan: a.vlan)
                let r = NamespaceFabric.execute(ip + ["addr", "del", a.cidr, "dev", dev])
                if r.status != 0 { failures.withLock { $0.append("node \(n): cannot remove \(a.cidr) from \(dev): \(r.output)") } }
                console(n, "address \(a.cidr) removed from \(dev)")
            }
            for a in new.addresses where !old.addresses.contains(a) || fresh.contains(a.vlan) { addAddress(n, ns: ns, a) }
            if old.workload != new.workload {
                if processes.withLock({ $0[n] }) != nil {
                    console(n, "workload changed: stopping the old one")
                    stopWorkload(of: n)
                }
                if let w = new.workload {
                    console(n, "starting workload: \(w)")
                    startWorkload(n, ns: ns, command: w)
                }
            }
        }
        up.withLock { $0[n] = new }
    }

    /// Starts node `n`'s workload with its output on a pipe that a thread of its own reads
    /// into the node's console, and watches it: if it ends while it is still node `n`'s
    /// workload (nobody stopped it), the node reports a failed process.
    func startWorkload(_ n: NodeNumber, ns: String?, command: String) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0, fcntl(fds[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(fds[1], F_SETFD, FD_CLOEXEC) == 0 else {
            failures.withLock { $0.append("node \(n): no pipe for its workload's output: \(String(cString: strerror(errno)))") }
            return
        }
        let writeEnd = FileHandle(fileDescriptor: fds[1], closeOnDealloc: true)
        do {
            let p = try BackgroundProcess((ns.map { ["ip", "netns", "exec", $0] } ?? []) + ["sh", "-c", command], output: writeEnd) { [self] pid, status in
                exited(n, pid: pid, status: status)
            }
            processes.withLock { $0[n] = p }
        } catch {
            close(fds[0])
            failures.withLock { $0.append("node \(n): cannot start its workload \(command): \(error)") }
            return
        }
        try? writeEnd.close()
        let readEnd = fds[0]
        let reader = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: ControlMessage.maximumConsolePiece)
            while true {
                let got = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
                if got < 0 && errno == EINTR { continue }
                guard got > 0 else { break }
                let bytes = Array(buffer[0..<got])
                if !forward(n, bytes) { archive?.append(node: n, incarnation: 0, sequence: 0, bytes) }
            }
            close(readEnd)
        }
        reader.name = "plexus-console-\(n)"
        reader.start()
    }

    /// A workload ended. Unless it was stopped on purpose (then it is no longer in
    /// ``processes``), that is a failed process: the node reports it.
    func exited(_ n: NodeNumber, pid: Int32, status: Int32) {
        let unexpected = processes.withLock { p -> Bool in
            guard let have = p[n], have.processIdentifier == pid else { return false }
            p[n] = nil
            return true
        }
        guard unexpected else { return }
        _ = up.withLock { $0.removeValue(forKey: n) }
        console(n, "workload ended by itself: " + FailoverCause.processFailed(status: status).description.replacingOccurrences(of: "its workload process ", with: ""))
        if let t = threads.withLock({ $0[n] }) {
            _ = try? t.runAndWait { e in
                (RCLAN.on(e)?.service(VirtualEthernet.self))?.reportProcessFailure(status: status)
            }
        }
    }

    /// Kills node `n`'s workload (SIGKILL, its whole process group) and forgets its
    /// personality here.
    func kill(_ n: NodeNumber) {
        let p = processes.withLock { $0.removeValue(forKey: n) }
        p?.kill()
        _ = up.withLock { $0.removeValue(forKey: n) }
    }

    public func killAll() {
        let all = processes.withLock { p in
            defer { p = [:] }
            return Array(p.values)
        }
        for p in all { p.kill() }
    }

    /// Stops node `n`'s workload on purpose (SIGKILL): not a failure, nothing is reported.
    public func stopWorkload(of n: NodeNumber) {
        processes.withLock { $0.removeValue(forKey: n) }?.kill()
    }

    /// Kills node `n`'s workload as a crash would (SIGKILL), leaving it registered as node
    /// `n`'s: the manager sees it end and the node reports a failed process. Returns whether a
    /// workload ran.
    @discardableResult
    public func crashWorkload(of n: NodeNumber) -> Bool {
        guard let p = processes.withLock({ $0[n] }) else { return false }
        p.signal(SIGKILL)
        return true
    }
}

extension PlatformDefinition {
    /// Puts the rest of each node's personality (its addresses and workload, beside the NICs
    /// `plan` was made with) and the free pool in `plan`: the one place a definition's
    /// per-node parts become ``LANPlan/personalities``.
    func apply(to plan: inout LANPlan) {
        plan.spares = spares
        for (n, a) in addresses { plan.personalities[n, default: ProcessorPersonality()].addresses = a }
        for (n, w) in workloads { plan.personalities[n, default: ProcessorPersonality()].workload = w }
        plan.failoverServers = failoverServers
        plan.revision = revision
    }
}

extension LANPlatform {
    /// Kills processing node `n` as `kill -9` kills a processor: its engine stops at once (it
    /// sends nothing more on either fabric, its TAP NICs vanish) and its workload is killed.
    /// The control nodes notice its silence and move its personality to a spare.
    public func kill(node n: NodeNumber) {
        personalities.detach(n)
        nodes[n]?.stopAndWait()
        processingNodes[n]?.disks?.stopAfterEngine()
        personalities.kill(n)
        personalities.console(n, "node \(n) killed")
    }

    /// Kills failover server `name` as `kill -9` kills a server process: every virtual node it
    /// hosts stops at once. The personalities they carried move to the next server's virtual
    /// nodes.
    public func kill(server name: String) {
        for n in definition.failoverServers.first(where: { $0.name == name })?.virtualNodes ?? [] { kill(node: n) }
    }

    /// The failovers control node `k` carried out, with their timelines.
    public func failovers(_ k: Int = 0) -> [FailoverRecord] {
        (try? server(k) { $0.failovers }) ?? []
    }

    /// Returns a fenced node to the free pool at both control nodes (an administrator's act,
    /// once it is repaired). It registers again as a spare when it next starts.
    public func returnToPool(_ n: NodeNumber) {
        for k in controls.indices { _ = try? server(k) { $0.returnToPool(n) } }
    }
}
