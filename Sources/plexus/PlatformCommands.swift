import ArgumentParser
import Foundation
import Logging
import PlexusCore
import PlexusNode
import PlexusNamespaces
import PlexusLAN
import PlexusPlatform
import PlexusRCLAN
import PlexusStorage

// `plexus control` and `plexus node`: the two kinds of node as processes of their own
// ("Network Architecture"; the seed's control nodes and processing nodes). Both read the same
// definition file (PlatformFile.swift); each finds its fabric addresses, and the other nodes',
// from its node number.

/// A node stops cleanly on SIGINT, SIGTERM or SIGHUP: the signal only asks its main loop to
/// stop (ShutdownSignals), which then prints the counters; the engine threads never see it.
func stopOnSignals() { ShutdownSignals.stopGracefully() }

/// Waits up to `milliseconds` for a stop signal; returns the signal, or nil on timeout.
func waitForSignal(milliseconds: Int) -> Int32? { ShutdownSignals.waitForStop(milliseconds: milliseconds) }

func loadDefinition(_ path: String) throws -> PlatformDefinition {
    do {
        return try PlatformDefinition.load(path: path)
    } catch {
        throw ValidationError("--platform: \(error.message)")
    }
}

struct ControlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control",
        abstract: "Run a control node: the virtual LAN server for every VLAN of the platform.",
        discussion: """
            A control node creates every path ("Network Architecture"): it opens a management RVI \
            to each processing node (VI 16+N at the control node, VI 1+k at node N, for control \
            node k = 0 or 1), answers each node's registration with its data-link configuration \
            (its NICs' MACs and VLANs and how to reach the other members), refuses a node that is \
            on no VLAN, and switches broadcast, multicast, ARP and relayed frames between the \
            members of each VLAN. Run two (--index 0 and --index 1) for redundancy: the \
            processing nodes balance their traffic between them and fail over when one dies.

            Each processing node's console (its log, and its workload's output) is kept in \
            <state>/console/node<N>.log; `plexus console N` reads it through the management API.

            MACs come from the first control node's serial number and a counter kept in --state; \
            the NIC list (nics.json) is kept there too, so a restarted control node hands out the \
            same MACs. Two control nodes on one host share one state directory (it is locked \
            while it is read and written).

            With --store, the PANs and personalities come from the platform store in --state \
            (<state>/platform.sqlite, as `plexus api serve --state` keeps it) instead of the \
            file's vlans, spares, addresses and workloads; the file still gives the control \
            nodes, the fabric addresses, the MTU and the failover servers. The control node then \
            follows the store while it runs: a change made through the API (a NIC attached, an \
            address bound, a workload set, a personality migrated or removed, a processor added \
            or returned) reaches the running nodes at the next round (every 25 ms), and every failover it \
            carries out is written to the store (the personality moves, the failed node is \
            fenced, the timeline goes to the event log).

            With a `discovery` field in the definition (iSCSI portals and image directories, \
            docs/storage.md), the control node discovers the storage pool on a thread of its own \
            at start, every `everySeconds`, and, with --store, when an administrator asks \
            (`plexus storage discover`); each change is logged (label plexus.storage-pool), \
            assigned storage that vanished as an error naming the PANs and processors.

            The node runs until SIGINT or SIGTERM, logging registrations, refusals and failovers \
            to standard error as they happen (--log-level), then prints its counters. Run it \
            inside a network namespace with `ip netns exec NS plexus control ...` when the fabric \
            addresses live there: each namespace needs its own address on both fabrics (the \
            definition's fabricA and fabricB, e.g. a Linux bridge per fabric with a veth into each \
            namespace); the default loopback addresses do not leave a namespace.

            Example: plexus control --platform platform.json --index 0 --state /var/lib/plexus
                     plexus control --platform platform.json --index 1 --state /var/lib/plexus --store
            """)

    @Option(help: "The platform definition (JSON; see docs/virtual-lan.md).")
    var platform: String

    @Option(help: "Which control node this is: 0 (the first in controlNodes) or 1.")
    var index: Int = 0

    @Option(help: "The state directory (MAC counter and NIC list; the platform store with --store; the consoles).")
    var state: String = "/var/lib/plexus"

    @Flag(help: "Take PANs and personalities from the platform store in --state, follow its changes, and write failovers to it.")
    var store = false

    @OptionGroup(title: "This node's entry in the address book") var adapters: AdapterOptions

    @Option(help: "The least level of log lines written to standard error (trace, debug, info, notice, warning, error, critical); each line carries the time, the level, the service's label and the node.")
    var logLevel: Logger.Level = .info

    @Option(help: "Stop by itself after this many seconds (0: run until SIGINT or SIGTERM).")
    var seconds: Double = 0

    func validate() throws {
        let d = try loadDefinition(platform)
        guard d.controlNodes.indices.contains(index) else {
            throw ValidationError("--index: \(index), but the platform has \(d.controlNodes.count) control node(s) (0...\(d.controlNodes.count - 1))")
        }
    }

    func run() throws {
        let d = try loadDefinition(platform)
        let me = d.controlNodes[index]
        var platformStore: PlatformStore?
        let plan: LANPlan
        var storageMaps = d.storage
        if store {
            let s = try PlatformStore(path: state + "/platform.sqlite", serial: d.serial)
            let (fromStore, macs) = try s.definition(over: d)
            storageMaps = fromStore.storage
            plan = try fromStore.plan(nics: fromStore.nics(known: macs, allocator: MACAllocator(serial: d.serial, stateFile: state + "/mac-counter")))
            platformStore = s
        } else {
            plan = try PlanStore.resolve(d, stateDirectory: state)
        }
        stopOnSignals()
        var config = try d.engineConfiguration(node: me)
        let nodeAdapters = adapters.apply(to: &config)
        let layerConfiguration = RCLANConfiguration()
        let console = try ConsoleArchive(directory: state + "/console")
        let control = try ControlNode.start(node: me, index: index, plan: plan, engine: config, layer: layerConfiguration,
                                            console: console, logLevel: logLevel, adapters: nodeAdapters,
                                            storage: storageMaps.isEmpty ? nil : StorageSettings(maps: storageMaps))
        let t = control.thread
        defer { control.stop() }
        print("plexus control: control node \(me) (index \(index) of \(d.controlNodes.count)) on fabric A \(nodeAdapters.primaryA ?? config.fabricA), fabric B \(nodeAdapters.primaryB ?? config.fabricB)")
        print("  state \(state): \(plan.nics.count) NICs" + (platformStore != nil ? " from the platform store (revision \(plan.revision)), followed" : ""))
        for (n, map) in storageMaps.sorted(by: { $0.key < $1.key }) {
            print("  storage of node \(n): " + map.map(\.entry).joined(separator: ", "))
        }
        for v in Set(plan.nics.map(\.vlan)).sorted() {
            let members = plan.nics.filter { $0.vlan == v }.map { "node \($0.node) \($0.mac)" }
            print("  \(v): \(members.joined(separator: ", "))")
        }
        print("ready")
        fflush(nil)
        let started = nowNanos()
        let publisher = platformStore.map { StorageStatisticsPublisher(store: $0, control: me) { try control.storageStatistics() } }
        let follower = platformStore.map {
            PlatformFollower(store: $0, base: d, platform: RunningControl(control: control, base: d, plan: plan,
                                                                          macState: state + "/mac-counter"),
                             revision: plan.revision)
        }
        let rediscovery = Self.startRediscovery(d, node: me, store: platformStore, maps: storageMaps, logLevel: logLevel)
        defer { rediscovery?.stop() }
        var stopSignal: Int32?
        while stopSignal == nil {
            stopSignal = waitForSignal(milliseconds: follower == nil ? 200 : 25)
            if let follower {
                for line in follower.poll() { print("[\(String(format: "%.3f", Double(nowNanos() - started) / 1e9)) s] store: \(line)") }
            }
            if let line = publisher?.poll() { print("[\(String(format: "%.3f", Double(nowNanos() - started) / 1e9)) s] store: \(line)") }
            if seconds > 0 && Double(nowNanos() - started) / 1e9 >= seconds { break }
        }
        let summary = try t.runAndWait { e -> String in
            guard let s = RCLAN.on(e)?.service(VirtualLANServer.self) else { return "" }
            return "\(s.registrations) registrations, \(s.refusedRegistrations) refused; \(s.switched) frames switched, "
                + "\(s.copiesSent) copies sent, \(s.copiesDropped) dropped; ARP \(s.arpSwitched) switched, "
                + "\(s.arpRefused) refused; \(s.malformed) malformed; \(s.table.refusals.values.reduce(0, +)) refused by the table"
        }
        print("control node \(me) stopping\(stopSignal.map { " on signal \($0)" } ?? ""): \(summary)")
    }
}

/// The control node of this process, as the platform store's follower sees it.
final class RunningControl: FollowingPlatform {
    let control: ControlNode
    var thread: EngineThread { control.thread }
    let base: PlatformDefinition
    let macState: String
    var plan: LANPlan
    init(control: ControlNode, base: PlatformDefinition, plan: LANPlan, macState: String) {
        self.control = control
        self.base = base
        self.plan = plan
        self.macState = macState
    }
    var failoverServers: [FailoverServer] { base.failoverServers }

    func adopt(_ definition: PlatformDefinition, macs: [VirtualNICBinding]) throws -> [PlanAdoption] {
        var next = try definition.plan(nics: definition.nics(known: macs, allocator: MACAllocator(serial: base.serial, stateFile: macState)))
        next.controls = plan.controls
        let offered = next
        let result = try thread.runAndWait { e -> PlanAdoption in
            guard let layer = RCLAN.on(e), let server = layer.service(VirtualLANServer.self) else { return .refused("no server") }
            return server.adopt(offered, layer: layer)
        }
        if case .adopted = result {
            plan = next
            // The storage maps follow the store too (a node started without storage ignores them).
            try control.updateStorage(definition.storage)
        }
        return [result]
    }

    func failoverRecords() -> [FailoverRecord] {
        (try? thread.runAndWait { e -> [FailoverRecord] in (RCLAN.on(e)?.service(VirtualLANServer.self))?.failovers ?? [] }) ?? []
    }
}

struct NodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run a processing node: its virtual NICs on the platform's virtual LANs.",
        discussion: """
            A processing node never opens a path itself. It opens its management RVI to each \
            control node (numbered by rule), registers with both, and sets itself up from the \
            configuration it is sent: a virtual NIC per VLAN it is on, with its MAC, and a direct \
            RVI to every node it shares a VLAN with. A node on no VLAN is refused (exit status 3).

            Backends: `tap` (the default) gives each NIC a TAP device pvl<VLAN> in this process's \
            network namespace, at MTU 16872 with checksum offload, so the kernel's own IP stack, \
            ARP and applications run over the virtual LAN (needs CAP_NET_ADMIN and /dev/net/tun); \
            `frames` keeps the NICs inside this process and only counts what arrives (for checking \
            a platform without root).

            --address VLAN=CIDR adds an IPv4 address to the NIC on that VLAN once it exists (what \
            an administrator or DHCP does on a real NIC); repeat it for aliases. The personality \
            in the definition (`addresses`, `workload`) comes with the configuration: its \
            addresses go on the TAP NICs and its workload starts in this namespace, its output \
            streamed to the control nodes (`plexus console N`). A spare (`spares`, or a virtual \
            node of `failoverServers`) waits in standby until the control nodes give it a failed \
            node's personality.

            The node runs until SIGINT or SIGTERM, printing what happens (its log lines on standard \
            error, --log-level), then prints its counters. Run one per network namespace, e.g. \
            `ip netns exec pn3 plexus node --platform platform.json --node 3 --address \
            10=10.10.0.3/24`, where each namespace has its own address on both fabrics (the \
            definition's fabricA and fabricB templates); the default loopback addresses do not \
            leave a namespace.
            """)

    @Option(help: "The platform definition (JSON; see docs/virtual-lan.md).")
    var platform: String

    @Option(help: "This node's number (one of processingNodes).")
    var node: NodeNumber

    @Option(help: "tap (TAP devices, needs CAP_NET_ADMIN) or frames (in-process, counts frames).")
    var backend: Backend = .tap

    @Option(help: "An IPv4 address for the NIC on a VLAN, as VLAN=a.b.c.d/len (repeatable; TAP backend).")
    var address: [String] = []

    @Option(help: "How long to wait for a control node to answer before giving up.")
    var wait: Double = 30

    @Option(help: "Where this node offers the disks of the personality it holds, as NBD sockets t<TARGET>-l<LUN>.sock (given, or when the definition has storage: default /tmp/plexus-node<N>-disks). With control nodes following the platform store (plexus control --store), give it to use the store's storage maps.")
    var disks: String?

    @OptionGroup(title: "This node's entry in the address book") var adapters: AdapterOptions

    @Option(help: "The least level of log lines written to standard error (trace, debug, info, notice, warning, error, critical); each line carries the time, the level, the service's label and the node.")
    var logLevel: Logger.Level = .info

    @Option(help: "Stop by itself after this many seconds (0: run until SIGINT or SIGTERM).")
    var seconds: Double = 0

    enum Backend: String, ExpressibleByArgument, CaseIterable { case tap, frames }

    func parsedAddresses() throws -> [(VLANID, String)] {
        try address.map { a in
            let parts = a.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let n = Int(parts[0]), let v = VLANID(n), parts[1].contains("/"),
                  isIPv4CIDR(parts[1]) else {
                throw ValidationError("--address '\(a)': expected VLAN=a.b.c.d/len, e.g. 10=10.10.0.3/24")
            }
            return (v, parts[1])
        }
    }

    func validate() throws {
        let d = try loadDefinition(platform)
        guard d.processingNodes.contains(node) else {
            throw ValidationError("--node: \(node) is not one of the platform's processing nodes \(d.processingNodes)")
        }
        let addresses = try parsedAddresses()
        if !addresses.isEmpty && backend != .tap { throw ValidationError("--address needs the TAP backend") }
        for (v, _) in addresses where !(d.vlans[v]?.contains(node) ?? false) {
            throw ValidationError("--address: node \(node) has no NIC on \(v)")
        }
        if backend == .tap && !FileManager.default.fileExists(atPath: "/dev/net/tun") {
            throw ValidationError("--backend tap: /dev/net/tun does not exist here (use --backend frames)")
        }
    }

    func run() throws {
        let d = try loadDefinition(platform)
        let addresses = try parsedAddresses()
        let controls = try d.controlAddresses()
        stopOnSignals()
        var config = try d.engineConfiguration(node: node)
        let nodeAdapters = adapters.apply(to: &config)
        let n = node, tap = backend == .tap
        // The personality this node is sent (now, or when it takes one over as a spare): its
        // addresses and workload come up in this process's namespace; the workload's output
        // goes to the control nodes' console archive; a workload that ends by itself is
        // reported as a failed process.
        let personalities = PersonalityManager(namespacePrefix: nil, archive: nil, here: tap)
        let diskSettings = d.storage.isEmpty && disks == nil ? nil : DiskSettings(directory: disks ?? "/tmp/plexus-node\(n)-disks")
        let processing = try ProcessingNode.start(node: n, engine: config, tap: tap, personalities: personalities,
                                                  logLevel: logLevel, configure: { eth in
            if !tap { eth.onFrame = { _, _ in } }
        }, adapters: nodeAdapters, disks: diskSettings)
        personalities.start()
        defer {
            personalities.stop()
            personalities.killAll()
            processing.stop()
        }
        func ethernet<T: Sendable>(_ body: @escaping @Sendable (VirtualEthernet) throws -> T) throws -> T {
            try processing.ethernet { eth, _ in try body(eth) }
        }
        try processing.register(controls: controls)
        print("plexus node: node \(node) on fabric A \(nodeAdapters.primaryA ?? config.fabricA), fabric B \(nodeAdapters.primaryB ?? config.fabricB); registering with "
              + controls.map { "control node \($0.node) (\($0.fabricA), \($0.fabricB))" }.joined(separator: " and "))
        fflush(nil)
        var state = VirtualEthernet.Registration.pending
        let registered = waitUntil(seconds: wait) {
            state = (try? ethernet { $0.registration }) ?? .pending
            if case .pending = state { return false }
            return true
        }
        guard registered else {
            throw CLIError("no control node answered within \(wait) s: is `plexus control` running, and do the fabric addresses in \(platform) reach it?")
        }
        if case .refused(let reason) = state {
            print("refused: \(reason)")
            throw ExitCode(3)
        }
        if state == .standby {
            print("standby: a spare (free pool, or a virtual node of a failover server); waiting for a personality")
        } else if let c = try ethernet({ $0.configuration }) {
            print("configured: MTU \(c.mtu)")
            for nic in c.personality.nics {
                print("  NIC \(tap ? LANPlatform.interface(vlan: nic.vlan) + " " : "")\(nic.mac) on \(nic.vlan)\(nic.promiscuousAllowed ? " (may listen promiscuously)" : "")")
            }
            for p in c.peers {
                print("  peer node \(p.address.node): MACs \(p.macs.map(\.description).joined(separator: ", ")), direct RVI VI \(p.localVI)")
            }
            for a in c.personality.addresses { print("  address \(a.cidr) on \(LANPlatform.interface(vlan: a.vlan)) (personality)") }
            if let w = c.personality.workload { print("  workload: \(w)") }
        }
        for (v, cidr) in addresses {
            try NamespaceFabric.run(["ip", "addr", "add", cidr, "dev", LANPlatform.interface(vlan: v)])
            print("  address \(cidr) on \(LANPlatform.interface(vlan: v))")
        }
        // "ready" means usable: a configured node's personality (its addresses, its workload
        // started) is up, not just its NICs.
        if state == .configured && !waitUntil(seconds: wait, { personalities.isUp(n) || !personalities.errors.isEmpty }) {
            throw CLIError("node \(n)'s personality did not come up within \(wait) s")
        }
        for e in personalities.errors { print(e) }
        print("ready")
        fflush(nil)
        let started = nowNanos()
        var stopSignal: Int32?
        var shownFailures = personalities.errors.count
        var shownDisks: [String: String] = [:]
        var shownProblem: String?
        while stopSignal == nil {
            stopSignal = waitForSignal(milliseconds: 200)
            let failures = personalities.errors
            for e in failures.dropFirst(shownFailures) { print(e) }
            shownFailures = failures.count
            if let storage = processing.disks {
                let now = storage.exports
                for (name, path) in now.sorted(by: { $0.key < $1.key }) where shownDisks[name] == nil {
                    print("disk \(name): nbd+unix:///?socket=\(path)")
                }
                for name in shownDisks.keys.sorted() where now[name] == nil { print("disk \(name) withdrawn") }
                shownDisks = now
                if let p = storage.problem, p != shownProblem { print("disks: \(p)") }
                shownProblem = storage.problem
            }
            fflush(nil)
            if seconds > 0 && Double(nowNanos() - started) / 1e9 >= seconds { break }
        }
        let summary = try ethernet { e in
            "\(e.sentDirect) frames sent direct, \(e.sentToServers) through the servers, \(e.delivered) delivered, "
                + "\(e.refused) refused, \(e.dropped) dropped, \(e.rerouted) rerouted after a failure, "
                + "\(e.lostInFailover) lost in failover, \(e.relayedFallbacks) relayed as a last resort"
        }
        print("node \(node) stopping\(stopSignal.map { " on signal \($0)" } ?? ""): \(summary)")
        for (name, s) in ((try? processing.diskStatistics()) ?? [:]).sorted(by: { $0.key < $1.key }) {
            print(String(format: "disk %@: %llu operations (%llu reads, %llu writes, %llu flushes, %llu errors), %llu bytes read, %llu written, busy %.3f s, latency p50 %.0f µs p99 %.0f µs",
                         name as NSString, s.operations, s.reads, s.writes, s.flushes, s.errors, s.bytesRead, s.bytesWritten,
                         s.busySeconds, s.p50Microseconds, s.p99Microseconds))
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
