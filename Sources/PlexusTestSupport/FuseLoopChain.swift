import PlexusCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The prefix of every directory the FUSE and loop tests mount in, followed by the owner's pid:
/// what a test process killed before its clean-up left behind is found by it.
public let fuseTestPrefix = "/tmp/plexus-nbdfuse-"

/// An NBD export made a block device and mounted, the way a processor's disks are used on a
/// machine without the nbd module: `nbdfuse DIR/fuse/disk --unix SOCKET`, then
/// `losetup` on that file, then a file system on the loop device mounted at DIR/mnt.
///
/// ``tearDown()`` undoes whatever was done, in reverse, and is idempotent; it runs when the
/// chain is dropped, so a failing test (a thrown #require included) leaves nothing behind.
/// ``sweepStale()`` removes what a killed test process left (its pid is in the directory name).
public final class FuseLoopChain {
    public let dir: String
    public let socket: String
    public private(set) var fuse: WatchedProcess?
    public private(set) var loop: String?
    public private(set) var mounted = false
    public var fuseFile: String { "\(dir)/fuse/disk" }
    public var mountPoint: String { "\(dir)/mnt" }

    public init(socket: String) {
        var template = Array("\(fuseTestPrefix)\(getpid())-XXXXXX".utf8CString)
        dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        self.socket = socket
        mkdir("\(dir)/fuse", 0o755)
        mkdir("\(dir)/mnt", 0o755)
    }

    deinit { tearDown() }

    /// Starts nbdfuse and attaches a loop device to its file; the loop device.
    public func attach() throws -> String {
        let f = try WatchedProcess(["nbdfuse", fuseFile, "--unix", socket])
        fuse = f
        guard waitUntil(seconds: 20, { access(fuseFile, F_OK) == 0 }) else {
            throw ChainError("nbdfuse did not show \(fuseFile): \(f.output)")
        }
        let (status, out) = try runTool(["losetup", "-f", "--show", fuseFile])
        let device = out.trimmingCharacters(in: .whitespacesAndNewlines)
        guard status == 0, device.hasPrefix("/dev/loop") else { throw ChainError("losetup: \(out)") }
        loop = device
        return device
    }

    /// Mounts the loop device at ``mountPoint``.
    public func mount() throws {
        guard let loop else { throw ChainError("no loop device") }
        let (status, out) = try runTool(["mount", loop, mountPoint])
        guard status == 0 else { throw ChainError("mount: \(out)") }
        mounted = true
    }

    /// Unmounts the file system (it stays on the loop device).
    public func unmount() throws {
        guard mounted else { return }
        let (status, out) = try runTool(["umount", mountPoint])
        guard status == 0 else { throw ChainError("umount: \(out)") }
        mounted = false
    }

    /// Undoes everything, in reverse: the file system, the loop device, the FUSE mount and
    /// nbdfuse, the directory.
    public func tearDown() {
        if mounted {
            if (try? runTool(["umount", mountPoint]))?.status != 0 { _ = try? runTool(["umount", "-l", mountPoint]) }
            mounted = false
        }
        if let loop {
            _ = try? runTool(["losetup", "-d", loop])
            self.loop = nil
        }
        if let f = fuse {
            if (try? runTool(["umount", "\(dir)/fuse"]))?.status != 0 { _ = try? runTool(["umount", "-l", "\(dir)/fuse"]) }
            if !waitUntil(seconds: 10, { !f.process.isRunning }) { f.process.kill() }
            fuse = nil
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Removes what test processes that are gone left under ``fuseTestPrefix``: file systems,
    /// loop devices backed by their FUSE files, FUSE mounts, directories.
    public static func sweepStale() {
        func owner(_ path: String) -> Int32? {
            guard path.hasPrefix(fuseTestPrefix) else { return nil }
            return Int32(path.dropFirst(fuseTestPrefix.count).prefix { $0 != "-" })
        }
        func dead(_ pid: Int32) -> Bool { pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH }
        let mounts = ((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "")
            .split(separator: "\n").compactMap { line -> String? in
                let fields = line.split(separator: " ")
                return fields.count > 4 ? String(fields[4]) : nil
            }
            .filter { owner($0).map(dead) ?? false }
        // File systems first (deepest paths), then loop devices, then the FUSE mounts.
        for m in mounts where m.hasSuffix("/mnt") { _ = try? runTool(["umount", "-l", m]) }
        let loops = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        for l in loops where l.hasPrefix("loop") {
            guard let backing = try? String(contentsOfFile: "/sys/block/\(l)/loop/backing_file", encoding: .utf8),
                  owner(backing).map(dead) ?? false
            else { continue }
            _ = try? runTool(["losetup", "-d", "/dev/\(l)"])
        }
        for m in mounts where m.hasSuffix("/fuse") { _ = try? runTool(["umount", "-l", m]) }
        let dirs = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
        for d in dirs.map({ "/tmp/\($0)" }) where owner(d).map(dead) ?? false {
            try? FileManager.default.removeItem(atPath: d)
        }
    }
}

public struct ChainError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
