import CPlexus
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where a control node looks for storage ("Configuration Component": discovering the storage
/// allocated to the platform): iSCSI portals and directories of image files or block devices,
/// and how often it looks again.
public struct StorageDiscoveryConfiguration: Sendable, Hashable, Codable {
    /// iSCSI portals, `host[:port]` (port 3260 when omitted).
    public var portals: [String]
    /// Absolute paths of directories whose regular files and block devices are storage.
    public var directories: [String]
    /// Seconds between scheduled rediscoveries; 0: only at start and on demand.
    public var everySeconds: Int

    public init(portals: [String] = [], directories: [String] = [], everySeconds: Int = 60) {
        self.portals = portals
        self.directories = directories
        self.everySeconds = everySeconds
    }

    /// The longest schedule (a day).
    public static let maximumSeconds = 86_400

    /// Whether there is anything to discover.
    public var isEmpty: Bool { portals.isEmpty && directories.isEmpty }

    /// Checks every field.
    /// - Throws: ``StorageDiscoveryError/invalid(field:_:)`` naming the field (`portals[1]`,
    ///   `directories[0]`, `everySeconds`).
    public func validate() throws(StorageDiscoveryError) {
        for (i, p) in portals.enumerated() {
            // Checked as the host and port of a URL are (``ISCSIURL/portal(_:)``).
            do throws(ISCSIError) {
                _ = try ISCSIURL.portal(p)
            } catch {
                throw .invalid(field: "portals[\(i)]", "'\(p)' is not an iSCSI portal host[:port]")
            }
        }
        for (i, d) in directories.enumerated() {
            guard d.hasPrefix("/"), d.utf8.count <= 4096, !d.contains("\0") else {
                throw .invalid(field: "directories[\(i)]", "'\(d)' is not an absolute path")
            }
        }
        guard (0...Self.maximumSeconds).contains(everySeconds) else {
            throw .invalid(field: "everySeconds", "\(everySeconds) is not 0...\(Self.maximumSeconds) (0: no schedule)")
        }
    }
}

/// Why a discovery configuration was refused.
public enum StorageDiscoveryError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `field` (`portals[1]`, `directories[0]`, `everySeconds`, or a directory that cannot be
    /// listed) is wrong, and why.
    case invalid(field: String, String)
    public var description: String {
        switch self {
        case .invalid(let f, let m): "\(f): \(m)"
        }
    }
}

/// What one discovery found, and what it could not look at.
public struct StorageDiscoveryResult: Sendable, Hashable, Codable {
    /// Every item found, sorted by path.
    public var items: [StorageItem]
    /// A line per portal or directory that could not be looked at (its items count as
    /// vanished: the storage is not visible from this control node).
    public var failures: [String]
    /// When the discovery started (milliseconds since the Unix epoch).
    public var startedMs: Int64

    public init(items: [StorageItem], failures: [String], startedMs: Int64) {
        self.items = items
        self.failures = failures
        self.startedMs = startedMs
    }
}

/// Discovery of the storage a configuration names: on each portal SendTargets, REPORT LUNS and
/// READ CAPACITY(16) (``ISCSIDiscovery``), and in each directory its regular files and block
/// devices with their sizes. Blocking (libiscsi's synchronous calls, each bounded by the
/// portal probe's and libiscsi's time-outs): for a control node's background thread, never an
/// engine thread.
public enum StorageDiscovery {
    /// Discovers everything `configuration` names; never throws: what could not be looked at
    /// is in the result's ``StorageDiscoveryResult/failures``.
    public static func run(_ configuration: StorageDiscoveryConfiguration,
                           initiator: String = "iqn.2026-12.org.plexus:discovery") -> StorageDiscoveryResult {
        let started = Int64(Date().timeIntervalSince1970 * 1000)
        var items: [StorageItem] = []
        var failures: [String] = []
        for portal in configuration.portals {
            do throws(ISCSIError) {
                let offers = try ISCSIDiscovery.discover(portal: portal, initiator: initiator)
                let at = try ISCSIURL.portal(portal)
                for o in offers {
                    for c in o.capacities {
                        items.append(StorageItem(path: StoragePool.key(o.url(portal: at, lun: c.lun)), bytes: c.bytes,
                                                 blockSize: c.blockSize, source: at))
                    }
                }
            } catch {
                failures.append("portal \(portal): \(error)")
            }
        }
        for directory in configuration.directories {
            do throws(StorageDiscoveryError) {
                items += try scan(directory)
            } catch {
                failures.append("\(error)")
            }
        }
        return StorageDiscoveryResult(items: items.sorted { $0.path < $1.path }, failures: failures, startedMs: started)
    }

    /// The regular files and block devices directly in `directory` (symbolic links followed;
    /// hidden names and anything else left out).
    static func scan(_ directory: String) throws(StorageDiscoveryError) -> [StorageItem] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw .invalid(field: "directory \(directory)", "cannot list it: \((error as NSError).localizedDescription)")
        }
        var out: [StorageItem] = []
        let base = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        for name in names.sorted() where !name.hasPrefix(".") {
            let path = base + "/" + name
            var st = stat()
            guard stat(path, &st) == 0 else { continue }
            let mode = st.st_mode & S_IFMT
            if mode == S_IFREG {
                out.append(StorageItem(path: path, bytes: UInt64(st.st_size), blockSize: 512, source: directory))
            } else if mode == S_IFBLK {
                let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
                guard fd >= 0 else { continue }
                defer { close(fd) }
                var probe = plx_block_probe()
                guard plx_block_probe(fd, &probe) == 0, probe.kind == 2 else { continue }
                out.append(StorageItem(path: path, bytes: probe.size, blockSize: Int(max(probe.logical_block, 512)),
                                       source: directory))
            }
        }
        return out
    }
}
