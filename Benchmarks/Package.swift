// swift-tools-version: 6.1
//
// Plexus benchmarks: a separate package so that the library itself does not depend on
// ordo-one/benchmark. Run from this directory:
//
//   swift package benchmark                                   # run everything, print a table
//   ../scripts/bench-thresholds.sh                            # CI gate: mallocCountTotal only
//
// See README.md beside this file.
import PackageDescription

let package = Package(
    name: "PlexusBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Plexus", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
        // Already a dependency of benchmark (the interposer behind mallocCountTotal); named here
        // so the loopback benchmarks can also check every single iteration, not just the p90.
        .package(url: "https://github.com/ordo-one/malloc-interposer.git", exact: "1.6.1"),
    ],
    targets: [
        .executableTarget(
            name: "CoreBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "PlexusCore", package: "Plexus"),
                .product(name: "PlexusRCLAN", package: "Plexus"),
                .product(name: "PlexusLAN", package: "Plexus"),
                .product(name: "PlexusNamespaces", package: "Plexus"),
                .product(name: "PlexusNode", package: "Plexus"),
                .product(name: "PlexusStorage", package: "Plexus"),
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
            ],
            path: "Benchmarks/CoreBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
