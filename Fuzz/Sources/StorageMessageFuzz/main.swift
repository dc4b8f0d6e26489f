// libFuzzer target for the bytes the storage layer reads from others: the storage messages
// (CMD, STAT, BUF, TRAN) from a peer's RVI, and, from the same input, a CDB, sense data, an UNMAP
// parameter list and an NBD request header. Every input decodes or is refused with a reason,
// never crashes. A storage message that decodes has exactly one encoding: encoding it gives back
// the input bytes, which decode to the same value.
import FuzzDriver
import PlexusStorage

func fuzzStorage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let raw = UnsafeRawBufferPointer(start: data, count: size)
    let bytes = raw.bytes
    do throws(StorageMessageError) {
        let message = try StorageMessage(decoding: bytes)
        precondition(message.encodedSize == size, "a decoded message's size is not the input's")
        let again = UnsafeMutableRawBufferPointer.allocate(byteCount: StorageLimits.maxMessageSize, alignment: 8)
        defer { again.deallocate() }
        let n = try message.encode(into: again)
        precondition(n == size && again.prefix(n).elementsEqual(raw), "a storage message does not re-encode to its bytes")
        let decodedAgain = try StorageMessage(decoding: UnsafeRawBufferPointer(rebasing: again[0..<n]).bytes)
        precondition(decodedAgain == message, "a re-encoded storage message decodes to another value")
        // The failable initialisers, built at -O here: they must keep every element.
        if case .command(let c) = message {
            precondition(SegmentList(Array(c.segments)) == c.segments && CDB(c.cdb.bytes.array) == c.cdb)
        }
        if case .status(let s) = message { precondition(InlineBytes<252>(s.sense.array) == s.sense) }
    } catch {
        // Refused: its header (when that much is valid) is still readable, to answer it.
        _ = try? StorageHeader(parsing: bytes)
    }
    if let cdb = CDB(raw.prefix(16)), let command = try? SCSICommand(parsing: cdb) {
        precondition((try? SCSICommand(parsing: command.cdb)) == command, "a command's CDB does not parse back")
    }
    if let sense = SenseData(parsing: bytes) { _ = sense.fixedBytes }
    if let list = try? UnmapParameterList(parsing: bytes, length: size, maxDescriptors: 256) {
        for i in 0..<list.count { _ = list.descriptor(i, in: bytes) }
    }
    _ = NBDRequest(parsing: bytes)
    return 0
}

runFuzzer { data, size in fuzzStorage(data ?? UnsafePointer(bitPattern: 1)!, size) }
