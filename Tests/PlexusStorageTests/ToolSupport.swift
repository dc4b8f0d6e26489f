import Foundation
import PlexusCore
import PlexusTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `count` random bytes.
func randomBytes(_ count: Int) -> [UInt8] {
    var g = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &g) }
}

/// Creates a sparse file of `size` zero bytes.
func createSparseFile(_ path: String, size: Int) {
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
    ftruncate(fd, off_t(size))
    close(fd)
}

