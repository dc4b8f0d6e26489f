import Foundation
import Hummingbird
import HummingbirdTesting
import PlexusAPI
import PlexusCore
import PlexusNamespaces
import PlexusPlatform
import PlexusStorage
import PlexusTestSupport
import Synchronization
import Testing

/// Statistics as a control node publishes them: `reads` commands of 100 µs and `writes` of
/// 50 ms, 4 KiB each.
private func published(reads: UInt64, writes: UInt64) -> DiskStatistics {
    var s = DiskStatistics()
    s.reads = reads
    s.writes = writes
    s.operations = reads + writes
    s.bytesRead = reads * 4096
    s.bytesWritten = writes * 4096
    s.busySeconds = Double(reads) * 0.0001 + Double(writes) * 0.05
    if reads > 0 { s.latency.buckets.append(.init(microseconds: 100, count: reads)) }
    if writes > 0 { s.latency.buckets.append(.init(microseconds: 50_175, count: writes)) }
    return DiskStatistics.merged([s])
}

/// A store with PAN web (personality front on node 3: T0 L0 and T0 L1) and PAN lab (back on
/// node 4: T0 L0), and both control nodes' published statistics: node 3's T0 L0 served by
/// both (90 reads at control node 1, 10 writes at control node 2).
private func storeWithStatistics(_ path: String) throws -> PlatformStore {
    let store = try PlatformStore(path: path)
    _ = try store.addProcessors([3, 4])
    for (pan, name, node) in [("web", "front", NodeNumber(3)), ("lab", "back", NodeNumber(4))] {
        _ = try store.createPAN(pan)
        _ = try store.addProcessor(to: pan, name: name, node: node)
        _ = try store.mapStorage(name, target: 0, lun: 0, storage: "/luns/\(name)0", access: .readWrite)
    }
    _ = try store.mapStorage("front", target: 0, lun: 1, storage: "/luns/front1", access: .readWrite)
    try store.publishStorageStatistics(control: 1, [
        LUNStatistics(processor: 3, target: 0, lun: 0, path: "/luns/front0", statistics: published(reads: 90, writes: 0)),
        LUNStatistics(processor: 4, target: 0, lun: 0, path: "/luns/back0", statistics: published(reads: 5, writes: 0)),
    ])
    try store.publishStorageStatistics(control: 2, [
        LUNStatistics(processor: 3, target: 0, lun: 0, path: "/luns/front0", statistics: published(reads: 0, writes: 10)),
        LUNStatistics(processor: 3, target: 0, lun: 1, path: "/luns/front1", statistics: published(reads: 1, writes: 1)),
    ])
    return store
}

@Suite("Storage statistics in the store, the API and the CLI", .serialized)
struct StorageStatisticsAPITests {
    static let token = String(repeating: "cd", count: 32)

    @Test("the store adds both control nodes' LUN statistics per LUN, per processor and per PAN; histograms add")
    func storeReport() throws {
        let t = try TempDatabase()
        let store = try storeWithStatistics(t.path)
        #expect(PlatformStore.migrations.contains("storage statistics"))
        let r = try store.storageStatistics()
        #expect(r.controls.map(\.control) == [1, 2])
        #expect(r.luns.map { "\($0.processor) \($0.target) \($0.lun) \($0.pan ?? "-")" } == ["3 0 0 web", "3 0 1 web", "4 0 0 lab"])
        let front0 = r.luns[0].statistics
        #expect(front0.reads == 90 && front0.writes == 10 && front0.operations == 100 && front0.bytesRead == 90 * 4096)
        // The percentiles of the 100 commands: p50 a fast read, p99 a slow write.
        #expect(front0.p50Microseconds == 100 && front0.p99Microseconds > 40_000, "\(front0)")
        #expect(r.processors.map(\.processor) == [3, 4] && r.processors[0].statistics.operations == 102)
        #expect(r.processors[0].pan == "web" && r.processors[0].personality == "front")
        #expect(r.pans.map(\.pan) == ["lab", "web"] && r.pans[1].statistics.reads == 91 && r.pans[0].statistics.reads == 5)
        #expect(r.pans[1].statistics.latency.count == 102)
        // A new snapshot replaces the control node's rows: a LUN it no longer serves goes.
        try store.publishStorageStatistics(control: 2, [])
        #expect(try store.storageStatistics().luns.count == 2)
    }

    @Test("the publisher writes a snapshot about once a second and says once when it cannot")
    func publisher() throws {
        let t = try TempDatabase()
        let store = try PlatformStore(path: t.path)
        let calls = Mutex(0)
        let fail = Mutex(false)
        let p = StorageStatisticsPublisher(store: store, control: 1) {
            calls.withLock { $0 += 1 }
            if fail.withLock({ $0 }) { throw PlexusError(.engineStopped, "control node 1 stopped") }
            return [LUNStatistics(processor: 3, target: 0, lun: 0, path: "/luns/a", statistics: published(reads: 1, writes: 0))]
        }
        #expect(p.poll(now: 1_000_000_000) == nil)
        #expect(p.poll(now: 1_500_000_000) == nil && calls.withLock { $0 } == 1, "not again within a second")
        #expect(try store.publishedStorageStatistics().count == 1)
        fail.withLock { $0 = true }
        #expect(p.poll(now: 2_100_000_000)?.contains("control node 1 stopped") == true)
        #expect(p.poll(now: 3_200_000_000) == nil, "said once")
        fail.withLock { $0 = false }
        #expect(p.poll(now: 4_300_000_000) == "storage statistics published again")
    }

    @Test("GET /v1/storage/stats: everything, one PAN, one processor; bad queries refused by field")
    func api() async throws {
        let t = try TempDatabase()
        let store = try storeWithStatistics(t.path)
        let app = Application(router: ManagementAPI.router(store: store, token: Self.token))
        try await app.test(.router) { client in
            func get(_ uri: String) async throws -> (Int, String) {
                var headers = HTTPFields()
                headers[.authorization] = "Bearer \(Self.token)"
                let r = try await client.execute(uri: uri, method: .get, headers: headers)
                return (Int(r.status.code), String(buffer: r.body))
            }
            let (status, body) = try await get("/v1/storage/stats")
            #expect(status == 200)
            let all = try JSONDecoder().decode(StorageStatisticsReport.self, from: Data(body.utf8))
            #expect(all == (try store.storageStatistics()))
            let web = try JSONDecoder().decode(StorageStatisticsReport.self, from: Data(try await get("/v1/storage/stats?pan=web").1.utf8))
            #expect(web.luns.count == 2 && web.pans.map(\.pan) == ["web"] && web.processors.map(\.processor) == [3])
            let four = try JSONDecoder().decode(StorageStatisticsReport.self,
                                                from: Data(try await get("/v1/storage/stats?processor=4").1.utf8))
            #expect(four.luns.count == 1 && four.luns[0].pan == "lab" && four.luns[0].statistics.reads == 5)
            for (uri, code, field) in [("/v1/storage/stats?pan=nope", 404, "pan"), ("/v1/storage/stats?processor=9", 404, "processor"),
                                       ("/v1/storage/stats?processor=abc", 400, "processor"),
                                       ("/v1/storage/stats?processor=0", 400, "processor"),
                                       ("/v1/storage/stats?pan=", 400, "pan"), ("/v1/storage/stats?color=red", 400, "color")] {
                let (s, b) = try await get(uri)
                let e = (try? JSONSerialization.jsonObject(with: Data(b.utf8))) as? [String: Any]
                let error = e?["error"] as? [String: Any]
                #expect(s == code && error?["field"] as? String == field, "\(uri): \(s) \(b)")
            }
        }
        _ = t
    }

    @Test("plexus storage stats [--json] [--pan P] [--processor N] against plexus api serve")
    func cli() throws {
        let exe = try #require(plexusExecutable, "the plexus executable was not built next to the tests (run swift build first)")
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-stats-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: state) }
        let store = try storeWithStatistics(state + "/platform.sqlite")
        let server = try WatchedProcess([exe, "api", "serve", "--state", state, "--port", "0"])
        defer { server.process.kill() }
        #expect(server.waitFor("serving http://", seconds: 20), "\(server.output)")
        let line = try #require(server.output.split(separator: "\n").first { $0.contains("serving http://") })
        let api = String(try #require(line.split(separator: " ").first { $0.hasPrefix("http://") }).dropLast(3))
        func plexus(_ args: String...) -> (status: Int32, output: String) {
            NamespaceFabric.execute([exe, "storage", "stats"] + args + ["--api", api, "--token-file", state + "/api-token"])
        }
        let text = plexus()
        #expect(text.status == 0, "\(text.output)")
        #expect(text.output.contains("node 3 target 0 LUN 0 (web/front) /luns/front0: 100 ops (90 reads, 10 writes, 0 flushes, 0 trims), 368640 B read, 40960 B written, 0 errors"),
                "\(text.output)")
        #expect(text.output.contains("per PAN:\n  lab: 5 ops") && text.output.contains("  web: 102 ops"), "\(text.output)")
        let json = plexus("--json")
        #expect(json.status == 0)
        let decoded = try JSONDecoder().decode(StorageStatisticsReport.self, from: Data(json.output.utf8))
        #expect(decoded == (try store.storageStatistics()))
        let lab = plexus("--pan", "lab", "--json")
        #expect((try? JSONDecoder().decode(StorageStatisticsReport.self, from: Data(lab.output.utf8)))?.luns.map(\.processor) == [4])
        let one = plexus("--processor", "3")
        #expect(one.status == 0 && !one.output.contains("node 4"), "\(one.output)")
        let unknown = plexus("--pan", "nope")
        #expect(unknown.status != 0 && unknown.output.contains("refused (404 not-found): pan: no PAN 'nope'"), "\(unknown.output)")
        let bad = plexus("--processor", "x")
        #expect(bad.status != 0 && bad.output.contains("--processor"), "\(bad.output)")
    }
}
