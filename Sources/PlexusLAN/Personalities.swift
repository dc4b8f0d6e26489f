import Foundation
import PlexusCore
import PlexusRCLAN
import Synchronization

/// Brings a personality up on the node that is configured with it, off the engine threads: the
/// IPv4 addresses go on its TAP NICs (`ip -n NS addr add`) and its workload starts in its
/// network namespace (`ip netns exec NS sh -c COMMAND`, output appended to the node's console
/// log). The node then reports ``FailoverStep/workloadStarted`` to the servers: after a
/// failover, that is a step of the timeline.
///
/// Without a namespace fabric (the in-process NIC backend) there is no kernel stack to put
/// addresses on and no namespace to run a command in: the personality is up as soon as its
/// NICs are.
public final class PersonalityManager: Sendable {
    let namespacePrefix: String?
    /// Where each node's workload output goes: `<directory>/node<N>.log` (nil: discarded).
    public let consoleDirectory: String?
    let queue = Mutex<[(node: Int, configuration: NodeConfiguration)]>([])
    let signal = DispatchSemaphore(value: 0)
    let running = Atomic<Bool>(false)
    let finished = DispatchSemaphore(value: 0)
    let threads = Mutex<[Int: EngineThread]>([:])
    let up = Mutex<[Int: NodeConfiguration]>([:])
    let processes = Mutex<[Int: BackgroundProcess]>([:])
    let failures = Mutex<[String]>([])

    init(namespacePrefix: String?, consoleDirectory: String?) {
        self.namespacePrefix = namespacePrefix
        self.consoleDirectory = consoleDirectory
    }

    /// Node `n`'s engine thread, to report through.
    func attach(_ n: Int, _ t: EngineThread) { threads.withLock { $0[n] = t } }
    func detach(_ n: Int) { _ = threads.withLock { $0.removeValue(forKey: n) } }

    /// Called on node `n`'s engine thread when it is configured.
    func arrived(_ n: Int, _ c: NodeConfiguration) {
        queue.withLock { $0.append((n, c)) }
        signal.signal()
    }

    /// Whether node `n`'s personality is up (addresses added, workload started).
    public func isUp(_ n: Int) -> Bool { up.withLock { $0[n] != nil } }
    /// The personality node `n` carries now, if it is up.
    public func personality(of n: Int) -> NodeConfiguration? { up.withLock { $0[n] } }
    /// What went wrong bringing personalities up (an address refused, a workload that did not start).
    public var errors: [String] { failures.withLock { $0 } }
    /// Node `n`'s workload, if one runs.
    public func workload(of n: Int) -> BackgroundProcess? { processes.withLock { $0[n] } }

    func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let t = Thread { [self] in
            while running.load(ordering: .acquiring) {
                _ = signal.wait(timeout: .now() + .milliseconds(100))
                let batch = queue.withLock { q in
                    defer { q = [] }
                    return q
                }
                for (n, c) in batch { bringUp(n, c) }
            }
            finished.signal()
        }
        t.name = "plexus-personalities"
        t.start()
    }

    func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        signal.signal()
        finished.wait()
    }

    /// The console log of node `n`.
    public func consolePath(_ n: Int) -> String? { consoleDirectory.map { "\($0)/node\(n).log" } }

    /// Appends a line to node `n`'s console log (the node log part of it).
    public func console(_ n: Int, _ line: String) {
        guard let h = appending(n) else { return }
        let stamp = ISO8601DateFormatter().string(from: Date())
        h.write(Data("[\(stamp)] plexus: \(line)\n".utf8))
        try? h.close()
    }

    /// Node `n`'s console log opened for appending (O_APPEND: the workload and these lines
    /// interleave without overwriting each other).
    func appending(_ n: Int) -> FileHandle? {
        guard let path = consolePath(n) else { return nil }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        return fd < 0 ? nil : FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    func bringUp(_ n: Int, _ c: NodeConfiguration) {
        if let prefix = namespacePrefix {
            let ns = NamespaceFabric.namespace(prefix: prefix, n)
            for a in c.addresses {
                let dev = LANPlatform.interface(vlan: a.vlan)
                let r = NamespaceFabric.execute(["ip", "-n", ns, "addr", "add", a.cidr, "dev", dev])
                if r.status != 0 && !r.output.contains("File exists") {
                    failures.withLock { $0.append("node \(n): cannot add \(a.cidr) to \(dev): \(r.output)") }
                }
                console(n, "address \(a.cidr) on \(dev)")
            }
            if let w = c.workload {
                console(n, "starting workload: \(w)")
                let output = appending(n)
                do {
                    let p = try BackgroundProcess(["ip", "netns", "exec", ns, "sh", "-c", w], output: output)
                    processes.withLock { $0[n] = p }
                } catch {
                    failures.withLock { $0.append("node \(n): cannot start its workload \(w): \(error)") }
                }
            }
        }
        up.withLock { $0[n] = c }
        if let t = threads.withLock({ $0[n] }) {
            _ = try? t.runAndWait { e in
                (RCLAN.on(e)?.delegate as? VirtualEthernet)?.report(.workloadStarted)
            }
        }
    }

    /// Kills node `n`'s workload (SIGKILL) and forgets its personality here.
    func kill(_ n: Int) {
        let p = processes.withLock { $0.removeValue(forKey: n) }
        p?.kill()
        _ = up.withLock { $0.removeValue(forKey: n) }
    }

    func killAll() {
        let all = processes.withLock { p in
            defer { p = [:] }
            return Array(p.values)
        }
        for p in all { p.kill() }
    }
}

extension PlatformDefinition {
    /// Puts the personality parts of the definition (spares, addresses, workloads) in `plan`.
    func apply(to plan: inout LANPlan) {
        plan.spares = spares.map(UInt32.init)
        for (n, a) in addresses { plan.addresses[UInt32(n)] = a }
        for (n, w) in workloads { plan.workloads[UInt32(n)] = w }
    }
}

extension LANPlatform {
    /// Kills processing node `n` as `kill -9` kills a processor: its engine stops at once (it
    /// sends nothing more on either fabric, its TAP NICs vanish) and its workload is killed.
    /// The control nodes notice its silence and move its personality to a spare.
    public func kill(node n: Int) {
        personalities.detach(n)
        nodes[n]?.stopAndWait()
        personalities.kill(n)
        personalities.console(n, "node \(n) killed")
    }

    /// The failovers control node `k` carried out, with their timelines.
    public func failovers(_ k: Int = 0) -> [FailoverRecord] {
        (try? server(k) { $0.failovers }) ?? []
    }

    /// Returns a fenced node to the free pool at both control nodes (an administrator's act,
    /// once it is repaired). It registers again as a spare when it next starts.
    public func returnToPool(_ n: Int) {
        for k in controls.indices { _ = try? server(k) { $0.returnToPool(UInt32(n)) } }
    }
}
