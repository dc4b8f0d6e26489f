// libFuzzer target for the payload of RCLAN control frames (acknowledgements with SACK blocks,
// probes, echoes, the receiver's overrun counts): every input parses or is refused, never
// crashes; what parses has exactly as many SACK blocks as its length says, each readable.
import FuzzDriver
import PlexusRCLAN

func fuzzRVIControl(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let p = bytes.bytes
    guard let c = RVIControlPayload(parsing: p) else { return 0 }
    precondition(c.sackBlocks <= RVIControlPayload.maxSackBlocks)
    precondition(size == RVIControlPayload.headerSize + 16 * c.sackBlocks)
    for i in 0..<c.sackBlocks { _ = c.sackBlock(i, in: p) }
    _ = (c.isProbe, c.isEcho, c.hears(leg: 0), c.hears(leg: 1))
    return 0
}

runFuzzer { data, size in fuzzRVIControl(data ?? UnsafePointer(bitPattern: 1)!, size) }
