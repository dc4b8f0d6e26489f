import ArgumentParser
import Foundation
import PlexusAPI
import PlexusPlatform
import PlexusStorage

extension StorageCommand {
    struct Discover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rediscover the storage pool through the control nodes, or ask one iSCSI portal what it offers.",
            discussion: """
                With no portal: asks the control nodes for a rediscovery (POST /v1/storage/discover), \
                waits until one has done it (a control node running with --store and a `discovery` \
                field in its definition), then shows the pool as `plexus storage pool` does. The \
                control node compares what it finds with the prior view: new storage joins the pool, \
                unassigned storage that vanished leaves it, assigned storage that vanished is an \
                error event naming the PANs, personalities and processors.

                With a portal: runs iSCSI SendTargets, REPORT LUNS and READ CAPACITY(16) on it from \
                this machine (run it where the control nodes run, so it sees what they would), and \
                prints each LUN as the iscsi:// URL a storage map entry takes.
                """)
        @Argument(help: "An iSCSI portal, host[:port] (port 3260 when omitted), asked from here.") var portal: String?
        @Option(help: "Seconds to wait for a control node to carry out the rediscovery.") var wait: Double = 60
        @OptionGroup var client: ClientOptions

        func run() async throws {
            if let portal { return try ask(portal) }
            let request = try await client.answer { try await $0.requestDiscovery() }
            let deadline = ContinuousClock.now + .milliseconds(Int(wait * 1000))
            var state = request
            while state.doneMs == nil {
                guard ContinuousClock.now < deadline else {
                    throw CLIError("no control node carried out discovery request \(request.id) within \(wait) s "
                                   + "(is `plexus control --store` running, with a `discovery` field in its definition?)")
                }
                try await Task.sleep(for: .milliseconds(100))
                state = try await client.answer { try await $0.discoveryRequest(request.id) }
            }
            let pool = try await client.answer { try await $0.storagePool() }
            if client.json { return try client.show(pool) }
            print("rediscovery \(state.id) by \(state.claimedBy ?? "a control node"): \(state.summary ?? "done")")
            StorageCommand.Pool.show(pool)
        }

        func ask(_ portal: String) throws {
            let offers: [ISCSIOffer]
            do { offers = try ISCSIDiscovery.discover(portal: portal) } catch { throw CLIError("\(error)") }
            if client.json {
                let e = JSONEncoder()
                e.outputFormatting = [.sortedKeys]
                return print(String(decoding: try e.encode(offers), as: UTF8.self))
            }
            if offers.isEmpty { return print("\(portal) offers no target") }
            let at: String
            do { at = try ISCSIURL.portal(portal) } catch { throw CLIError("\(error)") }
            for o in offers {
                print("\(o.target) (portals \(o.portals.joined(separator: ", ")))")
                for lun in o.luns {
                    let size = o.capacities.first { $0.lun == lun }.map { " (\($0.bytes) bytes, \($0.blockSize)-byte blocks)" } ?? " (no capacity: not a disk)"
                    print("  LUN \(lun): \(o.url(portal: at, lun: lun))\(size)")
                }
            }
        }
    }

    struct Pool: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The storage pool the control nodes discovered: each item, free, assigned or vanished while assigned.",
            discussion: """
                What the control nodes' discovery found on the portals and in the directories of \
                the definition's `discovery` field (GET /v1/storage/pool): each item's path (the \
                URL or file a storage map takes), size, block size and where it was found, its \
                state, and which personalities map it; then the last discovery.
                """)
        @OptionGroup var client: ClientOptions
        func run() async throws {
            let pool = try await client.answer { try await $0.storagePool() }
            if client.json { return try client.show(pool) }
            Self.show(pool)
        }

        static func show(_ pool: StoragePoolListing) {
            if pool.items.isEmpty { print("the storage pool is empty") }
            for i in pool.items {
                print("\(i.state.rawValue.padding(toLength: 17, withPad: " ", startingAt: 0)) \(i.path)  \(i.bytes) bytes, "
                      + "\(i.blockSize)-byte blocks, from \(i.source)")
                for a in i.assignedTo {
                    print("    \(a.pan)/\(a.personality) (\(a.node.map { "node \($0)" } ?? "no processor")) target \(a.mapping.target) LUN \(a.mapping.lun)")
                }
            }
            if let d = pool.lastDiscovery {
                let when = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(d.doneMs) / 1000))
                print("last discovery: \(when) by \(d.controlNode): \(d.summary)")
                for f in d.failures { print("  not reachable: \(f)") }
            } else {
                print("no discovery yet")
            }
            if pool.pendingRequests > 0 { print("\(pool.pendingRequests) rediscovery request(s) waiting") }
        }
    }
}
