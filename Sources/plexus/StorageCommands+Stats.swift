import ArgumentParser
import Foundation
import PlexusCore
import PlexusPlatform
import PlexusStorage

extension StorageCommand {
    /// `plexus storage stats`: what the control nodes served, per LUN, per processor and per PAN.
    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Storage statistics per LUN, per processor and per PAN, as the control nodes served them.",
            discussion: """
                I/O operations, reads, writes, bytes, errors, the time I/O was in progress and \
                the latency p50/p99 of the commands, counted by the control nodes' storage \
                targets and published to the platform store about once a second (plexus control \
                --store). Both control nodes' figures are added; percentiles come from their \
                added latency histograms.
                """)
        @Option(help: "Only the LUNs of this PAN.") var pan: String?
        @Option(help: "Only the LUNs of this processor (a node number).") var processor: NodeNumber?
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let report = try await client.answer { try await $0.storageStatistics(pan: pan, processor: processor) }
            if client.json { return try client.show(report) }
            print(Self.text(report), terminator: "")
        }

        /// The report as an operator reads it.
        static func text(_ r: StorageStatisticsReport) -> String {
            guard !r.luns.isEmpty else {
                return r.controls.isEmpty ? "no storage statistics published (control nodes run with --store publish them)\n"
                    : "no LUN selected has statistics\n"
            }
            var out = ""
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            for c in r.controls {
                out += "control node \(c.control): published \(String(format: "%.1f", Double(now - c.updatedMs) / 1000)) s ago\n"
            }
            out += "per LUN:\n"
            for l in r.luns {
                let owner = l.pan.map { " (\($0)/\(l.personality ?? "?"))" } ?? ""
                out += "  node \(l.processor) target \(l.target) LUN \(l.lun)\(owner) \(l.path): \(line(l.statistics))\n"
            }
            out += "per processor:\n"
            for p in r.processors {
                out += "  node \(p.processor)\(p.pan.map { " (\($0))" } ?? ""): \(line(p.statistics))\n"
            }
            if !r.pans.isEmpty {
                out += "per PAN:\n"
                for p in r.pans { out += "  \(p.pan): \(line(p.statistics))\n" }
            }
            return out
        }

        static func line(_ s: DiskStatistics) -> String {
            "\(s.operations) ops (\(s.reads) reads, \(s.writes) writes, \(s.flushes) flushes, \(s.trims) trims), "
                + "\(s.bytesRead) B read, \(s.bytesWritten) B written, \(s.errors) errors, "
                + String(format: "busy %.3f s, p50 %.0f µs, p99 %.0f µs", s.busySeconds, s.p50Microseconds, s.p99Microseconds)
        }
    }
}
