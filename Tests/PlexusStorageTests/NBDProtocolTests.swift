import PlexusStorage
import Testing

/// Exports over no device (the negotiation and the plans never open one).
func shapeExport(_ name: String, blocks: UInt64 = 2048, readOnly: Bool = false, canUnmap: Bool = true,
                 alignment: Int = 1) -> NBDExport {
    NBDExport(name: name, description: "the \(name) disk",
              geometry: BlockGeometry(blockSize: 512, blockCount: blocks, canUnmap: canUnmap, alignment: alignment),
              readOnly: readOnly) { () throws(BlockIOError) -> any BlockDevice in throw .notReady }
}

/// Option replies parsed out of `bytes`: (option, type, data) each.
func optionReplies(_ bytes: [UInt8]) -> [(UInt32, UInt32, [UInt8])] {
    func u32(_ o: Int) -> UInt32 { bytes[o..<(o + 4)].reduce(0) { $0 << 8 | UInt32($1) } }
    var out: [(UInt32, UInt32, [UInt8])] = []
    var i = 0
    while i + 20 <= bytes.count {
        let length = Int(u32(i + 16))
        out.append((u32(i + 8), u32(i + 12), Array(bytes[(i + 20)..<(i + 20 + length)])))
        i += 20 + length
    }
    return out
}

@Suite("NBD handshake and requests (no sockets)")
struct NBDProtocolTests {
    let exports = [shapeExport(""), shapeExport("ro", readOnly: true), shapeExport("aligned", canUnmap: false, alignment: 512)]

    @Test("the greeting: NBDMAGIC, IHAVEOPT, fixed newstyle and no zeroes; unknown client flags end the session")
    func greeting() {
        #expect(NBDNegotiation.greeting == Array("NBDMAGICIHAVEOPT".utf8) + [0, 3])
        var n = NBDNegotiation(exports: exports, maxPayload: 1 << 20)
        let both = n.accept(clientFlags: 3)
        #expect(both && n.noZeroes)
        let fixedOnly = n.accept(clientFlags: 1)
        #expect(fixedOnly && !n.noZeroes)
        let unknown = n.accept(clientFlags: 4)
        #expect(!unknown)
    }

    @Test("NBD_OPT_LIST names every export; NBD_OPT_ABORT is acknowledged and ends; unknown options are unsupported")
    func listAbortUnknown() {
        var n = NBDNegotiation(exports: exports, maxPayload: 1 << 20)
        var out: [UInt8] = []
        #expect(n.handle(option: NBDProtocol.optList, data: [], into: &out) == .next)
        let list = optionReplies(out)
        #expect(list.map(\.1) == [NBDProtocol.repServer, NBDProtocol.repServer, NBDProtocol.repServer, NBDProtocol.repAck])
        #expect(list[1].2 == [0, 0, 0, 2] + Array("ro".utf8))
        out = []
        #expect(n.handle(option: NBDProtocol.optList, data: [1], into: &out) == .next)
        #expect(optionReplies(out).map(\.1) == [NBDProtocol.repErrInvalid])
        for option: UInt32 in [NBDProtocol.optStructuredReply, NBDProtocol.optStartTLS, 9, 12345] {
            out = []
            #expect(n.handle(option: option, data: [1, 2, 3], into: &out) == .next)
            #expect(optionReplies(out).map(\.1) == [NBDProtocol.repErrUnsupported] && optionReplies(out)[0].0 == option)
        }
        out = []
        #expect(n.handle(option: NBDProtocol.optAbort, data: [], into: &out) == .end)
        #expect(optionReplies(out).map(\.1) == [NBDProtocol.repAck])
    }

    @Test("NBD_OPT_INFO and NBD_OPT_GO: export size and flags, block sizes, name and description when asked")
    func infoAndGo() {
        var n = NBDNegotiation(exports: exports, maxPayload: 1 << 20)
        var out: [UInt8] = []
        let data = NBDTestClient.goData("ro", infos: [NBDProtocol.infoName, NBDProtocol.infoDescription])
        #expect(n.handle(option: NBDProtocol.optInfo, data: data, into: &out) == .next)
        let info = optionReplies(out)
        #expect(info.map(\.1) == [NBDProtocol.repInfo, NBDProtocol.repInfo, NBDProtocol.repInfo, NBDProtocol.repInfo, NBDProtocol.repAck])
        // Size 1 MiB; HAS_FLAGS | READ_ONLY | SEND_FLUSH | SEND_FUA, no TRIM on a read-only export.
        #expect(info[0].2 == [0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0x0F])
        #expect(info[1].2 == [0, 3, 0, 0, 0, 1, 0, 0, 0x10, 0, 0, 0x10, 0, 0], "min 1, preferred 4096, max 1 MiB")
        #expect(info[2].2 == [0, 1] + Array("ro".utf8))
        #expect(info[3].2 == [0, 2] + Array("the ro disk".utf8))

        out = []
        #expect(n.handle(option: NBDProtocol.optGo, data: NBDTestClient.goData(""), into: &out) == .transmit(export: 0))
        let go = optionReplies(out)
        #expect(go.count == 3 && go[0].2.suffix(2) == [0x00, 0x2D], "HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM")
        #expect(exports[0].transmissionFlags == 0x2D)

        out = []
        #expect(n.handle(option: NBDProtocol.optGo, data: NBDTestClient.goData("aligned"), into: &out) == .transmit(export: 2))
        #expect(optionReplies(out)[1].2 == [0, 3, 0, 0, 2, 0, 0, 0, 0x10, 0, 0, 0x10, 0, 0], "min 512")

        out = []
        #expect(n.handle(option: NBDProtocol.optGo, data: NBDTestClient.goData("nope"), into: &out) == .next)
        #expect(optionReplies(out).map(\.1) == [NBDProtocol.repErrUnknown])
        for bad in [[0, 0, 0], [0, 0, 0, 9, 0, 0], NBDTestClient.goData("") + [0]] as [[UInt8]] {
            out = []
            #expect(n.handle(option: NBDProtocol.optGo, data: bad, into: &out) == .next)
            #expect(optionReplies(out).map(\.1) == [NBDProtocol.repErrInvalid])
        }
    }

    @Test("NBD_OPT_EXPORT_NAME: size, flags and 124 zeroes unless NO_ZEROES; an unknown name ends the session")
    func exportName() {
        var n = NBDNegotiation(exports: exports, maxPayload: 1 << 20)
        var out: [UInt8] = []
        let padded = n.accept(clientFlags: 1)
        #expect(padded)
        #expect(n.handle(option: NBDProtocol.optExportName, data: Array("ro".utf8), into: &out) == .transmit(export: 1))
        #expect(out.count == 10 + 124 && Array(out[0..<10]) == [0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0x0F])
        let unpadded = n.accept(clientFlags: 3)
        #expect(unpadded)
        out = []
        #expect(n.handle(option: NBDProtocol.optExportName, data: [], into: &out) == .transmit(export: 0))
        #expect(out.count == 10)
        out = []
        #expect(n.handle(option: NBDProtocol.optExportName, data: Array("x".utf8), into: &out) == .end)
        #expect(out.isEmpty)
    }

    /// A request, the export it is for, and what the server must do.
    static let plans: [(String, NBDRequest, Int, NBDPlan)] = [
        ("read", NBDRequest(type: NBDProtocol.cmdRead, handle: 1, offset: 4096, length: 4096), 0, .read),
        ("read to the end", NBDRequest(type: NBDProtocol.cmdRead, handle: 1, offset: 1 << 20 - 1, length: 1), 0, .read),
        ("read past the end", NBDRequest(type: NBDProtocol.cmdRead, handle: 1, offset: 1 << 20 - 1, length: 2), 0,
         .refuse(NBDProtocol.errInvalid)),
        ("read at a huge offset", NBDRequest(type: NBDProtocol.cmdRead, handle: 1, offset: .max, length: 1), 0,
         .refuse(NBDProtocol.errInvalid)),
        ("read over the payload limit", NBDRequest(type: NBDProtocol.cmdRead, handle: 1, length: 65537), 0,
         .refuse(NBDProtocol.errInvalid)),
        ("read with FUA", NBDRequest(flags: 1, type: NBDProtocol.cmdRead, handle: 1, length: 512), 0, .read),
        ("read with an unknown flag", NBDRequest(flags: 4, type: NBDProtocol.cmdRead, handle: 1, length: 512), 0,
         .refuse(NBDProtocol.errInvalid)),
        ("unaligned read", NBDRequest(type: NBDProtocol.cmdRead, handle: 1, offset: 1, length: 512), 2,
         .refuse(NBDProtocol.errInvalid)),
        ("write with FUA", NBDRequest(flags: 1, type: NBDProtocol.cmdWrite, handle: 1, length: 512), 0, .write(fua: true)),
        ("write past the end", NBDRequest(type: NBDProtocol.cmdWrite, handle: 1, offset: 1 << 20, length: 512), 0,
         .refuse(NBDProtocol.errNoSpace)),
        ("write to a read-only export", NBDRequest(type: NBDProtocol.cmdWrite, handle: 1, length: 512), 1,
         .refuse(NBDProtocol.errPerm)),
        ("write over the payload limit", NBDRequest(type: NBDProtocol.cmdWrite, handle: 1, length: 65537), 0,
         .refuse(NBDProtocol.errInvalid)),
        ("flush", NBDRequest(type: NBDProtocol.cmdFlush, handle: 1), 1, .flush),
        ("trim", NBDRequest(flags: 1, type: NBDProtocol.cmdTrim, handle: 1, offset: 0, length: 1 << 20), 0, .trim(fua: true)),
        ("trim on a read-only export", NBDRequest(type: NBDProtocol.cmdTrim, handle: 1, length: 512), 1,
         .refuse(NBDProtocol.errPerm)),
        ("trim where unmap is not offered", NBDRequest(type: NBDProtocol.cmdTrim, handle: 1, length: 512), 2,
         .refuse(NBDProtocol.errInvalid)),
        ("trim past the end", NBDRequest(type: NBDProtocol.cmdTrim, handle: 1, offset: 1 << 20, length: 512), 0,
         .refuse(NBDProtocol.errInvalid)),
        ("disconnect", NBDRequest(type: NBDProtocol.cmdDisconnect, handle: 1), 0, .disconnect),
        ("WRITE_ZEROES, not offered", NBDRequest(type: 6, handle: 1, length: 512), 0, .refuse(NBDProtocol.errInvalid)),
        ("BLOCK_STATUS, not offered", NBDRequest(type: 7, handle: 1, length: 512), 0, .refuse(NBDProtocol.errInvalid)),
    ]

    @Test("each request is served or refused with the error the protocol names", arguments: plans)
    func plan(name: String, request: NBDRequest, export: Int, expected: NBDPlan) {
        #expect(request.plan(on: exports[export], maxPayload: 65536) == expected, "\(name)")
    }

    @Test("a request header round-trips; a bad magic is refused")
    func requestHeader() {
        let r = NBDRequest(flags: 1, type: 1, handle: 0x0102_0304_0506_0708, offset: 1 << 40, length: 4096)
        var bytes = [UInt8](repeating: 0, count: 28)
        bytes.withUnsafeMutableBytes { raw in
            var span = raw.mutableBytes
            r.encode(into: &span)
        }
        #expect(Array(bytes[0..<8]) == [0x25, 0x60, 0x95, 0x13, 0, 1, 0, 1])
        #expect(NBDRequest(parsing: bytes.span.bytes) == r)
        bytes[0] = 0
        #expect(NBDRequest(parsing: bytes.span.bytes) == nil)
        let short = Array(bytes.prefix(27))
        #expect(NBDRequest(parsing: short.span.bytes) == nil)
    }
}
