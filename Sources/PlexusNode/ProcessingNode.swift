import Logging
import PlexusCluster
import PlexusCore
import PlexusLAN
import PlexusRCLAN
import PlexusStorage

/// A processing node ("Network Architecture"): it never opens a path of its own. It hosts the
/// virtual Ethernet driver (its virtual NICs, as TAP devices or in-process) and any further
/// services it is given over one engine, its two fabric ports and one RCLAN layer; its
/// personality (addresses, workload, console) is brought up by a ``PersonalityManager``.
///
/// The embedded platform (``LANPlatform``) and `plexus node` start processing nodes through
/// this type.
public final class ProcessingNode: Sendable {
    /// The node's number.
    public let node: NodeNumber
    /// The engine thread everything of this node runs on.
    public let thread: EngineThread

    /// The host routes the node keeps to peers on other subnets, if it keeps any.
    public let routes: RouteKeeper?

    /// The engine's path MTU (what the address book's paths are bounded by).
    let pathMTU: Int

    /// The node's disks, when it was started with ``DiskSettings``: attached at
    /// ``register(controls:)``, exported when a personality with a storage map arrives.
    public let disks: ProcessorDisks?

    init(node: NodeNumber, thread: EngineThread, routes: RouteKeeper? = nil, pathMTU: Int = 65536,
         disks: ProcessorDisks? = nil) {
        self.node = node
        self.thread = thread
        self.routes = routes
        self.pathMTU = pathMTU
        self.disks = disks
    }

    /// Starts a processing node: its engine, its RCLAN layer, its virtual Ethernet driver and the
    /// other `services`. It registers when ``register(controls:)`` is called.
    /// - Parameters:
    ///   - tap: whether its NICs are TAP devices (in this process's network namespace, or the
    ///     namespace the engine configuration names) or in-process frame NICs.
    ///   - personalities: brings the personality it is sent up and down (addresses, workload);
    ///     the node is attached to it.
    ///   - logLevel: the least level of the driver's log lines that reach swift-log (label
    ///     `plexus.ethernet`, metadata `node`); every line is kept in memory regardless.
    ///   - configure: called on the engine thread with the driver before anything runs (e.g. to
    ///     set ``VirtualEthernet/onFrame`` for in-process NICs).
    ///   - adapters: the node's own addresses for its entry in the address book, with any
    ///     alternate adapters (``NodeAdapters``); by default its ports' addresses.
    /// - Throws: ``NodeStartError`` naming the step that failed; nothing is left running.
    public static func start(node: NodeNumber, engine: EngineConfiguration, layer: RCLANConfiguration = RCLANConfiguration(),
                             tap: Bool, personalities: PersonalityManager? = nil, logLevel: Logger.Level = .notice,
                             configure: (@Sendable (VirtualEthernet) -> Void)? = nil,
                             adapters: NodeAdapters = NodeAdapters(), disks: DiskSettings? = nil,
                             services: [NodeServiceFactory] = []) throws(NodeStartError) -> ProcessingNode {
        guard (1...VINumbering.maximumNode).contains(node) else {
            throw NodeStartError(node: node, role: .processing, step: .configuration,
                                 PlexusError(.configuration, "node numbers are 1...\(VINumbering.maximumNode)"))
        }
        let driver = NodeServiceFactory("virtual Ethernet driver") {
            let eth = VirtualEthernet(node: node)
            eth.tapBackend = tap
            eth.setLogging(level: logLevel)
            if let personalities {
                eth.onConfigured = { c in personalities.arrived(node, c) }
                eth.onFenced = { personalities.fenced(node) }
                eth.onReconfigured = { old, new in personalities.reconfigured(node, from: old, to: new) }
            }
            configure?(eth)
            return eth
        }
        var routes: RouteKeeper?
        let thread = try NodeEngine.start(node: node, role: .processing, engine: engine, layer: layer, main: driver,
                                          services: [NodeAddressBook.factory(node: node)] + services)
        do {
            routes = try NodeAddressBook.setOwnEntry(thread, node: node, adapters: adapters, pathMTU: engine.pathMTU,
                                                     namespace: engine.networkNamespace)
            let pathMTU = engine.pathMTU
            try NodeEngine.with(thread, VirtualEthernet.self, what: "processing node \(node)'s virtual Ethernet driver") { eth, layer in
                guard let book = layer.service(TableDistributor.self) else { return }
                eth.addressBook = { [unowned book] peer, local, remote in
                    book.table.path(to: peer, localVI: local, remoteVI: remote, pathMTU: pathMTU)
                }
                eth.onDirectRVIOpened = { [unowned book, unowned layer] peer, rvi, local, remote in
                    book.follow(rvi, node: peer, localVI: local, remoteVI: remote, pathMTU: pathMTU, layer: layer)
                }
            }
        } catch {
            thread.stopAndWait()
            routes?.stop()
            throw NodeStartError(node: node, role: .processing, step: .service, service: "address-table distributor", error)
        }
        var storage: ProcessorDisks?
        if let disks {
            do {
                storage = try ProcessorDisks(settings: disks, controls: 2)
            } catch {
                thread.stopAndWait()
                routes?.stop()
                throw NodeStartError(node: node, role: .processing, step: .service, service: "disks", error)
            }
        }
        personalities?.attach(node, thread)
        return ProcessingNode(node: node, thread: thread, routes: routes, pathMTU: engine.pathMTU, disks: storage)
    }

    /// Opens the management RVI to each control node (``VINumbering``) and registers with both;
    /// registration is repeated until a control node answers. Opens the address-table RVI to
    /// each control node too: the node's address book fills from them.
    public func register(controls: [NodeAddress]) throws(NodeStartError) {
        let me = node, pathMTU = self.pathMTU, disks = self.disks
        do {
            try ethernet { eth, layer in
                if let disks {
                    // Before registering: the configuration that follows finds the disks.
                    try disks.attach(controls: controls, node: me, pathMTU: pathMTU, layer: layer)
                    let configured = eth.onConfigured, reconfigured = eth.onReconfigured, fenced = eth.onFenced
                    eth.onConfigured = { [unowned layer] c in
                        configured?(c)
                        disks.refresh(layer: layer)
                    }
                    eth.onReconfigured = { [unowned layer] old, new in
                        reconfigured?(old, new)
                        if new == nil { disks.withdraw() } else { disks.refresh(layer: layer) }
                    }
                    eth.onFenced = {
                        fenced?()
                        disks.withdraw()
                    }
                }
                try NodeAddressBook.openNeighbours(layer, controls.enumerated().map { k, c in
                    (c.node, NodeAddressBook.path(c, local: VINumbering.addressTableAtNode(control: k),
                                                  remote: VINumbering.addressTableAtControl(node: me)))
                }, pathMTU: pathMTU, liveness: .onDemand)
                try eth.register(controls: controls, layer: layer)
                // The management RVIs follow the control nodes' entries too.
                for (k, rvi) in eth.servers.enumerated() where k < controls.count {
                    NodeAddressBook.follow(layer, rvi, node: controls[k].node, localVI: VINumbering.managementAtNode(control: k),
                                           remoteVI: VINumbering.managementAtControl(node: me), pathMTU: pathMTU)
                }
            }
        } catch {
            throw NodeStartError(node: node, role: .processing, step: .registration, error)
        }
    }

    /// Each disk's statistics (operations, bytes, busy time, latency p50/p99), by name; empty
    /// without disks.
    public func diskStatistics() throws -> [String: DiskStatistics] {
        guard let disks else { return [:] }
        return try thread.runAndWait { _ in disks.exporter.statistics() }
    }

    /// Runs `body` with the node's virtual Ethernet driver and its layer on the engine thread.
    /// - Throws: ``PlexusError`` when the node has stopped, or what `body` throws.
    public func ethernet<T: Sendable>(_ body: @escaping @Sendable (VirtualEthernet, RCLAN) throws -> T) throws -> T {
        try NodeEngine.with(thread, VirtualEthernet.self, what: "processing node \(node)'s virtual Ethernet driver", body)
    }

    /// Runs `body` with the node's first service of type `S` and its layer on the engine thread.
    public func service<S: RVIDelegate, T: Sendable>(_ type: S.Type, _ body: @escaping @Sendable (S, RCLAN) throws -> T) throws -> T {
        try NodeEngine.with(thread, S.self, what: "processing node \(node)'s \(S.self)", body)
    }

    /// Stops the node's engine (it sends nothing more; its TAP devices close) and its disks'
    /// NBD servers.
    public func stop() {
        thread.stopAndWait()
        disks?.stopAfterEngine()
        routes?.stop()
    }
}
