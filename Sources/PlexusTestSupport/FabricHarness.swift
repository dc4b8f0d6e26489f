import Foundation
@_exported import PlexusLAN  // NamespaceFabric, waitUntil

/// Whether this machine lets us create an io_uring (it may be disabled by sysctl).
public let ioUringAvailable: Bool = {
    if let s = try? String(contentsOfFile: "/proc/sys/kernel/io_uring_disabled", encoding: .utf8),
       let v = Int(s.trimmingCharacters(in: .whitespacesAndNewlines)), v == 2 {
        return false
    }
    return true
}()

/// The tests' name for the namespace fabric (``NamespaceFabric`` in PlexusLAN).
public typealias FabricHarness = NamespaceFabric
