import CPlexus
import Foundation
import Testing

// What a test needs from the machine it runs on, as Swift Testing conditions. A suite or test
// that carries one is reported as skipped, with the condition's comment, when the condition is
// false, instead of returning early and showing as passed:
//
//     @Suite("…", .requiresIOUring)                                        // starts an engine
//     @Suite("…", .requiresIOUring, .requiresRoot, .requiresTool("ip"))    // network namespaces
//
// Each probe runs once per test process. Two environment variables force a condition false, to
// see what a machine without it reports (CI runs as root with io_uring, so it never sets them):
//
//     PLEXUS_TEST_ASSUME_NO_IO_URING=1   io_uring is taken as unavailable
//     PLEXUS_TEST_ASSUME_NO_ROOT=1       the tests are taken as not running as root
//
// A test that takes minutes carries `.requiresStress` and runs only where PLEXUS_STRESS=1 is set
// (`make stress` sets it).

/// Whether `PLEXUS_TEST_ASSUME_…` variable `name` is set to something other than empty or 0.
func assumed(_ name: String) -> Bool {
    guard let v = ProcessInfo.processInfo.environment[name] else { return false }
    return !v.isEmpty && v != "0"
}

/// io_uring on this machine, for the tests.
public enum IOUring {
    /// Whether this process can set up an io_uring, probed once by really setting up a small ring
    /// and tearing it down: a kernel without io_uring, `kernel.io_uring_disabled`, or a seccomp
    /// filter (some container runtimes) all show up here as false.
    public static let isAvailable: Bool = {
        if assumed("PLEXUS_TEST_ASSUME_NO_IO_URING") { return false }
        var ring = io_uring()
        guard io_uring_queue_init(4, &ring, 0) == 0 else { return false }
        io_uring_queue_exit(&ring)
        return true
    }()
}

/// The long tests `make stress` runs.
public enum Stress {
    /// Whether `PLEXUS_STRESS` is set to something other than empty or 0 (`make stress` sets it).
    public static var isEnabled: Bool { assumed("PLEXUS_STRESS") }
}

/// Whether the tests run as root (network namespaces, TAP devices, `ip`, huge pages need it).
public let isRoot: Bool = geteuid() == 0 && !assumed("PLEXUS_TEST_ASSUME_NO_ROOT")

/// Whether program `name` is on `PATH` (or, with a slash, exists and is executable).
public func toolInstalled(_ name: String) -> Bool {
    if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(name)") }
}

extension Trait where Self == ConditionTrait {
    /// The suite or test starts an engine: it needs io_uring.
    public static var requiresIOUring: Self {
        .enabled(if: IOUring.isAvailable, "io_uring is not available")
    }

    /// The suite or test needs root (network namespaces, TAP devices, `ip link`, huge pages).
    public static var requiresRoot: Self {
        .enabled(if: isRoot, "needs root")
    }

    /// The suite or test runs program `name` (`ip`, `ping`, `curl`, `iperf3`, `python3` …).
    public static func requiresTool(_ name: String) -> Self {
        .enabled(if: toolInstalled(name), Comment(rawValue: "needs \(name) (scripts/setup.sh installs it)"))
    }

    /// The suite or test is a long one that `make stress` runs (``Stress/isEnabled``): skipped
    /// otherwise.
    public static var requiresStress: Self {
        .enabled(if: Stress.isEnabled, "a stress test: `make stress` runs it (PLEXUS_STRESS=1)")
    }

    /// The suite or test creates TAP devices.
    public static var requiresTUN: Self {
        .enabled(if: FileManager.default.fileExists(atPath: "/dev/net/tun"), "needs /dev/net/tun")
    }
}
