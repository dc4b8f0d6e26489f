import CPlexus
#if canImport(Glibc)
import Glibc
#endif

/// The simplest ``BlockDevice``: a regular file, each request done at once by a system call in
/// ``submit(_:)`` (pread, pwrite, pwritev2 with RWF_DSYNC for FUA, fdatasync, fallocate's hole
/// punching for unmap), its completion kept until ``reap(waiting:_:)``.
///
/// For tests and for exporting image files; the control node's backend does the same requests
/// through an io_uring. The file's size, cut down to whole blocks, is the device's size.
public final class SynchronousFileBlockDevice: BlockDevice {
    public let geometry: BlockGeometry
    public let queueDepth: Int
    public let path: String
    /// What ``readiness`` reports (a test can take the medium away).
    public var readiness: BlockDeviceReadiness = .ready
    let fd: Int32

    // The completions not yet reaped, in order: a ring of queueDepth entries, allocated once.
    private var tags: [UInt64]
    private var results: [Result<Int, BlockIOError>]
    private var buffers: [ParkedIOBuffer?]
    private var head = 0
    private var count = 0

    public var inFlight: Int { count }

    /// Opens the file at `path` (read-only when `readOnly`) as a device of `blockSize`-byte
    /// blocks. Throws `.io(errno)` when it cannot be opened, `.unsupported` when it is not a
    /// regular file, `.outOfRange` when it is smaller than one block.
    public init(path: String, blockSize: Int = 512, readOnly: Bool = false, queueDepth: Int = 8) throws(BlockIOError) {
        precondition(blockSize >= 512 && blockSize & (blockSize - 1) == 0, "block size must be a power of 2 ≥ 512")
        precondition(queueDepth > 0, "queue depth must be positive")
        let fd = open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard fd >= 0 else { throw .io(errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw .io(e)
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw .unsupported
        }
        let blocks = UInt64(st.st_size) / UInt64(blockSize)
        guard blocks > 0 else {
            close(fd)
            throw .outOfRange
        }
        self.fd = fd
        self.path = path
        self.queueDepth = queueDepth
        geometry = BlockGeometry(blockSize: blockSize, blockCount: blocks, readOnly: readOnly, canUnmap: !readOnly,
                                 unmapReadsZeroes: true)
        tags = Array(repeating: 0, count: queueDepth)
        results = Array(repeating: .success(0), count: queueDepth)
        buffers = Array(repeating: nil, count: queueDepth)
    }

    deinit { close(fd) }

    public func submit(_ request: consuming BlockRequest) {
        precondition(count < queueDepth, "more requests in flight than the queue depth")
        let result: Result<Int, BlockIOError>
        if let refused = check(request) {
            result = .failure(refused)
        } else {
            switch request.operation {
            case .read:
                result = request.buffer!.withUnsafeBytes { raw in
                    readFully(into: UnsafeMutableRawPointer(mutating: raw.baseAddress! + request.bufferOffset),
                              length: request.length, at: request.offset)
                }
            case .write(let fua):
                result = request.buffer!.withUnsafeBytes { raw in
                    writeFully(from: raw.baseAddress! + request.bufferOffset, length: request.length,
                               at: request.offset, fua: fua)
                }
            case .flush:
                result = fdatasync(fd) == 0 ? .success(0) : .failure(Self.error(errno))
            case .unmap:
                let e = request.length == 0 ? 0 : plx_punch_hole(fd, Int64(request.offset), Int64(request.length))
                result = e == 0 ? .success(request.length) : .failure(e == EOPNOTSUPP ? .unsupported : Self.error(e))
            }
        }
        let i = (head + count) % queueDepth
        tags[i] = request.tag
        results[i] = result
        buffers[i] = request.buffer.take()?.park()
        count += 1
    }

    @discardableResult
    public func reap(waiting: Bool, _ body: (consuming BlockCompletion) -> Void) -> Int {
        let n = count
        for _ in 0..<n {
            let parked = buffers[head]
            buffers[head] = nil
            let completion = BlockCompletion(tag: tags[head], result: results[head], buffer: parked?.resume())
            head = (head + 1) % queueDepth
            count -= 1
            body(completion)
        }
        return n
    }

    private func readFully(into p: UnsafeMutableRawPointer, length: Int, at offset: UInt64) -> Result<Int, BlockIOError> {
        var done = 0
        while done < length {
            let r = pread(fd, p + done, length - done, off_t(offset) + off_t(done))
            if r < 0 {
                if errno == EINTR { continue }
                return .failure(Self.error(errno))
            }
            if r == 0 {
                // The file shrank under the device: what is missing reads as zeroes would hide
                // it; report it instead.
                return .failure(.io(EIO))
            }
            done += r
        }
        return .success(done)
    }

    private func writeFully(from p: UnsafeRawPointer, length: Int, at offset: UInt64, fua: Bool) -> Result<Int, BlockIOError> {
        var done = 0
        while done < length {
            let r: Int
            if fua {
                let v = plx_pwrite_dsync(fd, p + done, length - done, Int64(offset) + Int64(done))
                r = v < 0 ? -1 : Int(v)
                if v < 0 { errno = Int32(-v) }
            } else {
                r = pwrite(fd, p + done, length - done, off_t(offset) + off_t(done))
            }
            if r < 0 {
                if errno == EINTR { continue }
                return .failure(Self.error(errno))
            }
            done += r
        }
        return .success(done)
    }

    /// The error of a failed system call: out of space (ENOSPC, EDQUOT, EFBIG) or an I/O error.
    static func error(_ e: Int32) -> BlockIOError {
        switch e {
        case ENOSPC, EDQUOT, EFBIG: .noSpace
        default: .io(e)
        }
    }
}

@available(*, unavailable)
extension SynchronousFileBlockDevice: Sendable {}
