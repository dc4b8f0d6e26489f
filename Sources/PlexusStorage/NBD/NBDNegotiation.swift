/// The option haggling of one NBD connection (the fixed newstyle handshake), as a value: the
/// client's flags and options go in, the replies come out as bytes, and each step says whether
/// to read another option, enter transmission with an export, or end the connection. No sockets,
/// so the protocol is tested on its own; ``NBDServer`` reads and writes around it.
///
/// Options answered: NBD_OPT_EXPORT_NAME, NBD_OPT_GO and NBD_OPT_INFO (with NBD_INFO_EXPORT,
/// NBD_INFO_BLOCK_SIZE always, NBD_INFO_NAME and NBD_INFO_DESCRIPTION when asked), NBD_OPT_LIST,
/// NBD_OPT_ABORT; any other with NBD_REP_ERR_UNSUP (structured replies and TLS among them).
public struct NBDNegotiation: Sendable {
    public let exports: [NBDExport]
    /// The largest request payload a connection takes (NBD_INFO_BLOCK_SIZE's maximum).
    public let maxPayload: Int
    /// The client asked for no zero padding after NBD_OPT_EXPORT_NAME.
    public private(set) var noZeroes = false

    /// What to do after an option.
    public enum Step: Sendable, Hashable {
        /// Send the replies, read the next option.
        case next
        /// Send the replies, then enter transmission with `exports[export]`.
        case transmit(export: Int)
        /// Send the replies (if any), then close the connection.
        case end
    }

    public init(exports: [NBDExport], maxPayload: Int) {
        self.exports = exports
        self.maxPayload = maxPayload
    }

    /// What the server sends first: NBDMAGIC, IHAVEOPT and its handshake flags.
    public static var greeting: [UInt8] {
        var out: [UInt8] = []
        put(NBDProtocol.initMagic, &out)
        put(NBDProtocol.optionMagic, &out)
        put(NBDProtocol.flagFixedNewstyle | NBDProtocol.flagNoZeroes, &out)
        return out
    }

    /// Takes the client's flags; false when they name a flag the server did not offer (the
    /// connection must then be dropped).
    public mutating func accept(clientFlags: UInt32) -> Bool {
        guard clientFlags & ~(NBDProtocol.clientFixedNewstyle | NBDProtocol.clientNoZeroes) == 0 else { return false }
        noZeroes = clientFlags & NBDProtocol.clientNoZeroes != 0
        return true
    }

    /// Handles option `option` with its `data`, appending the replies to `out`.
    public mutating func handle(option: UInt32, data: [UInt8], into out: inout [UInt8]) -> Step {
        switch option {
        case NBDProtocol.optExportName:
            // No error reply exists for this option: an unknown name ends the session.
            guard let i = export(named: data) else { return .end }
            let e = exports[i]
            Self.put(e.size, &out)
            Self.put(e.transmissionFlags, &out)
            if !noZeroes { out += [UInt8](repeating: 0, count: 124) }
            return .transmit(export: i)
        case NBDProtocol.optAbort:
            reply(option, NBDProtocol.repAck, [], &out)
            return .end
        case NBDProtocol.optList:
            guard data.isEmpty else {
                reply(option, NBDProtocol.repErrInvalid, Array("NBD_OPT_LIST takes no data".utf8), &out)
                return .next
            }
            for e in exports {
                var body: [UInt8] = []
                Self.put(UInt32(e.name.utf8.count), &body)
                body += e.name.utf8
                reply(option, NBDProtocol.repServer, body, &out)
            }
            reply(option, NBDProtocol.repAck, [], &out)
            return .next
        case NBDProtocol.optInfo, NBDProtocol.optGo:
            return infoOrGo(option, data, &out)
        default:
            reply(option, NBDProtocol.repErrUnsupported, [], &out)
            return .next
        }
    }

    /// NBD_OPT_INFO and NBD_OPT_GO: u32 name length, the name, u16 count, count × u16 requests.
    mutating func infoOrGo(_ option: UInt32, _ data: [UInt8], _ out: inout [UInt8]) -> Step {
        func invalid(_ why: String) -> Step {
            reply(option, NBDProtocol.repErrInvalid, Array(why.utf8), &out)
            return .next
        }
        guard data.count >= 6 else { return invalid("option data shorter than 6 bytes") }
        let nameLength = Int(Self.get(UInt32.self, data, 0))
        guard nameLength <= data.count - 6 else { return invalid("name length beyond the option") }
        let name = Array(data[4..<(4 + nameLength)])
        let count = Int(Self.get(UInt16.self, data, 4 + nameLength))
        guard data.count == 6 + nameLength + 2 * count else { return invalid("information requests do not fill the option") }
        var requested: Set<UInt16> = []
        for k in 0..<count { requested.insert(Self.get(UInt16.self, data, 6 + nameLength + 2 * k)) }
        guard let i = export(named: name) else {
            reply(option, NBDProtocol.repErrUnknown, Array("no export of that name".utf8), &out)
            return .next
        }
        let e = exports[i]
        var info: [UInt8] = []
        Self.put(NBDProtocol.infoExport, &info)
        Self.put(e.size, &info)
        Self.put(e.transmissionFlags, &info)
        reply(option, NBDProtocol.repInfo, info, &out)
        let sizes = e.blockSizes(maxPayload: maxPayload)
        info = []
        Self.put(NBDProtocol.infoBlockSize, &info)
        Self.put(sizes.minimum, &info)
        Self.put(sizes.preferred, &info)
        Self.put(sizes.maximum, &info)
        reply(option, NBDProtocol.repInfo, info, &out)
        if requested.contains(NBDProtocol.infoName) {
            info = []
            Self.put(NBDProtocol.infoName, &info)
            info += e.name.utf8
            reply(option, NBDProtocol.repInfo, info, &out)
        }
        if requested.contains(NBDProtocol.infoDescription) && !e.description.isEmpty {
            info = []
            Self.put(NBDProtocol.infoDescription, &info)
            info += e.description.utf8
            reply(option, NBDProtocol.repInfo, info, &out)
        }
        reply(option, NBDProtocol.repAck, [], &out)
        return option == NBDProtocol.optGo ? .transmit(export: i) : .next
    }

    /// One option reply of error `type` with `message` (for an export that could not be opened
    /// after NBD_OPT_GO was accepted).
    public func errorReply(option: UInt32, type: UInt32, message: String) -> [UInt8] {
        var out: [UInt8] = []
        reply(option, type, Array(message.utf8.prefix(NBDProtocol.maxString)), &out)
        return out
    }

    func export(named name: [UInt8]) -> Int? { exports.firstIndex { Array($0.name.utf8) == name } }

    /// An option reply: magic, option, type, length, data.
    func reply(_ option: UInt32, _ type: UInt32, _ data: [UInt8], _ out: inout [UInt8]) {
        Self.put(NBDProtocol.optionReplyMagic, &out)
        Self.put(option, &out)
        Self.put(type, &out)
        Self.put(UInt32(data.count), &out)
        out += data
    }

    static func put<T: FixedWidthInteger>(_ v: T, _ out: inout [UInt8]) {
        withUnsafeBytes(of: v.bigEndian) { out += $0 }
    }

    static func get<T: FixedWidthInteger>(_: T.Type, _ data: [UInt8], _ offset: Int) -> T {
        var v: T = 0
        for i in 0..<MemoryLayout<T>.size { v = v << 8 | T(data[offset + i]) }
        return v
    }
}
