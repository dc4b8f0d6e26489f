import Foundation
import PlexusCore
import PlexusLAN
import PlexusNamespaces
import PlexusRCLAN
import PlexusStorage
import Synchronization

/// The platform running in this process: every control node and processing node on an engine
/// thread of its own, in a network namespace each when a ``NamespaceFabric`` is given (then each
/// NIC is a TAP device in its node's namespace and the kernel's own stack runs over it) or on
/// loopback addresses otherwise (the in-process frame API).
///
/// Start-up follows the seed: the first control node allocates every NIC's MAC, both control
/// nodes get the same resolved ``LANPlan`` and open a management RVI to every processing node;
/// each processing node opens its management RVIs (by ``VINumbering``), registers with both
/// control nodes, and sets itself up from the configuration it is sent.
public final class LANPlatform {
    public let definition: PlatformDefinition
    public let fabric: NamespaceFabric?
    public internal(set) var plan = LANPlan(controls: [], nodes: [], nics: [])
    /// The control nodes, by index (nil: stopped).
    public private(set) var controlNodes: [ControlNode?] = []
    /// The processing nodes, by number.
    public private(set) var processingNodes: [NodeNumber: ProcessingNode] = [:]
    /// The control nodes' engine threads, by index (nil: stopped).
    public var controls: [EngineThread?] { controlNodes.map { $0?.thread } }
    /// The processing nodes' engine threads, by number.
    public var nodes: [NodeNumber: EngineThread] { processingNodes.mapValues(\.thread) }
    var controlConfigurations: [EngineConfiguration] = []
    /// What the control nodes serve as storage (nil: no storage).
    var storageSettings: StorageSettings?
    /// Brings personalities up on the nodes that get them (Personalities.swift).
    public let personalities: PersonalityManager
    /// The control nodes' console archive (both control nodes of this process share it).
    public let archive: ConsoleArchive?

    /// Starts everything and waits (up to `seconds`) until every node that is on a VLAN is
    /// configured.
    /// - Parameters:
    ///   - macState: the first control node's MAC counter file (it survives restarts).
    ///   - fabric: namespaces and bridges to run in (needs root), or nil for loopback.
    ///   - nodePollMode: the processing nodes' engines' mode (busy-poll trades a core each for
    ///     latency, and pins the nth processing node's engine to CPU n when there are at
    ///     least as many CPUs as processing nodes);
    ///     control nodes always block.
    ///   - knownMACs: NICs whose MACs are already decided (from the platform store); others get
    ///     new MACs from `macState`.
    ///   - consoleDirectory: the control nodes' console archive (``ConsoleArchive``: every
    ///     node's workload output and log, `node<N>.log`); nil keeps no console.
    ///   - disksDirectory: where processing node *n* offers the disks of the definition's
    ///     storage maps, `node<n>/t<T>-l<L>.sock` (NBD on a Unix socket); nil: beside the MAC
    ///     state file, `<macState>-disks`. Used only when the definition has storage.
    /// The first control node's MAC counter file.
    public let macState: String

    public init(_ definition: PlatformDefinition, macState: String, fabric: NamespaceFabric? = nil,
                layerConfiguration: RCLANConfiguration = RCLANConfiguration(), nodePollMode: PollMode = .blocking,
                failover: FailoverSettings? = FailoverSettings(), knownMACs: [VirtualNICBinding] = [],
                consoleDirectory: String? = nil, disksDirectory: String? = nil, seconds: Double = 10) throws {
        try definition.validate()
        try failover?.validate()
        self.definition = definition
        self.macState = macState
        self.fabric = fabric
        let archive = try consoleDirectory.map { try ConsoleArchive(directory: $0) }
        self.archive = archive
        let personalities = PersonalityManager(namespacePrefix: fabric?.prefix, archive: archive)
        self.personalities = personalities
        func configuration(_ n: NodeNumber) -> EngineConfiguration {
            if let fabric {
                var c = fabric.configuration(node: Int(n))
                c.poolFrames = 1024
                c.receiveBuffers = 1024
                return c
            }
            var c = EngineConfiguration.loopback(node: UInt8(truncatingIfNeeded: n.rawValue))
            c.name = "node\(n)"
            return c
        }
        let tap = fabric != nil
        // The processing nodes first, so that their addresses are known.
        var addresses: [NodeNumber: NodeAddress] = [:]
        do {
            let cpus = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
            for (i, n) in definition.processingNodes.enumerated() {
                var c = configuration(n)
                c.pollMode = nodePollMode
                // Busy-polling engines are pinned one per CPU when there are CPUs enough: left to
                // the scheduler, two spinners can share a CPU (each waiting out the other's
                // slice, milliseconds) while another CPU runs only sleepers. With more spinners
                // than CPUs, pinning would force two onto one CPU, so the scheduler decides.
                if nodePollMode == .busyPoll && c.cpu == nil && definition.processingNodes.count <= cpus { c.cpu = i }
                let disks = definition.storage.isEmpty ? nil
                    : DiskSettings(directory: "\(disksDirectory ?? macState + "-disks")/node\(n)")
                let node = try ProcessingNode.start(node: n, engine: c, layer: layerConfiguration, tap: tap,
                                                    personalities: personalities, disks: disks)
                let t = node.thread
                processingNodes[n] = node
                addresses[n] = NodeAddress(node: n, info: t.info)
            }
            // MACs from the first control node's serial and persistent counter, in a stable order.
            var known: [NICKey: MACAddress] = [:]
            for b in knownMACs { known[NICKey(node: b.node, vlan: b.vlan)] = b.mac }
            let nics = try definition.nics(allocator: MACAllocator(serial: definition.serial, stateFile: macState), known: known)
            // Control nodes: fixed ports so that a restarted one is found where it was.
            var controlAddresses: [NodeAddress] = []
            for c in definition.controlNodes {
                var cfg = configuration(c)
                // A control node's sockets take every processing node's answers to its probes
                // (2 legs × N every 5 ms) besides their traffic: room for a few hundred
                // milliseconds of them while its engine waits for a CPU.
                cfg.socketBufferBytes = max(cfg.socketBufferBytes, definition.processingNodes.count * (512 << 10))
                if fabric == nil {
                    let probe = try EngineThread.start(cfg)
                    let a = NodeAddress(node: c, info: probe.info)
                    probe.stopAndWait()
                    cfg.fabricA = a.fabricA
                    cfg.fabricB = a.fabricB
                }
                controlConfigurations.append(cfg)
                controlAddresses.append(NodeAddress(node: c, fabricA: cfg.fabricA, fabricB: cfg.fabricB))
            }
            plan = LANPlan(controls: controlAddresses, nodes: definition.processingNodes.map { addresses[$0]! },
                           nics: nics, mtu: definition.mtu)
            definition.apply(to: &plan)
            controlNodes = Array(repeating: nil, count: definition.controlNodes.count)
            if !definition.storage.isEmpty { storageSettings = StorageSettings(maps: definition.storage) }
            personalities.start()
            for k in controlNodes.indices { try startControl(k, layerConfiguration: layerConfiguration, failover: failover) }
            for n in definition.processingNodes { personalities.console(n, "node \(n) started") }
            for n in definition.processingNodes { try processingNodes[n]!.register(controls: plan.controls) }
        } catch {
            for (_, node) in processingNodes { node.stop() }
            processingNodes = [:]
            for case let c? in controlNodes { c.stop() }
            personalities.stop()
            throw error
        }
        let members = Set(definition.vlans.values.flatMap { $0 })
        let spares = definition.spares + definition.failoverServers.flatMap { $0.virtualNodes }
        let ready = waitUntil(seconds: seconds) {
            members.allSatisfy { n in (try? self.ethernet(n) { $0.registration == .configured }) ?? false }
                && spares.allSatisfy { n in (try? self.ethernet(n) { $0.registration == .standby }) ?? false }
                && members.allSatisfy { personalities.isUp($0) }
        }
        if !ready {
            let states = (members.sorted() + spares).map { n in "node \(n): \((try? self.ethernet(n) { "\($0.registration)" }) ?? "?")" }
            // What the control nodes last did (a failover at start-up, a refusal) says why.
            let said = controlNodes.indices.compactMap { k -> String? in
                guard let lines = try? self.server(k, { Array($0.log.suffix(4)) }), !lines.isEmpty else { return nil }
                return "control node \(definition.controlNodes[k]) last logged: " + lines.joined(separator: "; ")
            }
            stop()
            throw PlexusError(.timedOut, "processing nodes not configured within \(seconds) s: \(states.joined(separator: ", "))"
                + said.map { "\n  " + $0 }.joined())
        }
        // Up: a node silent from now on is failed after the usual confirmation.
        isUp = true
        for k in controlNodes.indices { _ = try? server(k) { $0.platformIsUp() } }
    }

    /// Starts (or restarts) control node `k` (0 or 1) with the plan.
    /// - Throws: ``NodeStartError`` naming what failed.
    public func startControl(_ k: Int, layerConfiguration: RCLANConfiguration = RCLANConfiguration(),
                             failover: FailoverSettings? = FailoverSettings()) throws {
        guard controlNodes[k] == nil else { return }
        let c = try ControlNode.start(node: definition.controlNodes[k], index: k, plan: plan,
                                      engine: controlConfigurations[k], layer: layerConfiguration,
                                      failover: failover, console: archive, storage: storageSettings)
        controlNodes[k] = c
        // The platform says when it is up (init, once every node is configured); a control node
        // restarted in a platform that is up knows at once.
        let up = isUp
        _ = try? c.server { s, _ in
            s.startupEndsAfterRegistration = false
            if up { s.platformIsUp() }
        }
    }

    /// Whether ``init`` found every node configured and its workload up.
    public private(set) var isUp = false

    /// Stops control node `k` as if it died: its engine stops and sends nothing more.
    public func stopControl(_ k: Int) {
        controlNodes[k]?.stop()
        controlNodes[k] = nil
    }

    /// Runs `body` with node `n`'s driver on its engine thread.
    public func ethernet<T: Sendable>(_ n: NodeNumber, _ body: @escaping @Sendable (VirtualEthernet) throws -> T) throws -> T {
        guard let node = processingNodes[n] else { throw PlexusError(.configuration, "no processing node \(n)") }
        return try node.ethernet { eth, _ in try body(eth) }
    }

    /// Runs `body` with control node `k`'s server on its engine thread.
    public func server<T: Sendable>(_ k: Int, _ body: @escaping @Sendable (VirtualLANServer) throws -> T) throws -> T {
        guard let c = controlNodes[k] else { throw PlexusError(.engineStopped, "control node \(k) is stopped") }
        return try c.server { s, _ in try body(s) }
    }

    /// The disks processing node `n` offers now: name (`t<T>-l<L>`) → NBD socket path.
    public func disks(node n: NodeNumber) -> [String: String] { processingNodes[n]?.disks?.exports ?? [:] }

    /// Why processing node `n`'s last discovery or export of its disks failed, if it did.
    public func diskProblem(node n: NodeNumber) -> String? { processingNodes[n]?.disks?.problem }

    /// Node `n`'s NIC on `vlan`.
    public func mac(node n: NodeNumber, vlan: VLANID) -> MACAddress? {
        plan.nics.first { $0.node == n && $0.vlan == vlan }?.mac
    }

    /// The TAP interface name of node `n`'s NIC on `vlan` (TAP backend).
    public static func interface(vlan: VLANID) -> String { TAP.interface(vlan: vlan) }

    /// Adds an IPv4 address (`a.b.c.d/len`) to node `n`'s NIC on `vlan` (TAP backend): what an
    /// administrator or DHCP does on a real NIC.
    public func addAddress(_ cidr: String, node n: NodeNumber, vlan: VLANID) throws {
        guard let fabric else { throw PlexusError(.configuration, "IP addresses need the TAP backend (a namespace fabric)") }
        try NamespaceFabric.run(["ip", "-n", fabric.namespace(Int(n)), "addr", "add", cidr, "dev", Self.interface(vlan: vlan)])
    }

    public func stop() {
        personalities.stop()
        for k in controlNodes.indices { stopControl(k) }
        for (_, node) in processingNodes { node.stop() }
        processingNodes = [:]
        personalities.killAll()
    }

    deinit { stop() }
}

extension NodeAddress {
    init(node: NodeNumber, info: EngineInfo) {
        self.init(node: node, fabricA: FabricAddress(info.ports[0].address)!, fabricB: FabricAddress(info.ports[1].address)!)
    }
}
