// libFuzzer target for the control messages of the management RVIs (registration,
// configuration, failover steps, console pieces, membership): every input is parsed or
// refused, never crashes, and whatever is accepted encodes back to a message that parses to
// the same value.
import Foundation
import PlexusLAN

func fuzzControlMessage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let message = ControlMessage(parsing: UnsafeRawBufferPointer(start: data, count: size)) else { return 0 }
    let again = message.encoded()
    let reparsed = again.withUnsafeBytes { ControlMessage(parsing: $0) }
    precondition(reparsed == message, "a parsed control message does not survive its own encoding")
    return 0
}

// libFuzzer's own driver (SwiftPM links an executable's entry point itself, so the target
// calls the driver rather than relying on libFuzzer's main).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
    fuzzControlMessage(data ?? UnsafePointer(bitPattern: 1)!, size)
})
