import CPlexus
#if canImport(Glibc)
import Glibc
#endif

/// A backing file or block device opened by an engine for I/O on its ring: the backend of a
/// virtual disk (``Engine/openBlockFile(_:access:direct:)``).
///
/// A plain value naming the engine's open file, with what the engine found when it opened it.
/// I/O on it is submitted on the engine thread (``Engine/read(_:at:length:into:regionOffset:token:)``
/// and the others) and completes there (``EngineDriver/blockIOCompleted(token:result:engine:)``).
/// The handle is refused once the file is closed, even if its slot is reused.
public struct BlockFile: Hashable, Sendable, CustomStringConvertible {
    /// What the path named.
    public enum Kind: String, Sendable, Hashable {
        case regularFile = "file"
        case blockDevice = "block-device"
    }

    /// Whether the file may be written.
    public enum Access: String, Sendable, Hashable {
        case readOnly = "read-only"
        case readWrite = "read-write"
    }

    /// The engine's slot (low 16 bits) and that slot's generation (high 16 bits).
    let id: UInt32
    /// The path it was opened from.
    public let path: String
    public let kind: Kind
    public let access: Access
    /// Whether I/O bypasses the page cache (`O_DIRECT`). Requests must then be aligned:
    /// ``offsetAlignment`` for the file offset and length, ``memoryAlignment`` for the memory.
    public let isDirect: Bool
    /// Why the file is buffered though direct I/O was asked for (nil when it is direct or when
    /// buffered I/O was asked for), e.g. a file system whose `O_DIRECT` is the page cache (tmpfs).
    public let bufferedBecause: String?
    /// Bytes, as found at open: `st_size` of a file, `BLKGETSIZE64` of a block device. Every
    /// request must lie within it.
    public let size: UInt64
    /// The block a disk backed by this file should expose: `BLKSSZGET` of a block device; for a
    /// file, the direct I/O offset alignment the file system requires (`STATX_DIOALIGN`), at
    /// least 512; 512 for a buffered file.
    public let logicalBlockSize: Int
    /// `BLKPBSZGET` of a block device; ``logicalBlockSize`` for a file.
    public let physicalBlockSize: Int
    /// Bytes that a request's file offset and length must be a multiple of (1 when buffered).
    public let offsetAlignment: Int
    /// Bytes that a request's memory address must be a multiple of (1 when buffered).
    public let memoryAlignment: Int

    public var description: String {
        "\(path) (\(kind.rawValue), \(access.rawValue), \(isDirect ? "O_DIRECT" : "buffered"), \(size) bytes, "
            + "\(logicalBlockSize)-byte blocks)"
    }
}

/// Why a block I/O request was refused at submission. Nothing was queued; a frame passed in is
/// still the caller's.
public enum BlockIORefusal: Error, Sendable, Hashable {
    /// Every in-flight record of the engine is in use (``EngineConfiguration/blockIOQueueDepth``):
    /// submit again after a completion.
    case busy
    /// The engine is stopping.
    case stopping
    /// The file is closed (or closing), or the handle is not this engine's.
    case noSuchFile
    /// A write or discard on a file opened read-only.
    case readOnly
    /// The request does not lie within the file's ``BlockFile/size``.
    case outOfRange
    /// A length of zero, or above ``Engine/maxBlockIOLength``.
    case badLength
    /// Direct I/O: the file offset or length is not a multiple of the file's
    /// ``BlockFile/offsetAlignment``, or the memory address not one of its
    /// ``BlockFile/memoryAlignment`` (a pool frame's payload is only 64-byte aligned: read
    /// into a region instead, or open the file buffered).
    case misaligned
    /// No region with that key.
    case noSuchRegion
    /// The memory range runs past the end of the region or of the frame's payload.
    case outsideMemory
    /// No frame was passed (`nil`).
    case noFrame
}

/// What an engine's block I/O did. Operations are counted when they complete.
public struct BlockIOCounters: Sendable, Hashable, Codable {
    public var reads: UInt64 = 0
    public var writes: UInt64 = 0
    /// `fdatasync`s (``Engine/flush(_:token:)``).
    public var flushes: UInt64 = 0
    public var discards: UInt64 = 0
    public var bytesRead: UInt64 = 0
    public var bytesWritten: UInt64 = 0
    /// Operations that completed with an error (a negative result).
    public var errors: UInt64 = 0
    /// Reads that ended short, at the end of the file.
    public var shortReads: UInt64 = 0
    /// Short reads and writes whose remainder the engine submitted again.
    public var resubmissions: UInt64 = 0
    /// Submissions refused with ``BlockIORefusal/busy``.
    public var busy: UInt64 = 0
    /// Operations submitted and not yet completed.
    public var inFlight: Int = 0
    public init() {}
}

// MARK: - Opening

/// A backing file opened and probed, before the engine gives it a slot.
struct OpenedBacking {
    var fd: Int32
    var kind: BlockFile.Kind
    var isDirect: Bool
    var bufferedBecause: String?
    var size: UInt64
    var logicalBlockSize: Int
    var physicalBlockSize: Int
    var offsetAlignment: Int
    var memoryAlignment: Int

    /// Opens `path` for block I/O: with `O_DIRECT` when `direct` is asked and the file system
    /// does direct I/O, buffered otherwise; refuses anything but a regular file or a block device.
    ///
    /// Direct I/O is kept only where it is real: statx's `STATX_DIOALIGN` gives the alignments;
    /// a file system that reports none for the file, or tmpfs (whose `O_DIRECT` goes through the
    /// page cache), is buffered; a kernel without `STATX_DIOALIGN` keeps `O_DIRECT` with 4096-byte
    /// alignment for files and the logical block size for block devices.
    static func open(_ path: String, access: BlockFile.Access, direct: Bool) throws(PlexusError) -> OpenedBacking {
        let flags = (access == .readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC
        var fd: Int32 = -1
        var isDirect = false
        var because: String? = nil
        if direct {
            fd = Glibc.open(path, flags | Int32(plx_O_DIRECT))
            if fd >= 0 {
                isDirect = true
            } else if errno == EINVAL {
                because = "the file system refuses O_DIRECT"
            } else {
                throw .system("opening \(path)")
            }
        }
        if fd < 0 {
            fd = Glibc.open(path, flags)
            guard fd >= 0 else { throw .system("opening \(path)") }
        }
        var probe = plx_block_probe()
        let rc = plx_block_probe(fd, &probe)
        guard rc == 0 else {
            _ = Glibc.close(fd)
            throw PlexusError(.system, "reading the size and block sizes of \(path)", errno: -rc)
        }
        guard probe.kind == 1 || probe.kind == 2 else {
            _ = Glibc.close(fd)
            throw PlexusError(.configuration, "\(path) is neither a regular file nor a block device")
        }
        let kind: BlockFile.Kind = probe.kind == 1 ? .regularFile : .blockDevice
        let deviceBlock = Int(probe.logical_block)
        var offsetAlignment = 1
        var memoryAlignment = 1
        if isDirect {
            if probe.dio_reported != 0 {
                if probe.dio_offset_align == 0 {
                    because = "the file system does no direct I/O on this file (statx)"
                } else {
                    offsetAlignment = max(Int(probe.dio_offset_align), deviceBlock)
                    memoryAlignment = max(Int(probe.dio_mem_align), 1)
                }
            } else if probe.fs_type == plx_TMPFS_MAGIC {
                because = "tmpfs keeps files in the page cache (its O_DIRECT is buffered)"
            } else {
                offsetAlignment = kind == .blockDevice ? deviceBlock : 4096
                memoryAlignment = offsetAlignment
            }
            if because != nil {
                // Buffered after all: clear O_DIRECT on the open file.
                let current = fcntl(fd, F_GETFL)
                guard current >= 0, fcntl(fd, F_SETFL, current & ~Int32(plx_O_DIRECT)) == 0 else {
                    let e = errno
                    _ = Glibc.close(fd)
                    throw .system("clearing O_DIRECT on \(path)", e)
                }
                isDirect = false
            }
        }
        let logical = kind == .blockDevice ? deviceBlock : max(512, isDirect ? offsetAlignment : 512)
        return OpenedBacking(
            fd: fd, kind: kind, isDirect: isDirect, bufferedBecause: because, size: probe.size,
            logicalBlockSize: logical,
            physicalBlockSize: kind == .blockDevice ? Int(probe.physical_block) : logical,
            offsetAlignment: offsetAlignment, memoryAlignment: memoryAlignment)
    }
}
