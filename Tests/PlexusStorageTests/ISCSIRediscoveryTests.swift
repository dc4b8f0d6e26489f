import Foundation
import PlexusCore
import PlexusRCLAN
import PlexusStorage
import PlexusTestSupport
import Testing

extension ISCSIBackendTests {
    @Test("tgtd killed mid-I/O: the commands in flight fail and a rediscovery finds the assigned LUN vanished; tgtd back: the session logs in again and the rediscovery after shows the LUN again")
    func rediscoveryAcrossASANOutage() throws {
        let lun = try SANDisk(bytes: Self.diskBytes)
        defer { lun.stop() }  // keeps the LUN (its directory, its tgtd) to the end of the test
        let san = lun.san
        let config = StorageDiscoveryConfiguration(portals: ["127.0.0.1:\(san.port)"], everySeconds: 0)
        let assigned: Set<String> = [StoragePool.key(san.url)]
        let start = StoragePool.compare(prior: StoragePool(), discovered: StorageDiscovery.run(config).items, assigned: assigned)
        #expect(start.joined.map(\.path) == [san.url] && start.joined.first?.bytes == UInt64(Self.diskBytes))

        let rig = try ProtocolRig.start(maps: [[StorageMapping(target: 0, lun: 0, path: san.url)]])
        defer { rig.stop() }
        let chunks = Self.diskBytes / ProcessorDriver.chunkBytes
        _ = try rig.workload(seed: 0xD15C, chunks: chunks, seconds: 60) { san.kill() }
        #expect(waitUntil(seconds: 10) {
            (try? rig.processor.runAndWait { _ in rig.driver.slotChunk.allSatisfy { $0 < 0 } }) == true
        })
        #expect(!rig.driver.report.withLock { $0 }.failed.isEmpty)

        let outage = StorageDiscovery.run(config)
        let gone = StoragePool.compare(prior: start.pool, discovered: outage.items, assigned: assigned)
        print("rediscovery with tgtd killed mid-I/O: \(gone.notes(by: "the test") { _ in "target 0 LUN 0" }), failures \(outage.failures)")
        #expect(gone.vanishedAssigned.map(\.path) == [san.url])
        #expect(outage.failures.count == 1 && outage.failures[0].contains("127.0.0.1:\(san.port)"))

        try san.start()
        #expect(waitUntil(seconds: 20) {
            (try? rig.controls[0].runAndWait { _ in rig.targets[0].sanStatus.first?.isUp }) == true
        })
        let back = StoragePool.compare(prior: gone.pool, discovered: StorageDiscovery.run(config).items, assigned: assigned)
        print("rediscovery with tgtd back: returned \(back.returned.map(\.path))")
        #expect(back.returned.map(\.path) == [san.url] && back.pool.entries[san.url]?.present == true)
    }
}
