#if canImport(Glibc)
import Glibc
#endif

/// One client of an ``NBDServer``, served on its own thread: the handshake (through
/// ``NBDNegotiation``), then requests one at a time until the client disconnects.
struct NBDConnection {
    let fd: Int32
    let server: NBDServer
    var statistics: NBDStatistics { server.statistics }

    init(fd: Int32, server: NBDServer) {
        self.fd = fd
        self.server = server
    }

    /// What a connection's requests go to.
    enum Backend {
        /// A device of its own, one request at a time.
        case device(any BlockDevice)
        /// A lane to the engine, several requests in flight.
        case lane(DiskLane)
    }

    func run() {
        do throws(SocketIO.Failure) {
            guard let (export, backend) = try handshake() else { return }
            switch backend {
            case .device(let device): try transmission(export: export, device: device)
            case .lane(let lane): transmission(export: export, lane: lane)
            }
        } catch {
            // The client went away or the socket failed: the connection ends either way.
        }
    }

    // MARK: Handshake

    /// Haggles options until one enters transmission; nil when the connection ends instead.
    func handshake() throws(SocketIO.Failure) -> (NBDExport, Backend)? {
        try SocketIO.write(fd, NBDNegotiation.greeting)
        var negotiation = NBDNegotiation(exports: server.exports, maxPayload: server.maxPayload)
        guard negotiation.accept(clientFlags: try SocketIO.read(fd, as: UInt32.self)) else {
            statistics.add(.malformed)
            return nil
        }
        while true {
            guard try SocketIO.read(fd, as: UInt64.self) == NBDProtocol.optionMagic else {
                statistics.add(.malformed)
                return nil
            }
            let option = try SocketIO.read(fd, as: UInt32.self)
            let length = Int(try SocketIO.read(fd, as: UInt32.self))
            guard length <= NBDServer.maxOptionLength else {
                statistics.add(.malformed)
                return nil
            }
            var data = [UInt8](repeating: 0, count: length)
            var failure: SocketIO.Failure?
            data.withUnsafeMutableBytes { raw in
                guard raw.count > 0 else { return }
                do throws(SocketIO.Failure) { try SocketIO.read(fd, raw.baseAddress!, raw.count) } catch { failure = error }
            }
            if let failure { throw failure }
            var out: [UInt8] = []
            switch negotiation.handle(option: option, data: data, into: &out) {
            case .next:
                try SocketIO.write(fd, out)
            case .end:
                if !out.isEmpty { try SocketIO.write(fd, out) }
                return nil
            case .transmit(let i):
                let export = server.exports[i]
                if let lanes = export.lanes {
                    if let lane = lanes.claim() {
                        try SocketIO.write(fd, out)
                        return (export, .lane(lane))
                    }
                    guard option == NBDProtocol.optGo else { return nil }
                    try SocketIO.write(fd, negotiation.errorReply(option: option, type: NBDProtocol.repErrUnknown,
                                                                  message: "every connection of the disk is in use"))
                    continue
                }
                let opened: Result<any BlockDevice, BlockIOError>
                do throws(BlockIOError) { opened = .success(try export.openDevice()) } catch { opened = .failure(error) }
                switch opened {
                case .success(let device):
                    try SocketIO.write(fd, out)
                    return (export, .device(device))
                case .failure(let error):
                    // NBD_OPT_EXPORT_NAME cannot be answered with an error: the session ends.
                    guard option == NBDProtocol.optGo else { return nil }
                    try SocketIO.write(fd, negotiation.errorReply(option: option, type: NBDProtocol.repErrUnknown,
                                                                  message: "the export cannot be opened: \(error)"))
                }
            }
        }
    }

    // MARK: Transmission

    /// Serves requests until NBD_CMD_DISC, a malformed request, or the end of the connection.
    /// Allocates nothing per request: the payload buffer and the header scratch are made here,
    /// once.
    func transmission(export: NBDExport, device: any BlockDevice) throws(SocketIO.Failure) {
        let pool: IOBufferPool
        do throws(BlockIOError) {
            pool = try IOBufferPool(slots: 1, slotSize: server.maxPayload)
        } catch {
            return
        }
        var buffer = pool.take()
        let header = UnsafeMutableRawBufferPointer.allocate(byteCount: NBDProtocol.requestSize, alignment: 8)
        defer { header.deallocate() }
        var tag: UInt64 = 0
        while true {
            try SocketIO.read(fd, header.baseAddress!, NBDProtocol.requestSize)
            guard let request = NBDRequest(parsing: UnsafeRawBufferPointer(header).bytes) else {
                statistics.add(.malformed)
                return
            }
            statistics.add(.requests)
            tag &+= 1
            let length = Int(request.length)
            switch request.plan(on: export, maxPayload: server.maxPayload) {
            case .disconnect:
                return
            case .refuse(let error):
                if request.hasPayload { try discard(length, through: &buffer) }
                try reply(request.handle, error: error, header: header)
            case .read:
                statistics.add(.reads)
                let done = device.perform(BlockRequest(.read, offset: request.offset, length: length,
                                                       buffer: buffer.take(), tag: tag))
                let result = done.result
                buffer = done.buffer
                switch result {
                case .success:
                    statistics.add(.bytesRead, UInt64(length))
                    try reply(request.handle, error: 0, header: header, data: &buffer, length: length)
                case .failure(let e):
                    try reply(request.handle, error: NBDPlan.error(for: e), header: header)
                }
            case .write(let fua):
                statistics.add(.writes)
                try receive(length, into: &buffer)
                let error = finish(device.perform(BlockRequest(.write(fua: fua), offset: request.offset, length: length,
                                                              buffer: buffer.take(), tag: tag)), buffer: &buffer)
                if error == 0 { statistics.add(.bytesWritten, UInt64(length)) }
                try reply(request.handle, error: error, header: header)
            case .flush:
                statistics.add(.flushes)
                let error = finish(device.perform(BlockRequest(.flush, tag: tag)), buffer: &buffer)
                try reply(request.handle, error: error, header: header)
            case .trim(let fua):
                statistics.add(.trims)
                var error = finish(device.perform(BlockRequest(.unmap, offset: request.offset, length: length, tag: tag)),
                                   buffer: &buffer)
                if error == 0 && fua { error = finish(device.perform(BlockRequest(.flush, tag: tag)), buffer: &buffer) }
                try reply(request.handle, error: error, header: header)
            }
        }
    }

    /// The NBD error of a completion (0 when it succeeded); its buffer, if it carried one, goes
    /// back into `buffer`.
    func finish(_ completion: consuming BlockCompletion, buffer: inout IOBuffer?) -> UInt32 {
        let result = completion.result
        if let b = completion.buffer.take() { buffer = consume b }
        switch result {
        case .success: return 0
        case .failure(let e): return NBDPlan.error(for: e)
        }
    }

    /// Reads a write's `length`-byte payload into the start of `buffer`.
    func receive(_ length: Int, into buffer: inout IOBuffer?) throws(SocketIO.Failure) {
        guard length > 0 else { return }
        guard var b = buffer.take() else { throw .closed }
        var failure: SocketIO.Failure?
        do throws(SocketIO.Failure) {
            try b.withUnsafeMutableBytes { raw throws(SocketIO.Failure) in try SocketIO.read(fd, raw.baseAddress!, length) }
        } catch { failure = error }
        buffer = consume b
        if let failure { throw failure }
    }

    /// Reads and drops a refused write's payload, through `buffer`.
    func discard(_ length: Int, through buffer: inout IOBuffer?) throws(SocketIO.Failure) {
        guard var b = buffer.take() else { throw .closed }
        var failure: SocketIO.Failure?
        do throws(SocketIO.Failure) {
            try b.withUnsafeMutableBytes { raw throws(SocketIO.Failure) in
                try SocketIO.discard(fd, length, scratch: raw.baseAddress!, scratchSize: raw.count)
            }
        } catch { failure = error }
        buffer = consume b
        if let failure { throw failure }
    }

    /// A simple reply with no data.
    func reply(_ handle: UInt64, error: UInt32, header: UnsafeMutableRawBufferPointer) throws(SocketIO.Failure) {
        if error != 0 { statistics.add(.errorReplies) }
        writeReplyHeader(handle, error: error, header)
        try SocketIO.write(fd, UnsafeRawBufferPointer(rebasing: header[0..<NBDProtocol.replySize]))
    }

    /// A simple reply followed by the first `length` bytes of `data`, in one send.
    func reply(_ handle: UInt64, error: UInt32, header: UnsafeMutableRawBufferPointer, data: inout IOBuffer?,
               length: Int) throws(SocketIO.Failure) {
        writeReplyHeader(handle, error: error, header)
        guard let b = data.take() else { throw .closed }
        var failure: SocketIO.Failure?
        do throws(SocketIO.Failure) {
            try b.withUnsafeBytes { raw throws(SocketIO.Failure) in
                try SocketIO.write(fd, UnsafeRawBufferPointer(rebasing: header[0..<NBDProtocol.replySize]),
                                   UnsafeRawBufferPointer(rebasing: raw[0..<length]))
            }
        } catch { failure = error }
        data = consume b
        if let failure { throw failure }
    }

    func writeReplyHeader(_ handle: UInt64, error: UInt32, _ header: UnsafeMutableRawBufferPointer) {
        var span = header.mutableBytes
        span.storeBE(NBDProtocol.simpleReplyMagic, at: 0)
        span.storeBE(error, at: 4)
        span.storeBE(handle, at: 8)
    }
}
