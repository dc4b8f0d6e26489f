// libFuzzer target for the control messages of the management RVIs (registration,
// configuration, failover steps, console pieces, membership): every input is parsed or
// refused, never crashes, and whatever is accepted encodes back to a message that parses to
// the same value.
import FuzzDriver
import PlexusLAN

func fuzzControlMessage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let message = ControlMessage(parsing: bytes.bytes) else { return 0 }
    let again = message.encoded()
    let reparsed = ControlMessage(parsing: again.span.bytes)
    precondition(reparsed == message, "a parsed control message does not survive its own encoding")
    return 0
}

runFuzzer { data, size in fuzzControlMessage(data ?? UnsafePointer(bitPattern: 1)!, size) }
