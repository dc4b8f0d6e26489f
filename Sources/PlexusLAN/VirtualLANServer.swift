import CPlexus
#if canImport(Glibc)
import Glibc
#endif
import Logging
import PlexusCore
import PlexusRCLAN

/// The virtual LAN server on a control node ("Virtual LAN Server"): it receives the frames the
/// processing nodes cannot deliver directly (broadcast, multicast, and unicast whose direct RVI
/// is not usable) over each node's management RVI, and switches them by its
/// ``VirtualLANTable``: clones for broadcast and multicast, relay of last resort for unicast.
///
/// Engine-thread only, like the ``RCLAN`` layer it is the delegate of.
public final class VirtualLANServer: RVIDelegate {
    public var table = VirtualLANTable()
    /// Each processing node's management RVI.
    public internal(set) var nodeRVI: [NodeNumber: RVI] = [:]
    var nodeOf: [RVI: NodeNumber] = [:]
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: FrameLayout.maxPayload, alignment: 8)
    public private(set) var switched: UInt64 = 0
    public private(set) var copiesSent: UInt64 = 0
    public internal(set) var malformed: UInt64 = 0
    /// ARP packets switched (and their sender bound), and refused (malformed or forged).
    public private(set) var arpSwitched: UInt64 = 0
    public private(set) var arpRefused: UInt64 = 0
    /// Copies not sent because a node's RVI was full (counted; the sender's TCP retransmits).
    public private(set) var copiesDropped: UInt64 = 0

    /// The resolved definition this control node serves (nil when a test drives the table).
    public internal(set) var plan: LANPlan?
    /// Registrations answered with a configuration, and refused (a node on no VLAN).
    public private(set) var registrations: UInt64 = 0
    public internal(set) var refusedRegistrations: UInt64 = 0
    /// Nodes that registered (each is logged once).
    public private(set) var registered: Set<NodeNumber> = []
    /// What the server did that an operator wants to read: refusals, registrations, failovers
    /// (the last 1000 lines; every line also goes to swift-log as `plexus.lan-server`).
    public internal(set) var log = BoundedLog(label: "plexus.lan-server")

    /// Adds a line to the server's log from a service beside it on the control node (storage).
    public func note(_ line: String) { log.append(line) }

    // Failover ("Cluster Management Logic"; Failover.swift).
    /// How failures are detected and handled; nil turns failover off.
    public var failoverSettings: FailoverSettings? = FailoverSettings()
    /// Every failover this server carried out, with its timeline.
    public internal(set) var failovers: [FailoverRecord] = []
    /// Spares that registered and wait in the free pool.
    public internal(set) var standby: Set<NodeNumber> = []
    /// Nodes whose personality moved away: refused until an administrator returns them.
    public internal(set) var fenced: Set<NodeNumber> = []
    /// Nodes whose management RVI is unusable, since when (nanoseconds).
    var silentSince: [NodeNumber: UInt64] = [:]
    /// Silent nodes never heard since their management RVI was opened (``FailoverSettings/startupGrace``).
    var neverHeard: Set<NodeNumber> = []
    /// Whether the platform is still starting (``platformIsUp()``), and when the last node
    /// holding a personality registered.
    public internal(set) var platformStarting = true
    var allRegisteredAt: UInt64?
    /// Whether the start ends by itself, `startupGrace` after the last registration (a control
    /// node process), or only when the embedder calls ``platformIsUp()`` (``PlexusNode/LANPlatform``,
    /// which knows when every node is configured and its workload is up).
    public var startupEndsAfterRegistration = true
    /// Nodes whose failover could not happen yet (no spare), each logged once.
    var stranded: Set<NodeNumber> = []
    var isolationLogged = false
    /// Nodes that reported their workload process ended, waiting for a virtual node or spare.
    var processFailures: [NodeNumber: (since: UInt64, status: Int32)] = [:]
    /// Where this control node keeps every processing node's console ("Console routing"):
    /// each piece a node sends is appended once. Nil: pieces are counted and dropped.
    public var console: (any ConsoleSink)?
    /// Called on the engine thread when an adopted plan adds a processing node and its
    /// management RVI is open: the node's host opens what else it keeps per node (the
    /// address-table RVI) and keeps the RVI at the addresses the node's entry gives. What it
    /// throws goes to the server's log.
    public var onNodeAdded: ((NodeAddress, RVI, RCLAN) throws -> Void)?
    /// Called on the engine thread when a failover moves `failed`'s personality to `spare`,
    /// before the spare is sent its configuration: what goes with the personality beyond the
    /// LAN (its storage map) moves here.
    public var onPersonalityMoved: ((_ failed: NodeNumber, _ spare: NodeNumber, RCLAN) -> Void)?
    /// Which control node this is (0 or 1), once its management RVIs are open.
    public internal(set) var controlIndex = 0
    /// Console pieces received, and those written (the rest were already written: the other
    /// control node shares the archive, or the piece came twice).
    public internal(set) var consolePieces: UInt64 = 0
    public internal(set) var consoleWritten: UInt64 = 0

    public init() {}
    /// A server for `plan`: its table is the plan's.
    public init(plan: LANPlan) throws(PlexusError) {
        self.plan = plan
        table = try plan.table()
    }
    deinit { scratch.deallocate() }

    /// Binds node `node`'s management RVI (opened by the control plane).
    public func attachNode(_ node: NodeNumber, rvi: RVI) {
        nodeRVI[node] = rvi
        nodeOf[rvi] = node
    }

    /// Opens the management RVI of every node in the plan (``VINumbering``), so that each can
    /// register. `control` is this control node's index in the plan (0 or 1).
    public func openManagementRVIs(control k: Int, layer: RCLAN) throws(PlexusError) {
        guard let plan else { return }
        controlIndex = k
        for n in plan.nodes {
            let path = RVIPath(localA: VINumbering.managementAtControl(node: n.node),
                               localB: VINumbering.managementAtControl(node: n.node),
                               peerA: n.fabricA, peerB: n.fabricB,
                               remoteA: VINumbering.managementAtNode(control: k),
                               remoteB: VINumbering.managementAtNode(control: k))
            attachNode(n.node, rvi: try layer.open(path, service: self))
        }
    }

    func register(_ node: NodeNumber, on rvi: RVI, layer: RCLAN) {
        guard let plan else { return }
        if let reply = poolReply(node) {
            _ = try? layer.send(reply.encoded(), on: rvi)
            return
        }
        let reply: ControlMessage
        switch plan.configuration(for: node) {
        case .success(let c):
            registrations += 1
            if registered.insert(node).inserted {
                log.append("node \(node) registered: " + c.personality.nics.map { "\($0.mac) on \($0.vlan)" }.joined(separator: ", "))
            }
            reply = .configuration(c)
        case .failure(let why):
            refusedRegistrations += 1
            log.append("node \(node) refused: it is a member of no VLAN (\(why.rawValue))")
            reply = .refused(node: node, reason: "node \(node) is a member of no VLAN")
        }
        _ = try? layer.send(reply.encoded(), on: rvi)
        if case .configuration(let c) = reply {
            announceListeners(to: node, vlans: Set(c.personality.nics.map(\.vlan)), on: rvi, layer: layer)
        }
    }

    public func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        message.withUnsafeBytes { m in
            if m.first == ControlMessage.kind {
                // Only a node's own management RVI may register it, or speak for its NICs.
                guard let node = nodeOf[rvi], let c = ControlMessage(parsing: m) else {
                    malformed += 1
                    return
                }
                if case .register(let n) = c {
                    if n == node { register(node, on: rvi, layer: layer) } else { malformed += 1 }
                } else if case .milestone(let n, let step) = c {
                    if n == node { milestone(step, from: node) } else { malformed += 1 }
                } else if case .processFailed(let n, let status) = c {
                    if n == node { processFailed(node, status: status, layer: layer) } else { malformed += 1 }
                } else if case .console(let n, let incarnation, let sequence, let text) = c {
                    guard n == node else {
                        malformed += 1
                        return
                    }
                    consolePieces += 1
                    if console?.append(node: node, incarnation: incarnation, sequence: sequence, text) == true { consoleWritten += 1 }
                } else {
                    membership(c, from: node, on: rvi, layer: layer)
                }
                return
            }
            guard let node = nodeOf[rvi], let p = LANMessage.parse(m) else {
                malformed += 1
                return
            }
            if p.tableOnly {
                // The other control node switched this ARP packet; this one learns from it too,
                // so that both ARP servers hold the same bindings.
                let frame = UnsafeRawBufferPointer(rebasing: m[LANMessage.headerSize...])
                guard let sender = table.nics[p.source], sender.node == node, sender.vlan == p.vlan,
                      let arp = ARPPacket(frame: frame), arp.senderMAC == p.source else {
                    arpRefused += 1
                    return
                }
                table.bind(arp.senderIP, to: p.source)
                return
            }
            // The same message, marked as relayed (its checksum fields travel unchanged), goes to
            // each NIC the table names; it is copied once, when the first destination is known
            // (a refused frame is not copied at all).
            let copy = UnsafeRawBufferPointer(rebasing: scratch[0..<m.count])
            var copied = false
            func send(to nic: VirtualNICBinding) {
                if !copied {
                    scratch.baseAddress!.copyMemory(from: m.baseAddress!, byteCount: m.count)
                    scratch[1] |= LANMessage.relayed
                    copied = true
                }
                guard let to = nodeRVI[nic.node] else { return }
                do {
                    _ = try layer.send(copy.bytes, on: to)
                    copiesSent += 1
                } catch {
                    copiesDropped += 1
                }
            }
            let frame = UnsafeRawBufferPointer(rebasing: m[LANMessage.headerSize...])
            if ARPPacket.isARP(frame) {
                // The ARP server ("ARP processing and IP mapping to RVIs"): requests and replies both pass here; the sender's
                // address is bound to its NIC (and so its RVI). An ARP packet that claims
                // another NIC's hardware address is refused as forged. (ARP is rare: this path
                // may build the list of destinations first.)
                guard case .success(let delivery) = table.route(from: node, vlan: p.vlan, destination: p.destination,
                                                                source: p.source) else { return }  // refused and counted
                guard let arp = ARPPacket(frame: frame), arp.senderMAC == p.source else {
                    arpRefused += 1
                    return
                }
                table.bind(arp.senderIP, to: p.source)
                arpSwitched += 1
                switched += 1
                for nic in delivery.to { send(to: nic) }
                return
            }
            // Every other frame: switched without allocating, per frame or per copy.
            if table.forEachDestination(from: node, vlan: p.vlan, destination: p.destination, source: p.source, { nic, _ in send(to: nic) }) == nil {
                switched += 1
            }
        }
    }
}

extension VirtualLANServer {
    /// The least level of the server's log lines that reach swift-log, and the node number
    /// its lines carry as metadata.
    public func setLogging(level: Logger.Level, node: NodeNumber) {
        log.logger.logLevel = level
        log.logger[metadataKey: "node"] = "\(node)"
    }
}
