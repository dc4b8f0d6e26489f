// swift-tools-version: 6.1
// Plexus fuzz targets: a separate package (like Benchmarks/) so that the library never links
// libFuzzer. Every decoder of bytes that arrive from a fabric or a network has a target here.
// Built and run by scripts/fuzz.sh (make fuzz, make fuzz-long) with
//   swift build -c release -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,...
// and linked with clang's libclang_rt.fuzzer_no_main: each target calls libFuzzer's driver
// (LLVMFuzzerRunDriver) from its own main, and the coverage reaches the Plexus modules too.
import PackageDescription

let targets: [(name: String, products: [String])] = [
    ("FrameDecoderFuzz", ["PlexusCore"]),
    ("LANMessageFuzz", ["PlexusLAN"]),
    ("ControlMessageFuzz", ["PlexusLAN"]),
    ("MembershipFuzz", ["PlexusLAN"]),
    ("RVIControlFuzz", ["PlexusRCLAN"]),
    ("RDMATrailerFuzz", ["PlexusRCLAN"]),
    ("TableMessageFuzz", ["PlexusCluster"]),
    ("StorageMessageFuzz", ["PlexusStorage"]),
]

let package = Package(
    name: "PlexusFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "Plexus", path: "..")],
    targets: [.target(name: "FuzzDriver", swiftSettings: [.swiftLanguageMode(.v6)])] + targets.map { t in
        .executableTarget(
            name: t.name,
            dependencies: ["FuzzDriver"] + t.products.map { .product(name: $0, package: "Plexus") },
            swiftSettings: [.swiftLanguageMode(.v6)]
        )
    }
)
