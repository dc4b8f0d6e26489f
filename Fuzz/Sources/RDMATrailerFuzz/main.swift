// libFuzzer target for the trailer of RVI frames flagged `rdma` (an RDMA WRITE carried in an
// RVI's sequence, or the refusal of one): every input parses or is refused, never crashes; what
// parses stores back to the same bytes.
import FuzzDriver
import PlexusCore
import PlexusRCLAN
#if canImport(Glibc)
import Glibc
#endif

func fuzzRDMATrailer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let t = RDMATrailer(parsing: bytes.bytes) else { return 0 }
    precondition(size >= RDMATrailer.size)
    precondition(t.kind == .write ? Int(t.length) == size - RDMATrailer.size : size == RDMATrailer.size)
    let again = UnsafeMutableRawBufferPointer.allocate(byteCount: RDMATrailer.size, alignment: 8)
    defer { again.deallocate() }
    t.store(into: again, at: 0)
    precondition(memcmp(again.baseAddress!, data + size - RDMATrailer.size, RDMATrailer.size) == 0,
                 "a parsed trailer does not store back to its bytes")
    return 0
}

runFuzzer { data, size in fuzzRDMATrailer(data ?? UnsafePointer(bitPattern: 1)!, size) }
