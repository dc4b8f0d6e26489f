// libFuzzer target for the frame decoder (PlexusCore's FrameHeader). Every input must decode or be
// rejected with a reason, never crash; what is accepted must re-encode to the same 64 header
// bytes and its declared lengths must fit the datagram.
import FuzzDriver
import PlexusCore


func fuzzFrameDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    switch FrameHeader.decode(from: UnsafeRawPointer(data), length: size) {
    case .success(let h):
        precondition(size >= FrameLayout.headerSize)
        precondition(Int(h.payloadLength) == size - FrameLayout.headerSize)
        precondition(Int(h.payloadLength) <= FrameLayout.maxPayload)
        precondition(UInt64(h.segmentOffset) + UInt64(h.payloadLength) <= UInt64(h.messageLength))
        var out = [UInt8](repeating: 0, count: FrameLayout.headerSize)
        out.withUnsafeMutableBytes { h.encode(into: $0.baseAddress!) }
        for i in 0..<FrameLayout.headerSize { precondition(out[i] == data[i], "re-encoding differs at byte \(i)") }
    case .failure:
        break
    }
    return 0
}

runFuzzer { data, size in fuzzFrameDecoder(data ?? UnsafePointer(bitPattern: 1)!, size) }
