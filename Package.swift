// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Plexus",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "PlexusCore", targets: ["PlexusCore"]),
        .library(name: "PlexusRCLAN", targets: ["PlexusRCLAN"]),
        .library(name: "PlexusCluster", targets: ["PlexusCluster"]),
        .library(name: "PlexusLAN", targets: ["PlexusLAN"]),
        .library(name: "PlexusNamespaces", targets: ["PlexusNamespaces"]),
        .library(name: "PlexusNode", targets: ["PlexusNode"]),
        .library(name: "PlexusPlatform", targets: ["PlexusPlatform"]),
        .library(name: "PlexusStorage", targets: ["PlexusStorage"]),
        .executable(name: "plexus", targets: ["plexus"]),
        .executable(name: "plexus-example", targets: ["PlexusExample"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // MARK: - C glue: liburing, libnuma and the few _GNU_SOURCE calls Swift cannot reach.
        .target(
            name: "CPlexus",
            linkerSettings: [.linkedLibrary("uring"), .linkedLibrary("numa")]
        ),

        // MARK: - C glue: libiscsi, for the storage target's iSCSI SAN backend (the task callback
        // and the READ/WRITE/SYNCHRONIZE CACHE(16) starters with the data in the caller's memory).
        .target(
            name: "CPlexusISCSI",
            linkerSettings: [.linkedLibrary("iscsi")]
        ),

        // MARK: - The fabric core.
        .target(
            name: "PlexusCore",
            dependencies: ["CPlexus"],
            swiftSettings: [.swiftLanguageMode(.v6), .enableExperimentalFeature("Lifetimes")]
        ),

        // MARK: - The RCLAN layer: redundant reliable VIs over both fabrics.
        .target(
            name: "PlexusRCLAN",
            dependencies: ["PlexusCore"],
            swiftSettings: [.swiftLanguageMode(.v6), .enableExperimentalFeature("Lifetimes")]
        ),

        // MARK: - Cluster data above the core: the destination address table (seed 003) and its
        // distributor, a service on the RCLAN layer.
        .target(
            name: "PlexusCluster",
            dependencies: ["PlexusCore", "PlexusRCLAN"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),

        // MARK: - Virtual storage (seed 004, "Storage Architecture"): the storage
        // messages (CMD, STAT, BUF, TRAN), SCSI commands and sense data, logical units over block
        // devices, and an NBD server that exports a block device on a Unix socket; LUNs on an iSCSI
        // SAN through libiscsi (CPlexusISCSI). CPlexus only for two _GNU_SOURCE calls (fallocate's
        // hole punching, pwritev2 with RWF_DSYNC).
        .target(
            name: "PlexusStorage",
            dependencies: ["CPlexus", "CPlexusISCSI", "PlexusCore", "PlexusRCLAN",
                           .product(name: "Histogram", package: "hdrhistogram-swift")],
            swiftSettings: [.swiftLanguageMode(.v6), .enableExperimentalFeature("Lifetimes")]
        ),

        // MARK: - The command-line platform: demo, rvi, info, bench, control, node, console, cleanup,
        // api serve, agent and the admin commands.
        .executableTarget(
            name: "plexus",
            dependencies: [
                "PlexusCore",
                "PlexusRCLAN",
                "PlexusLAN",
                "PlexusNamespaces",
                "PlexusNode",
                "PlexusPlatform",
                "PlexusStorage",
                "PlexusTestSupport",
                "PlexusAPI",
                "PlexusBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),

        // MARK: - The benchmark scenarios of `plexus bench`: Plexus against raw UDP pairs, veth
        // pairs, restarts in place and nbdkit, measured in the same run; their drivers, the far end
        // (`plexus bench-peer`) and the Codable results.
        .target(
            name: "PlexusBench",
            dependencies: ["CPlexus", "PlexusCore", "PlexusRCLAN", "PlexusLAN", "PlexusNamespaces", "PlexusNode",
                           "PlexusStorage", "PlexusTestSupport", .product(name: "Histogram", package: "hdrhistogram-swift")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),

        // MARK: - The engine embedding example (`swift run plexus-example`).
        .executableTarget(
            name: "PlexusExample",
            dependencies: ["PlexusCore"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),

        // MARK: - The virtual LAN data plane: the virtual Ethernet driver (TAP devices or
        // in-process NICs) and the virtual LAN server (switching, ARP, membership, registration,
        // failure detection and failover, console routing to a ConsoleSink).
        .target(
            name: "PlexusLAN",
            dependencies: ["CPlexus", "PlexusCore", "PlexusRCLAN", .product(name: "Logging", package: "swift-log")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),

        // MARK: - Network namespaces as hosts: the two fabrics as bridges, veths, processes in
        // namespaces; child processes, what a process created (for plexus cleanup) and the
        // signals that stop it. Used by the embedded platform, the commands, tests and benchmarks.
        .target(
            name: "PlexusNamespaces",
            dependencies: ["CPlexus", "PlexusCore"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),

        // MARK: - Nodes: ControlNode and ProcessingNode, each hosting its services over one engine
        // and one RCLAN layer (NodeServiceFactory, NodeStartError), and the platform runtime
        // (definition and plan files, workloads, the console archive, LANPlatform).
        .target(
            name: "PlexusNode",
            dependencies: ["PlexusCore", "PlexusRCLAN", "PlexusLAN", "PlexusCluster", "PlexusNamespaces", "PlexusStorage",
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),

        // MARK: - The platform model: PANs, personalities, the free pool, its SQLite store, and
        // running control nodes following the store.
        .target(
            name: "PlexusPlatform",
            dependencies: ["PlexusCore", "PlexusLAN", "PlexusNamespaces", "PlexusNode", "PlexusStorage",
                           .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),

        // MARK: - The management API a control node serves (hummingbird).
        .target(
            name: "PlexusAPI",
            dependencies: ["PlexusCore", "PlexusPlatform", "PlexusLAN", "PlexusNode", "PlexusNamespaces", "PlexusStorage",
                           .product(name: "Hummingbird", package: "hummingbird")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),

        // MARK: - Test support: the conditions a suite declares (io_uring, root, tools, TUN), real
        // fabrics in namespaces, seeded message streams over RVIs, the failover drill.
        .target(
            name: "PlexusTestSupport",
            dependencies: ["CPlexus", "PlexusCore", "PlexusRCLAN", "PlexusLAN", "PlexusNamespaces", "PlexusNode", "PlexusStorage"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),

        // MARK: - Tests.
        .testTarget(
            name: "PlexusCoreTests",
            dependencies: ["PlexusCore", "CPlexus", "PlexusRCLAN", "PlexusTestSupport"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "PlexusRCLANTests",
            dependencies: ["PlexusRCLAN", "PlexusCore", "CPlexus", "PlexusTestSupport"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "PlexusLANTests",
            dependencies: ["PlexusLAN", "PlexusCore", "PlexusRCLAN", "PlexusTestSupport"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "PlexusPlatformTests",
            dependencies: ["PlexusPlatform", "PlexusAPI", "PlexusLAN", "PlexusNode", "PlexusNamespaces", "PlexusCore", "PlexusStorage", "PlexusTestSupport",
                           .product(name: "HummingbirdTesting", package: "hummingbird")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "PlexusNodeTests",
            dependencies: ["PlexusNode", "PlexusLAN", "PlexusCluster", "PlexusRCLAN", "PlexusCore", "PlexusNamespaces", "PlexusTestSupport"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "PlexusBenchTests",
            dependencies: ["PlexusBench", "PlexusTestSupport"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "PlexusStorageTests",
            dependencies: ["PlexusStorage", "PlexusCore", "PlexusRCLAN", "PlexusTestSupport"],
            swiftSettings: [.swiftLanguageMode(.v6), .enableExperimentalFeature("Lifetimes")]
        ),
        .testTarget(
            name: "PlexusClusterTests",
            dependencies: ["PlexusCluster", "PlexusCore", "PlexusRCLAN", "PlexusTestSupport"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
