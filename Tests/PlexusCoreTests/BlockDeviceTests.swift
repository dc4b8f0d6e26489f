import CPlexus
import Foundation
import PlexusCore
import PlexusTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A loop device over a file; a test detaches it with `defer { loop.detach() }` right after
/// attaching it, so that every exit path does.
struct LoopDevice {
    let path: String

    /// Attaches `file` to a free loop device with logical block size `sectorSize`.
    init(file: String, sectorSize: Int) throws {
        let out = try Self.losetup(["--find", "--show", "--sector-size", "\(sectorSize)", file])
        let device = out.trimmingCharacters(in: .whitespacesAndNewlines)
        guard device.hasPrefix("/dev/loop") else { throw PlexusError(.system, "losetup printed \(out)") }
        path = device
    }

    func detach() { _ = try? Self.losetup(["-d", path]) }

    @discardableResult
    static func losetup(_ arguments: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: toolPath("losetup"))
        p.arguments = arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard p.terminationStatus == 0 else {
            throw PlexusError(.system, "losetup \(arguments.joined(separator: " ")): \(text)")
        }
        return text
    }

    static func toolPath(_ name: String) -> String {
        for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return name
    }
}

/// Whether loop devices can be made here: root, /dev/loop-control and losetup.
let loopDevicesAvailable = isRoot && FileManager.default.fileExists(atPath: "/dev/loop-control")
    && FileManager.default.isExecutableFile(atPath: LoopDevice.toolPath("losetup"))

extension BlockIOTests {
    @Suite("Block I/O: a block device (loop device over a file)", .requiresIOUring,
           .enabled(if: loopDevicesAvailable, "needs root, /dev/loop-control and losetup"))
    struct BlockDevice {
        @Test("size and logical block size come from the device; writes, reads, flush and discard work",
              arguments: [512, 4096])
        func loopDevice(sectorSize: Int) throws {
            let dir = try ScratchDirectory(under: "/tmp")
            defer { dir.remove() }
            let backing = try dir.file("backing", size: 8 << 20)
            let loop = try LoopDevice(file: backing, sectorSize: sectorSize)
            defer { loop.detach() }
            let bed = try BlockBed()
            defer { bed.thread.stopAndWait() }  // runs first: the device is closed before it is detached

            let device = try bed.open(loop.path)
            #expect(device.kind == .blockDevice)
            #expect(device.size == 8 << 20)
            #expect(device.logicalBlockSize == sectorSize)
            #expect(device.isDirect && device.offsetAlignment == sectorSize, "\(device)")

            let region = try bed.region(1 << 20)
            let bytes = pattern(5, size: 4 * sectorSize)
            try bed.fill(region, at: 0, with: bytes)
            let start = UInt64(16 * sectorSize)
            try bed.thread.runAndWait { try $0.write(device, at: start, length: bytes.count, from: region, writeThrough: true, token: 1) }
            #expect(bed.completion(1)?.result == Int32(bytes.count))
            try bed.thread.runAndWait { try $0.flush(device, token: 2) }
            #expect(bed.completion(2)?.result == 0)
            try bed.thread.runAndWait { try $0.read(device, at: start, length: bytes.count, into: region, regionOffset: 65536, token: 3) }
            #expect(bed.completion(3)?.result == Int32(bytes.count))
            #expect(try bed.bytes(region, at: 65536, count: bytes.count) == bytes)
            // What the engine wrote is in the backing file, at the same offset.
            #expect(fileBytes(backing, at: Int(start), count: bytes.count) == bytes)

            // Out of range and misaligned: refused before the kernel sees them.
            #expect(try bed.refusal { try $0.read(device, at: 8 << 20, length: sectorSize, into: region, token: 9) } == .outOfRange)
            #expect(try bed.refusal { try $0.read(device, at: UInt64(sectorSize / 2), length: sectorSize, into: region, token: 9) } == .misaligned)
            #expect(try bed.refusal { try $0.discard(device, at: 0, length: sectorSize / 2, token: 9) } == .misaligned)

            // Discard of the second block: BLOCK_URING_CMD_DISCARD (kernel 6.12 and later); a loop
            // device punches a hole in its backing file, so the range then reads back as zeros.
            try bed.thread.runAndWait { try $0.discard(device, at: start + UInt64(sectorSize), length: sectorSize, token: 4) }
            let discarded = bed.completion(4)?.result
            if kernelAtLeast(6, 12) {
                #expect(discarded == 0)
                try bed.thread.runAndWait { try $0.read(device, at: start, length: bytes.count, into: region, regionOffset: 131072, token: 5) }
                #expect(bed.completion(5)?.result == Int32(bytes.count))
                let back = try bed.bytes(region, at: 131072, count: bytes.count)
                #expect(back[sectorSize..<2 * sectorSize].allSatisfy { $0 == 0 })
                #expect(back[(2 * sectorSize)...] == bytes[(2 * sectorSize)...])
            } else {
                #expect(discarded == -EOPNOTSUPP || discarded == -EINVAL)
            }
            #expect(try bed.counters.inFlight == 0)
        }
    }
}

/// Whether the running kernel's release is at least `major.minor`.
func kernelAtLeast(_ major: Int, _ minor: Int) -> Bool {
    var u = utsname()
    uname(&u)
    let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
    guard parts.count == 2 else { return false }
    return (parts[0], parts[1]) >= (major, minor)
}
