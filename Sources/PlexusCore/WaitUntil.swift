#if canImport(Glibc)
import Glibc
#endif

/// Polls `condition` until it holds or `seconds` pass (a deadline, never a bare sleep).
/// Returns whether it held.
public func waitUntil(seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        usleep(500)
    }
    return try condition()
}
