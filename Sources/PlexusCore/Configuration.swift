/// How an engine thread waits for work.
public enum PollMode: String, Sendable, CaseIterable {
    /// Sleep in `io_uring_enter` until a completion arrives (lowest CPU use).
    case blocking
    /// Never sleep: spin on the completion queue (lowest latency, one core at 100 %).
    case busyPoll = "busy-poll"
}

/// When the engine uses zero-copy sends (`IORING_OP_SEND_ZC`).
public enum ZeroCopyPolicy: String, Sendable, CaseIterable {
    /// Start with zero-copy and keep it only while the kernel reports it really avoided the copy
    /// (`IORING_SEND_ZC_REPORT_USAGE`); on loopback the kernel always copies, and zero-copy is
    /// switched off after the first sends.
    case auto
    /// Always plain sends.
    case never
    /// Always zero-copy, even where the kernel copies.
    case always
}

/// Everything an engine needs to start. Defaults suit one node on loopback.
public struct EngineConfiguration: Sendable {
    /// A short name for logs and the thread name.
    public var name: String
    /// The address of this node's port on fabric A (port 0 picks a free UDP port).
    public var fabricA: FabricAddress
    /// The address of this node's port on fabric B.
    public var fabricB: FabricAddress
    /// VI numbers per port (1 ..< maxVIs can be established; 0 is never valid).
    public var maxVIs: Int = 16384
    /// Send frames in the pool (each 16960 bytes of registered memory).
    public var poolFrames: Int = 1024
    /// Receive buffers per port (a power of two, each about 17 KiB of registered memory).
    public var receiveBuffers: Int = 1024
    /// Submission queue entries of the engine's io_uring.
    public var ringEntries: UInt32 = 1024
    /// The path MTU of both fabrics. Frames whose datagram would exceed it are segmented by
    /// Plexus (never by IP: sockets set `IP_PMTUDISC_DO`). Loopback's MTU is 65536.
    public var pathMTU: Int = 65536
    public var pollMode: PollMode = .blocking
    public var zeroCopy: ZeroCopyPolicy = .auto
    /// Blocking mode: send the datagrams a turn queues for one peer, when they are the same
    /// size, as one `sendmsg` with `UDP_SEGMENT` (generic segmentation offload): the kernel cuts
    /// them into separate datagrams, so the per-packet cost of the send path is paid once.
    public var udpSegmentationOffload = true
    /// `SO_RCVBUF`/`SO_SNDBUF` requested for each port (the granted sizes are reported).
    public var socketBufferBytes: Int = 4 << 20
    /// Pin the engine thread to this CPU.
    public var cpu: Int? = nil
    /// Run the engine in this network namespace: a name under /var/run/netns (as `ip netns add`
    /// makes) or a path. Only the engine's thread enters it, before it opens its sockets, so
    /// several nodes in one process can each sit in their own namespace.
    public var networkNamespace: String? = nil
    public var hugePages: HugePagePolicy = .ifAvailable
    /// RDMA regions the engine can hold at once (at most 4096).
    public var maxRegions: Int = 256
    /// Timers that can be pending at once.
    public var maxTimers: Int = 256
    /// Messages that can be in reassembly at once (segmented messages only).
    public var reassemblyContexts: Int = 64
    /// Block I/O operations (reads, writes, flushes, discards on backing files) that can be in
    /// flight at once; one more is refused with ``BlockIORefusal/busy``.
    public var blockIOQueueDepth: Int = 256

    public init(name: String, fabricA: FabricAddress, fabricB: FabricAddress) {
        self.name = name
        self.fabricA = fabricA
        self.fabricB = fabricB
    }

    /// Node `n` on loopback: fabric A at 127.0.1.n:port, fabric B at 127.0.2.n:port.
    public static func loopback(node n: UInt8, port: UInt16 = 0) -> EngineConfiguration {
        EngineConfiguration(
            name: "node\(n)", fabricA: .loopback(node: n, fabric: .a, port: port),
            fabricB: .loopback(node: n, fabric: .b, port: port))
    }

    func validate() throws(PlexusError) {
        func bad(_ s: String) -> PlexusError { PlexusError(.configuration, s) }
        if maxVIs < 2 || maxVIs > 1 << 20 { throw bad("maxVIs must be in 2...1048576, not \(maxVIs)") }
        if poolFrames < 1 || poolFrames > 1 << 20 { throw bad("poolFrames must be in 1...1048576, not \(poolFrames)") }
        if receiveBuffers < 1 || receiveBuffers > 32768 || receiveBuffers & (receiveBuffers - 1) != 0 {
            throw bad("receiveBuffers must be a power of two in 1...32768, not \(receiveBuffers)")
        }
        if ringEntries < 8 || ringEntries > 32768 { throw bad("ringEntries must be in 8...32768, not \(ringEntries)") }
        if pathMTU < FrameLayout.minimumPathMTU || pathMTU > 65536 {
            throw bad("pathMTU must be in \(FrameLayout.minimumPathMTU)...65536, not \(pathMTU)")
        }
        if socketBufferBytes < 4096 || socketBufferBytes > 1 << 30 { throw bad("socketBufferBytes out of range") }
        if maxRegions < 1 || maxRegions > 4096 { throw bad("maxRegions must be in 1...4096") }
        if maxTimers < 1 || maxTimers > 1 << 16 { throw bad("maxTimers must be in 1...65536") }
        if reassemblyContexts < 1 || reassemblyContexts > 4096 { throw bad("reassemblyContexts must be in 1...4096") }
        if blockIOQueueDepth < 1 || blockIOQueueDepth > 65536 {
            throw bad("blockIOQueueDepth must be in 1...65536, not \(blockIOQueueDepth)")
        }
        if fabricA.ip == fabricB.ip && fabricA.port == fabricB.port && fabricA.port != 0 {
            throw bad("fabric A and fabric B must be different addresses (\(fabricA))")
        }
    }

    /// Largest UDP payload a port sends: the path MTU less IP and UDP headers.
    var maxDatagram: Int { min(pathMTU - FrameLayout.ipUDPOverhead, FrameLayout.maxDatagram) }
}

/// What an engine found when it started: what it asked the kernel for, and what it got.
public struct EngineInfo: Sendable, Codable, Hashable {
    public struct PortInfo: Sendable, Codable, Hashable {
        public var fabric: String
        public var address: String
        /// Largest datagram the port sends; larger frames are segmented.
        public var maxDatagramBytes: Int
        public var requestedSocketBufferBytes: Int
        /// `SO_RCVBUF`/`SO_SNDBUF` as the kernel granted them (it reports double what it uses).
        public var receiveBufferBytes: Int
        public var sendBufferBytes: Int
        public var receiveBuffers: Int
    }
    public var name: String
    public var ports: [PortInfo]
    /// io_uring set-up flags that the kernel accepted, e.g. `SINGLE_ISSUER|DEFER_TASKRUN`.
    public var ringSetup: String
    public var pollMode: String
    /// Page backing of the frame pool: `hugetlb`, `thp` or `pages`.
    public var memoryBacking: String
    public var numaNode: Int?
    /// Whether the frame pool is registered with io_uring as a fixed buffer.
    public var fixedBuffers: Bool
    /// Whether sends are batched with UDP GSO.
    public var udpSegmentationOffload: Bool
    public var zeroCopy: String
    public var poolFrames: Int
    public var maxVIs: Int
    /// The system ceilings for socket buffers (`net.core.rmem_max`, `wmem_max`).
    public var rmemMax: Int?
    public var wmemMax: Int?
}
