import Dispatch
import Foundation
import PlexusCore
import PlexusLAN
import PlexusRCLAN
import PlexusStorage
import Synchronization

/// Where a processing node offers its disks, and how many requests each may have in flight.
public struct DiskSettings: Sendable {
    /// The directory of the disks' NBD sockets, `t<target>-l<lun>.sock` each.
    public var directory: String
    /// Connections at once (all disks), requests in flight per connection, bytes per slot (a
    /// request may span every slot of its connection).
    public var lanes: Int
    public var depth: Int
    public var slotSize: Int
    /// How long a command waits for its STAT before it goes to the other control node.
    public var timeout: Duration

    /// The defaults hold 2 connections of 16 requests in 128 KiB slots (4 MiB of registered
    /// memory; a request may be 2 MiB). `slotSize` must not exceed the control nodes' slots.
    public init(directory: String, lanes: Int = 2, depth: Int = 16, slotSize: Int = 128 * 1024,
                timeout: Duration = .seconds(2)) {
        self.directory = directory
        self.lanes = lanes
        self.depth = depth
        self.slotSize = slotSize
        self.timeout = timeout
    }
}

/// A processing node's disks ("Processor-side Storage Logic"): one host adapter per control
/// node over the node's two storage RVIs to it, an initiator that re-issues to the other
/// control node, and an NBD export of each (target, LUN) its personality's map gives it. The
/// exports follow the personality: found by discovery when a configuration arrives (the node
/// registered, or took over a failed node's personality), withdrawn when the node is fenced.
///
/// Engine-thread state, except ``exports`` (a snapshot any thread reads). NBD servers start and
/// stop on a queue of their own: stopping one waits for its connections, whose last requests
/// need the engine.
public final class ProcessorDisks: @unchecked Sendable {
    public let settings: DiskSettings
    let adapters: [HostAdapter]
    let initiator: StorageInitiator
    let exporter: VirtualDiskExporter
    /// The running exports, by disk name.
    var servers: [String: NBDServer] = [:]
    let published = Mutex<[String: String]>([:])
    let lastError = Mutex<String?>(nil)
    let queue = DispatchQueue(label: "plexus.disks")
    /// A discovery asked for while one runs: run again when it ends.
    var again = false

    init(settings: DiskSettings, controls: Int) throws(StorageSetupError) {
        self.settings = settings
        adapters = (0..<controls).map { _ in HostAdapter(maxCommands: settings.lanes * settings.depth + 1, timeout: settings.timeout) }
        initiator = StorageInitiator(adapters: adapters, maxCommands: settings.lanes * settings.depth + 1)
        exporter = try VirtualDiskExporter(initiator: initiator, lanes: settings.lanes, depth: settings.depth,
                                           slotSize: settings.slotSize)
    }

    /// The disks offered now: name → NBD socket path.
    public var exports: [String: String] { published.withLock { $0 } }

    /// Why the last discovery or export failed, if it did.
    public var problem: String? { lastError.withLock { $0 } }

    /// The exporter's counters and the initiator's re-issues (engine thread).
    public var counters: (disks: VirtualDiskCounters, reissued: UInt64, failedEverywhere: UInt64) {
        (exporter.counters, initiator.reissued, initiator.failed)
    }

    /// Hosts the adapters, the initiator and the exporter, opens the two storage RVIs to each
    /// control node, and registers the disks' memory. Engine thread.
    func attach(controls: [NodeAddress], node: NodeNumber, pathMTU: Int, layer: RCLAN) throws {
        try FileManager.default.createDirectory(atPath: settings.directory, withIntermediateDirectories: true)
        for a in adapters { layer.host(a) }
        layer.host(initiator)
        layer.host(exporter)
        for (k, c) in controls.enumerated() where k < adapters.count {
            let a = adapters[k]
            let local = (VINumbering.storageCommandAtNode(control: k), VINumbering.storageDataAtNode(control: k))
            let remote = (VINumbering.storageCommandAtControl(node: node), VINumbering.storageDataAtControl(node: node))
            let command = try layer.open(NodeAddressBook.path(c, local: local.0, remote: remote.0), service: a,
                                         liveness: .onDemand)
            let data = try layer.open(NodeAddressBook.path(c, local: local.1, remote: remote.1), service: a,
                                      liveness: .onDemand)
            a.setRVIs(command: command, data: data)
            NodeAddressBook.follow(layer, command, node: c.node, localVI: local.0, remoteVI: remote.0, pathMTU: pathMTU)
            NodeAddressBook.follow(layer, data, node: c.node, localVI: local.1, remoteVI: remote.1, pathMTU: pathMTU)
        }
        try exporter.attach(layer: layer)
    }

    /// Finds the personality's disks and exports each (a disk no longer listed is withdrawn).
    /// Engine thread.
    func refresh(layer: RCLAN) {
        if exporter.isDiscovering {
            again = true
            return
        }
        exporter.discover(layer: layer) { [self] result in
            switch result {
            case .success(let disks):
                lastError.withLock { $0 = nil }
                let wanted = Dictionary(uniqueKeysWithValues: disks.map { ($0.name, $0) })
                // A disk is published once its socket listens, and unpublished before it stops.
                for (name, server) in servers where wanted[name] == nil {
                    servers[name] = nil
                    queue.async { [self] in
                        published.withLock { $0[name] = nil }
                        server.stop()
                    }
                }
                for (name, disk) in wanted where servers[name] == nil {
                    let server = NBDServer(socketPath: "\(settings.directory)/\(name).sock",
                                           exports: [exporter.export(disk, as: "")])
                    servers[name] = server
                    queue.async { [self] in
                        do throws(PlexusError) {
                            try server.start()
                            published.withLock { $0[name] = server.socketPath }
                        } catch {
                            lastError.withLock { $0 = "disk \(name): \(error)" }
                        }
                    }
                }
            case .failure(let error):
                lastError.withLock { $0 = "discovery: \(error)" }
            }
            if again {
                again = false
                refresh(layer: layer)
            }
        }
    }

    /// Withdraws every export (the node was fenced, or stops).
    func withdraw() {
        let all = Array(servers.values)
        servers = [:]
        queue.async { [self] in
            for s in all { s.stop() }
            published.withLock { $0 = [:] }
        }
    }

    /// Waits until the queue has started and stopped what it was asked to.
    public func settle() { queue.sync {} }

    /// Stops every NBD server once the engine has stopped (its lanes are dead, so connections
    /// end at once): what a processor that died leaves of its disks goes with it.
    func stopAfterEngine() {
        let all = Array(servers.values)
        servers = [:]
        queue.sync {}
        for s in all { s.stop() }
        published.withLock { $0 = [:] }
    }
}
