// libFuzzer target for the address-table distribution (seed 003): the table's own encoding and
// the digest/entries messages. Every input decodes or is refused with a reason, never crashes;
// what decodes encodes back to bytes that decode to the same value.
import FuzzDriver
import PlexusCluster

func fuzzTableMessage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let message = try? TableMessage(decoding: bytes) {
        let again = message.encoded()
        precondition(again.count <= TableMessage.maxBytes || bytes.count > TableMessage.maxBytes)
        precondition((try? TableMessage(decoding: again)) == message, "a table message does not survive its own encoding")
    }
    if let table = try? AddressTable(decoding: bytes) {
        precondition((try? AddressTable(decoding: table.encoded())) == table, "a table does not survive its own encoding")
    }
    return 0
}

runFuzzer { data, size in fuzzTableMessage(data ?? UnsafePointer(bitPattern: 1)!, size) }
