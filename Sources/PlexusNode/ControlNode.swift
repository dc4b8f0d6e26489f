import Logging
import PlexusCore
import PlexusLAN
import PlexusRCLAN
import PlexusStorage

/// A control node ("Network Architecture"): it creates every path of the platform and hosts the
/// platform's control services over one engine, its two fabric ports and one RCLAN layer: the
/// virtual LAN server (switching, ARP, membership, registration, failure detection and
/// failover, console routing) and any further services it is given.
///
/// The embedded platform (``LANPlatform``) and `plexus control` start control nodes through
/// this type, so both go through the same steps:
///
/// ```swift
/// let control = try ControlNode.start(node: 1, index: 0, plan: plan, engine: config)
/// defer { control.stop() }
/// let switched = try control.server { server, _ in server.switched }
/// ```
public final class ControlNode: Sendable {
    /// The node's number.
    public let node: NodeNumber
    /// Which control node it is: 0 (the first) or 1. It decides the management VI numbers
    /// (``VINumbering``).
    public let index: Int
    /// The engine thread everything of this node runs on.
    public let thread: EngineThread

    /// The host routes the node keeps to nodes on other subnets, if it keeps any.
    public let routes: RouteKeeper?

    init(node: NodeNumber, index: Int, thread: EngineThread, routes: RouteKeeper? = nil) {
        self.node = node
        self.index = index
        self.thread = thread
        self.routes = routes
    }

    /// Starts a control node: its engine, its RCLAN layer, its virtual LAN server for `plan`
    /// and the other `services`, then opens a management RVI to every processing node of the
    /// plan.
    /// - Parameters:
    ///   - failover: how the node detects failed processing nodes and moves their
    ///     personalities; nil: it does not.
    ///   - console: where the processing nodes' consoles go (``ConsoleArchive``); nil: nowhere.
    ///   - logLevel: the least level of the server's log lines that reach swift-log (label
    ///     `plexus.lan-server`, metadata `node`); every line is kept in memory regardless.
    /// - Throws: ``NodeStartError`` naming the step that failed; nothing is left running.
    public static func start(node: NodeNumber, index: Int, plan: LANPlan, engine: EngineConfiguration,
                             layer: RCLANConfiguration = RCLANConfiguration(),
                             failover: FailoverSettings? = FailoverSettings(), console: (any ConsoleSink)? = nil,
                             logLevel: Logger.Level = .notice, adapters: NodeAdapters = NodeAdapters(),
                             storage: StorageSettings? = nil,
                             services: [NodeServiceFactory] = []) throws(NodeStartError) -> ControlNode {
        let role = NodeRole.control(index: index)
        guard (0...1).contains(index) else {
            throw NodeStartError(node: node, role: role, step: .configuration,
                                 PlexusError(.configuration, "a control node's index is 0 or 1, not \(index)"))
        }
        do { try failover?.validate() } catch { throw NodeStartError(node: node, role: role, step: .configuration, error) }
        let server = NodeServiceFactory("virtual LAN server") {
            let s = try VirtualLANServer(plan: plan)
            s.failoverSettings = failover
            s.console = console
            s.setLogging(level: logLevel, node: node)
            return s
        }
        let thread = try NodeEngine.start(node: node, role: role, engine: engine, layer: layer, main: server,
                                          services: [NodeAddressBook.factory(node: node)] + services)
        do {
            try thread.runAndWait { e in
                guard let layer = RCLAN.on(e), let s = layer.service(VirtualLANServer.self) else {
                    throw PlexusError(.engineStopped, "the virtual LAN server is not running")
                }
                try s.openManagementRVIs(control: index, layer: layer)
            }
        } catch {
            thread.stopAndWait()
            throw NodeStartError(node: node, role: role, step: .managementRVIs, error)
        }
        // The address book: the control node's own entry, and an address-table RVI to every
        // processing node of the plan and to the other control node.
        var routes: RouteKeeper?
        do {
            routes = try NodeAddressBook.setOwnEntry(thread, node: node, adapters: adapters, pathMTU: engine.pathMTU,
                                                     namespace: engine.networkNamespace)
            var neighbours = plan.nodes.map {
                ($0.node, NodeAddressBook.path($0, local: VINumbering.addressTableAtControl(node: $0.node),
                                               remote: VINumbering.addressTableAtNode(control: index)))
            }
            if plan.controls.count == 2 {
                let between = VINumbering.addressTableBetweenControls, other = plan.controls[1 - index]
                neighbours.append((other.node, NodeAddressBook.path(other, local: between, remote: between)))
            }
            let opening = neighbours, pathMTU = engine.pathMTU
            try thread.runAndWait { e in
                guard let layer = RCLAN.on(e), let server = layer.service(VirtualLANServer.self) else {
                    throw PlexusError(.engineStopped, "control node \(node) stopped")
                }
                try NodeAddressBook.openNeighbours(layer, opening, pathMTU: pathMTU)
                // The management RVIs follow the processing nodes' entries too.
                for (n, rvi) in server.nodeRVI {
                    NodeAddressBook.follow(layer, rvi, node: n, localVI: VINumbering.managementAtControl(node: n),
                                           remoteVI: VINumbering.managementAtNode(control: index), pathMTU: pathMTU)
                }
                // A node a later plan adds gets the same: an address-table RVI, and its
                // management RVI kept at its entry's addresses.
                server.onNodeAdded = { n, rvi, layer in
                    NodeAddressBook.follow(layer, rvi, node: n.node, localVI: VINumbering.managementAtControl(node: n.node),
                                           remoteVI: VINumbering.managementAtNode(control: index), pathMTU: pathMTU)
                    try NodeAddressBook.openNeighbours(
                        layer, [(n.node, NodeAddressBook.path(n, local: VINumbering.addressTableAtControl(node: n.node),
                                                              remote: VINumbering.addressTableAtNode(control: index)))],
                        pathMTU: pathMTU)
                }
            }
        } catch {
            thread.stopAndWait()
            routes?.stop()
            throw NodeStartError(node: node, role: role, step: .service, service: "address-table distributor", error)
        }
        if let storage {
            do {
                try startStorage(storage, thread: thread, index: index, plan: plan, pathMTU: engine.pathMTU)
            } catch {
                thread.stopAndWait()
                routes?.stop()
                throw NodeStartError(node: node, role: role, step: .service, service: "storage target", error)
            }
        }
        return ControlNode(node: node, index: index, thread: thread, routes: routes)
    }

    /// Hosts the storage target: two RVIs to every processing node of the plan, each served
    /// with its map; a failover moves the map with the personality, and a node a later plan
    /// adds is served too (with no map).
    static func startStorage(_ settings: StorageSettings, thread: EngineThread, index: Int, plan: LANPlan,
                             pathMTU: Int) throws {
        let nodes = plan.nodes
        try thread.runAndWait { e in
            guard let layer = RCLAN.on(e), let server = layer.service(VirtualLANServer.self) else {
                throw PlexusError(.engineStopped, "the control node stopped")
            }
            let target = try StorageTarget(slots: settings.slots, slotSize: settings.slotSize,
                                           maxProcessors: max(64, nodes.count * 2))
            layer.host(target)
            let storage = ControlStorage(target: target, maps: settings.maps)
            storage.note = { [unowned server] line in server.note(line) }
            layer.host(storage)
            for n in nodes { try storage.add(n, control: index, pathMTU: pathMTU, layer: layer) }
            server.onPersonalityMoved = { failed, spare, layer in
                if let problem = storage.moved(from: failed, to: spare, layer: layer) {
                    server.note("storage map of node \(failed) not moved to node \(spare): \(problem)")
                }
            }
            let added = server.onNodeAdded
            server.onNodeAdded = { n, rvi, layer in
                try added?(n, rvi, layer)
                try storage.add(n, control: index, pathMTU: pathMTU, layer: layer)
            }
        }
    }

    /// Serves new storage maps (the platform store changed): each processing node whose map
    /// differs gets its new one at once. Does nothing on a node started without storage.
    public func updateStorage(_ maps: [NodeNumber: [StorageMapping]]) throws {
        try thread.runAndWait { e in
            guard let layer = RCLAN.on(e) else { throw PlexusError(.engineStopped, "the control node stopped") }
            layer.service(ControlStorage.self)?.update(maps, layer: layer)
        }
    }

    /// What the node's storage could not serve (mappings whose backing does not open), most
    /// recent last; empty without storage.
    public func storageProblems() throws -> [String] {
        try thread.runAndWait { e in RCLAN.on(e)?.service(ControlStorage.self)?.problems ?? [] }
    }

    /// Runs `body` with the node's virtual LAN server and its layer on the engine thread.
    /// - Throws: ``PlexusError`` when the node has stopped, or what `body` throws.
    public func server<T: Sendable>(_ body: @escaping @Sendable (VirtualLANServer, RCLAN) throws -> T) throws -> T {
        try NodeEngine.with(thread, VirtualLANServer.self, what: "control node \(node)'s virtual LAN server", body)
    }

    /// Runs `body` with the node's first service of type `S` and its layer on the engine thread.
    public func service<S: RVIDelegate, T: Sendable>(_ type: S.Type, _ body: @escaping @Sendable (S, RCLAN) throws -> T) throws -> T {
        try NodeEngine.with(thread, S.self, what: "control node \(node)'s \(S.self)", body)
    }

    /// Stops the node: its engine stops (pending messages fail), and it sends nothing more.
    public func stop() {
        thread.stopAndWait()
        routes?.stop()
    }
}
