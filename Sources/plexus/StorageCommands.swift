import ArgumentParser
import Foundation
import PlexusAPI
import PlexusPlatform
import PlexusStorage

/// `plexus storage`: the platform's storage map, through the management API.
struct StorageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "The storage map: which personality uses which (target, LUN), and the storage behind it.",
        discussion: """
            Each personality numbers its disks by (target, LUN) in its PAN's own numbering; the \
            map says what storage each stands for (a file or block device on the control nodes). \
            The control nodes serve it to the processor holding the personality, which offers \
            each disk as an NBD socket, and it moves with the personality at a failover. The \
            same storage may be mapped read-only by many personalities, read-write by one.
            """,
        subcommands: [List.self, Map.self, Unmap.self, Discover.self, Pool.self, Stats.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every (target, LUN) of every personality, by PAN.")
        @OptionGroup var client: ClientOptions
        func run() async throws {
            let map = try await client.answer { try await $0.storageMap() }
            if client.json { return try client.show(map) }
            if map.isEmpty { return print("no storage is mapped") }
            for a in map {
                print("\(a.pan)/\(a.personality) (\(a.node.map { "node \($0)" } ?? "waiting for a processor")): "
                      + "target \(a.mapping.target) LUN \(a.mapping.lun) → \(a.mapping.path) (\(a.mapping.access.rawValue))")
            }
        }
    }

    struct Map: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Map a personality's (target, LUN) onto storage (the same as personality map-storage).")
        @Argument(help: "The personality.") var name: String
        @Argument var target: Int
        @Argument var lun: Int
        @Argument(help: "A file or block device on the control nodes.") var storage: String
        @Flag(help: "Read-only (storage can be shared read-only; read-write by one personality).") var readOnly = false
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await client.call {
                try await $0.mapStorage(name, target: target, lun: lun, storage: storage, access: readOnly ? .readOnly : .readWrite)
            }
        }
    }

    struct Unmap: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Unmap a personality's (target, LUN) (the same as personality unmap-storage).")
        @Argument(help: "The personality.") var name: String
        @Argument var target: Int
        @Argument var lun: Int
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.unmapStorage(name, target: target, lun: lun) } }
    }
}
