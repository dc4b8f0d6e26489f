import Foundation

// libFuzzer's own driver. SwiftPM links an executable's entry point itself, so each target's
// main calls the driver (from libFuzzer's no-main library) rather than relying on libFuzzer's
// main.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// One input: the bytes (never nil when `size` is 0 for the callee) and their count.
public typealias FuzzInput = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

/// Runs libFuzzer with the process's arguments on `target` and exits with its status.
public func runFuzzer(_ target: FuzzInput) -> Never {
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, target))
}
