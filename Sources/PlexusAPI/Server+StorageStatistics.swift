import Foundation
import Hummingbird
import PlexusCore
import PlexusPlatform

extension ManagementAPI {
    /// `GET /v1/storage/stats[?pan=P][&processor=N]`: the statistics the control nodes
    /// published (``PlexusPlatform/StorageStatisticsReport``). A query key other than `pan` and
    /// `processor`, an empty PAN or a processor that is not a node number is refused (400); a PAN
    /// or processor the store does not have is not found (404).
    static func storageStatistics(_ req: Request, store: PlatformStore) throws -> StorageStatisticsReport {
        let query = req.uri.queryParameters
        for (key, _) in query where key != "pan" && key != "processor" {
            throw PlatformError(.invalid, field: String(key), "unknown query parameter '\(key)' (pan, processor)")
        }
        let pan = try query.get("pan").map { s throws(PlatformError) -> String in
            let name = s.removingPercentEncoding ?? s
            guard !name.isEmpty else { throw PlatformError(.invalid, field: "pan", "empty PAN name") }
            return name
        }
        let processor = try query.get("processor").map { s throws(PlatformError) -> NodeNumber in
            guard let v = Int(s), PlatformLimits.nodeNumbers.contains(v), let n = NodeNumber(exactly: v) else {
                throw PlatformError(.invalid, field: "processor", PlatformLimits.notANodeNumber("'\(s)'"))
            }
            return n
        }
        return try store.storageStatistics(pan: pan, processor: processor)
    }
}
