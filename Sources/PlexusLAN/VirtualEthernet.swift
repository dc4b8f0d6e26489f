import CPlexus
#if canImport(Glibc)
import Glibc
#endif
import Logging
import PlexusCore
import PlexusRCLAN

/// A processing node's virtual Ethernet driver ("Virtual Ethernet Driver"), one per node, with
/// two backends per virtual NIC: a Linux TAP device (``attachTAP(named:to:layer:)``), so the
/// kernel's IP stack, ARP and applications run over the virtual LAN, or the in-process frame API
/// (``transmit(_:from:layer:)`` in, ``onFrame`` out) for embedding.
///
/// Unicast to a MAC with a direct RVI goes straight to that node; broadcast, multicast, and
/// unicast without a usable direct RVI go to a virtual LAN server, which still delivers them
/// (relay of last resort). With two control nodes the driver balances between their servers
/// (a flow, by its MAC pair, always uses the same one, so frames stay in order) and uses the
/// other alone while one is not usable ("Load Balancing and Failover"). A frame arriving on a
/// direct RVI is accepted only for one of this node's NICs, on that NIC's VLAN.
public final class VirtualEthernet: RVIDelegate {
    public let node: NodeNumber
    /// This node's NICs: MAC → VLAN.
    public internal(set) var nics: [MACAddress: VLANID] = [:]
    /// The management RVIs to the control nodes' virtual LAN servers.
    public private(set) var servers: [RVI] = []
    /// Direct paths: a peer NIC's MAC → the RVI to its node.
    public internal(set) var direct: [MACAddress: RVI] = [:]
    var unusable: Set<RVI> = []
    /// Called with each frame for one of this node's NICs without a TAP device: the NIC's MAC and
    /// the frame. A frame whose sender left its checksum to offload arrives with that checksum
    /// incomplete (see ``LANMessage``): nothing inside the platform checks it.
    public var onFrame: (MACAddress, RawSpan) -> Void = { _, _ in }
    /// The node's address book: the path of the direct RVI to a peer node (its number, the VI
    /// here, the VI there), from the peer's entry in the distributed address table, or nil when
    /// the table has no entry for it yet (the configuration's address is used then).
    public var addressBook: ((_ node: NodeNumber, _ localVI: UInt32, _ remoteVI: UInt32) -> RVIPath?)?
    /// Direct RVIs opened with a path from ``addressBook``.
    public internal(set) var peersFromAddressBook = 0
    /// Called with each direct RVI opened (the peer node, the RVI, the VI here and there): how
    /// the node's address book keeps it at the peer's addresses as its entry changes.
    public var onDirectRVIOpened: ((_ node: NodeNumber, _ rvi: RVI, _ localVI: UInt32, _ remoteVI: UInt32) -> Void)?
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: FrameLayout.maxPayload, alignment: 8)
    public internal(set) var sentDirect: UInt64 = 0
    public internal(set) var sentToServer: [UInt64] = []
    public internal(set) var relayedFallbacks: UInt64 = 0
    public internal(set) var delivered: UInt64 = 0
    public internal(set) var refused: UInt64 = 0
    /// Frames the node's own kernel or application sent that could not be sent (no usable path,
    /// or the RVI was full); TCP retransmits them.
    public internal(set) var dropped: UInt64 = 0

    public init(node: NodeNumber) {
        self.node = node
        registrationErrors.logger[metadataKey: "node"] = "\(node)"
        events.logger[metadataKey: "node"] = "\(node)"
    }
    deinit { scratch.deallocate() }

    // MARK: Registration

    /// Where registration stands.
    public enum Registration: Sendable, Hashable {
        /// `standby`: a spare in the free pool, waiting for a personality; `fenced`: this
        /// node's personality moved to a spare, and its NICs are gone.
        case unregistered, pending, standby, configured, refused(String), fenced
    }
    /// The direct RVI to each peer node.
    public internal(set) var peerRVI: [NodeNumber: RVI] = [:]
    /// Whether this node took a personality over from the free pool (it reports its steps).
    public internal(set) var tookOver = false
    /// Failover steps to report to the servers on the next turn.
    var pendingReports: [FailoverStep] = []
    /// The steps reported since this node took its personality over: said again when the
    /// second control node's configuration arrives (it may have moved the personality after the
    /// first reports went out, and dropped them).
    var reportedSteps: [FailoverStep] = []
    /// Console bytes waiting to go to the servers, this run's incarnation, the pieces sent,
    /// how many ``events`` went to the console already, and a workload exit to report.
    var pendingConsole: [UInt8] = []
    let consoleIncarnation = nowNanos()
    var consoleSequence: UInt32 = 0
    var eventsOnConsole = 0
    var processExit: Int32?
    /// Console bytes the servers could not take (both management RVIs full or gone).
    public internal(set) var consoleDropped: UInt64 = 0
    var watchFirstFrame = false
    public internal(set) var registration = Registration.unregistered
    /// The configuration the control nodes sent (the first; both send the same).
    public internal(set) var configuration: NodeConfiguration?
    /// The revision at which the control nodes last released this node to the free pool: an
    /// older configuration, still on its way, is not taken.
    var releasedAt: UInt64 = 0
    /// NICs whose TAP device could not be created yet (the one it replaces is still closing),
    /// retried on the next turns.
    var tapsToCreate: [VirtualNICBinding] = []
    var tapRetryDeadline: ContinuousClock.Instant?
    /// The personality before a change whose TAP devices are still being created.
    var pendingReconfiguration: NodeConfiguration?
    /// Give each NIC a TAP device when configured (else the in-process backend).
    public var tapBackend = false
    /// The TAP interface of each NIC, by MAC (`pvl<VLAN>`), when ``tapBackend`` is on.
    public internal(set) var interfaces: [MACAddress: String] = [:]
    /// Configurations that did not match the first one (the control nodes disagreed).
    public internal(set) var conflictingConfigurations: UInt64 = 0
    /// Registration answers that could not be used (the last 1000).
    public internal(set) var registrationErrors = BoundedLog(label: "plexus.ethernet")
    /// What happened that an operator wants to read: refusals from the control nodes,
    /// promiscuous-mode requests (the last 1000; also to swift-log as `plexus.ethernet`).
    public internal(set) var events = BoundedLog(label: "plexus.ethernet")
    /// Each NIC's multicast groups (by group MAC) and why it is in each: the IP groups the
    /// kernel reported (IGMP, MLD), or [] for ``join(_:nic:layer:)``.
    public internal(set) var memberships: [MACAddress: [MACAddress: Set<[UInt8]>]] = [:]
    /// NICs that asked to listen promiscuously.
    public internal(set) var promiscuousNICs: Set<MACAddress> = []
    /// Other nodes' NICs that listen promiscuously, per VLAN, as the servers announced them:
    /// a unicast frame sent direct is cloned to each ("Virtual Ethernet Driver": the sending
    /// driver keeps the list of promiscuous listeners on its VLAN).
    public internal(set) var listeners: [VLANID: Set<MACAddress>] = [:]
    /// Promiscuous copies sent, and not sent (no direct path to the listener at that moment).
    public internal(set) var promiscuousCopiesSent: UInt64 = 0
    public internal(set) var promiscuousCopiesSkipped: UInt64 = 0
    var lastFlagCheck: ContinuousClock.Instant?
    var lastRegister: ContinuousClock.Instant?

    /// Called on every turn of the node's engine, on its thread, after the driver's own work: an
    /// embedding program sends frames from here with ``transmit(_:from:layer:)`` (which must be
    /// called on the engine thread). In busy-poll mode a turn comes around continuously; in
    /// blocking mode only when something arrives or a timer fires.
    public var onTurn: ((VirtualEthernet, RCLAN) -> Void)?
    /// Called on the engine thread once the node is configured (its NICs exist): the embedding
    /// program brings up the personality's addresses and workload, then calls
    /// ``report(_:)`` with ``FailoverStep/workloadStarted``.
    public var onConfigured: ((NodeConfiguration) -> Void)?
    /// Called on the engine thread when the servers fence this node (its NICs are gone): the
    /// embedding program stops what is left of its workload.
    public var onFenced: (() -> Void)?
    /// Called on the engine thread when the control nodes change this node's personality while
    /// it runs (an administrator's change in the platform store): the old personality and the
    /// new one, whose NICs and peers are already in place, or nil when the node was released to
    /// the free pool (its NICs are gone). The embedding program adds and removes addresses and
    /// restarts the workload if it changed (``PersonalityManager`` does).
    public var onReconfigured: ((_ old: NodeConfiguration, _ new: NodeConfiguration?) -> Void)?

    // MARK: TAP backend

    /// NICs with the TAP backend: the device each one reads and writes.
    public internal(set) var taps: [MACAddress: DeviceHandle] = [:]
    var nicOfTap: [DeviceHandle: MACAddress] = [:]
    public internal(set) var tapWriteFailures: UInt64 = 0
    /// Frames from a TAP that were refused (a GSO packet, which checksum-only offload never makes).
    public internal(set) var tapMalformed: UInt64 = 0

    /// Measure the longest pause between frames handed to this node's NICs (for failover
    /// benchmarks: one clock read per frame while on).
    public var watchGaps = false {
        didSet { lastHandNanos = 0; longestGapNanos = 0 }
    }
    public internal(set) var longestGapNanos: UInt64 = 0
    var lastHandNanos: UInt64 = 0

    // MARK: Switching

    /// What ARP taught this node: which MAC, and so which RVI, reaches each IPv4 address.
    public internal(set) var arpLearned: [IPv4Address: MACAddress] = [:]

    /// Frames taken back from an RVI that stopped being usable and sent another way, and those
    /// that could not be (no other way, or in the kernel at that moment, or failed by the layer
    /// when the RVI started over: its peer restarted or gave up on it).
    public internal(set) var rerouted: UInt64 = 0
    public internal(set) var lostInFailover: UInt64 = 0
    /// Registrations sent again to a control node after either end of its management RVI
    /// started a new epoch (the control node restarted, or took this node for restarted).
    public internal(set) var reregistrations: UInt64 = 0
    /// Set while ``reroute(from:layer:)`` takes frames back (their failures are counted there).
    var rerouting = false

    // MARK: Turns and paths

    public func layerTurn(_ layer: RCLAN) {
        defer { onTurn?(self, layer) }
        if !pendingReports.isEmpty { sendReports(layer) }
        if !servers.isEmpty && (!pendingConsole.isEmpty || events.total > eventsOnConsole || processExit != nil) {
            sendConsole(layer)
        }
        if registration == .pending, let last = lastRegister, last.duration(to: .now) > .milliseconds(100) {
            sendRegistrations(layer)
        }
        if !interfaces.isEmpty { watchPromiscuousFlags(layer: layer) }
        if !tapsToCreate.isEmpty { retryTAPs(layer: layer) }
    }

    public func addNIC(_ mac: MACAddress, vlan: VLANID) { nics[mac] = vlan }
    public func addServer(_ rvi: RVI) {
        servers.append(rvi)
        sentToServer.append(0)
    }
    public func addDirectPath(to mac: MACAddress, rvi: RVI) { direct[mac] = rvi }
    /// Frames sent to any server.
    public var sentToServers: UInt64 { sentToServer.reduce(0, +) }
}

extension VirtualEthernet {
    /// The least level of the driver's log lines (events and registration errors) that reach
    /// swift-log.
    public func setLogging(level: Logger.Level) {
        events.logger.logLevel = level
        registrationErrors.logger.logLevel = level
    }
}
