import ArgumentParser
import Foundation
import PlexusNamespaces
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import PlexusAPI
import PlexusCore
import PlexusLAN
import PlexusNode
import PlexusPlatform

// The management surface: `plexus api serve` runs the REST API on a control node's state, and
// the other commands here are its clients, one command per route (docs/openapi.yaml).

struct API: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api",
        abstract: "Serve the management API of a control node.",
        subcommands: [Serve.self])

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve the management API (REST, docs/openapi.yaml) on the platform state in --state.",
            discussion: """
                The state is one SQLite database, <state>/platform.sqlite, created and migrated on \
                first start; the processing nodes' consoles are read from <state>/console (where \
                `plexus control --state <state>` keeps them). The API token is generated on first start into <state>/api-token (mode \
                0600) and never printed: clients read it from that file (--token-file). Stops on \
                SIGINT or SIGTERM.
                """)
        @Option(help: "The control node's state directory (created if missing).") var state: String = "plexus-state"
        @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
        @Option(help: "Port to listen on (0: any free port, printed).") var port: Int = 7070
        @Option(help: "The control node serial new MACs carry (kept in the database at creation).") var serial: UInt16 = 1

        func run() async throws {
            guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535") }
            try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
            let store = try PlatformStore(path: state + "/platform.sqlite", serial: serial)
            let token = try APIToken.loadOrCreate(at: state + "/api-token")
            let console = try ConsoleArchive(directory: state + "/console")
            let app = Application(
                router: ManagementAPI.router(store: store, token: token, console: console),
                configuration: .init(address: .hostname(host, port: port)),
                onServerRunning: { channel in
                    print("plexus api: serving http://\(host):\(channel.localAddress?.port ?? port)/v1 "
                          + "(state \(store.path); token in \(state)/api-token)")
                    fflush(nil)
                })
            // No signal handling of its own: ShutdownSignals (Plexus.main) stops the process.
            do {
                try await app.runService(gracefulShutdownSignals: [])
            } catch {
                throw CLIError("the management API stopped: \(error)")
            }
        }
    }
}

/// Where the API is, how to authenticate, and how to print.
struct ClientOptions: ParsableArguments {
    @Option(help: "The management API's base URL (default: $PLEXUS_API, else http://127.0.0.1:7070).")
    var api: String?
    @Option(help: "File holding the API token (default: $PLEXUS_TOKEN_FILE, else plexus-state/api-token).")
    var tokenFile: String?
    @Flag(help: "Print the API's JSON answer as is (for programs).") var json = false

    /// The API's base URL and the token (from --api/$PLEXUS_API and --token-file/$PLEXUS_TOKEN_FILE).
    func endpoint() throws -> (base: String, token: String) {
        let base = api ?? ProcessInfo.processInfo.environment["PLEXUS_API"] ?? "http://127.0.0.1:7070"
        let file = tokenFile ?? ProcessInfo.processInfo.environment["PLEXUS_TOKEN_FILE"] ?? "plexus-state/api-token"
        guard let token = try? String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
              !token.isEmpty
        else {
            throw CLIError("cannot read the API token from \(file) (--token-file; `plexus api serve` writes it in its state directory)")
        }
        guard URL(string: base) != nil else { throw CLIError("bad --api URL: \(base)") }
        return (base, token)
    }

    /// The typed client of the API these options point at.
    func client() throws -> ManagementClient {
        let (base, token) = try endpoint()
        return ManagementClient(base: base, token: token)
    }

    /// Calls the API; prints the answer; throws (exit 1) on a refusal, naming the field.
    func call<T: Encodable>(_ request: (ManagementClient) async throws -> T) async throws {
        try show(try await answer(request))
    }

    /// Calls the API; its answer. A refusal is printed with --json and thrown as a CLIError
    /// naming the field; no answer at all is thrown as such.
    func answer<T>(_ request: (ManagementClient) async throws -> T) async throws -> T {
        let client = try client()
        do {
            return try await request(client)
        } catch let e as APIRefusal {
            throw refused(e)
        }
    }

    /// A refusal as the error the command exits with (printed as the API wrote it with --json).
    func refused(_ e: APIRefusal) -> CLIError {
        switch (e.status, e.kind) {
        case (0, _): return CLIError("cannot reach the management API at \((try? endpoint().base) ?? "?"): \(e.message)")
        case (_, "unexpected"): return CLIError(e.message)
        default:
            if json, let data = try? APIBody.encode(e.answer) { print(String(decoding: data, as: UTF8.self)) }
            return CLIError("refused (\(e.status) \(e.kind)): \(e.field.map { "\($0): " } ?? "")\(e.message)")
        }
    }

    /// Prints an answer: its JSON (as the API writes it) with --json, else readably.
    func show<T: Encodable>(_ value: T) throws {
        let data = try APIBody.encode(value)
        if json {
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(Self.render(try JSONDecoder().decode(JSONValue.self, from: data)), terminator: "")
        }
    }

    /// A readable rendering of a JSON answer: one `key: value` per line, nested by indentation.
    static func render(_ v: JSONValue, indent: String = "") -> String {
        switch v {
        case .object(let d):
            if d.isEmpty { return indent + "ok\n" }
            return d.keys.sorted().map { k in
                let value = d[k]!
                if value.isObject || value.elements?.contains(where: \.isObject) == true {
                    return "\(indent)\(k):\n" + render(value, indent: indent + "  ")
                }
                return "\(indent)\(k): \(scalar(value))\n"
            }.joined()
        case .array(let a):
            if a.isEmpty { return indent + "(none)\n" }
            return a.map { e in
                let body = render(e, indent: indent + "  ")
                return indent + "- " + body.dropFirst(indent.count + 2)
            }.joined()
        default:
            return indent + scalar(v) + "\n"
        }
    }

    static func scalar(_ v: JSONValue) -> String {
        switch v {
        case .null: "-"
        case .bool(let b): b ? "1" : "0"  // as this output has always shown them
        case .int(let i): "\(i)"
        case .double(let d): "\(d)"
        case .string(let s): s
        case .array(let a): a.isEmpty ? "(none)" : a.map { scalar($0) }.joined(separator: ", ")
        case .object: "{...}"
        }
    }
}

struct Pool: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The free pool of processing nodes, shared by every PAN.",
        subcommands: [List.self, Add.self, Remove.self, Return.self])
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every processor: free, assigned (and to which personality) or fenced.")
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.processors() } }
    }
    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add processing nodes to the free pool.")
        @Argument(help: "Node numbers.") var nodes: [NodeNumber]
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.addProcessors(nodes) } }
    }
    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take a free processor off the platform.")
        @Argument var node: NodeNumber
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.removeProcessor(node) } }
    }
    struct Return: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Return a fenced (repaired) processor to the free pool.")
        @Argument var node: NodeNumber
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.returnProcessor(node) } }
    }
}

struct PANCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pan",
        abstract: "Processing area networks: create, list, delete, their VLANs and processors.",
        subcommands: [List.self, Create.self, Show.self, Delete.self, AddVLAN.self, RemoveVLAN.self, AddProcessor.self])
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every PAN with its VLANs and personalities.")
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.pans() } }
    }
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a PAN.")
        @Argument(help: "1-63 of a-z, 0-9 and '-', starting with a letter.") var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.createPAN(name) } }
    }
    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One PAN.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.pan(name) } }
    }
    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a PAN: its processors return to the pool, its MACs are retired.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.deletePAN(name) } }
    }
    struct AddVLAN: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add-vlan", abstract: "Give a PAN a VLAN (1...4094, platform-wide).")
        @Argument var pan: String
        @Argument var vlan: Int
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.addVLAN(vlan, to: pan) } }
    }
    struct RemoveVLAN: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove-vlan", abstract: "Remove a VLAN no NIC is on.")
        @Argument var pan: String
        @Argument var vlan: Int
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.removeVLAN(vlan, from: pan) } }
    }
    struct AddProcessor: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-processor", abstract: "Add a processor from the free pool to a PAN, with a new personality.")
        @Argument var pan: String
        @Option(help: "The personality's name (default <pan>-<node>).") var name: String?
        @Option(help: "A particular free node (default: the lowest free one).") var node: NodeNumber?
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.addProcessor(to: pan, name: name, node: node) } }
    }
}

struct PersonalityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "personality",
        abstract: "Personalities: a processor's MACs, VLANs, IPs, storage map and workload, as one thing.",
        subcommands: [List.self, Show.self, Remove.self, AttachNIC.self, DetachNIC.self, BindIP.self, UnbindIP.self,
                      MapStorage.self, UnmapStorage.self, SetWorkload.self, Migrate.self])
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every personality.")
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.personalities() } }
    }
    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One personality, by name or by the node holding it.")
        @Argument(help: "A personality's name.") var name: String?
        @Option(help: "The node holding it, instead of a name.") var node: NodeNumber?
        @OptionGroup var client: ClientOptions
        func validate() throws {
            if (name == nil) == (node == nil) { throw ValidationError("give a personality's name or --node, not both") }
        }
        func run() async throws {
            if let node { try await client.call { try await $0.personality(node: node) } }
            else if let name { try await client.call { try await $0.personality(name) } }
        }
    }
    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a personality; its processor returns to the pool.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.removePersonality(name) } }
    }
    struct AttachNIC: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "attach-nic", abstract: "Attach a NIC (new MAC) on a VLAN of the PAN.")
        @Argument var name: String
        @Argument var vlan: Int
        @Flag(help: "Let this NIC listen promiscuously.") var promiscuousAllowed = false
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await client.call { try await $0.attachNIC(name, vlan: vlan, promiscuousAllowed: promiscuousAllowed) }
        }
    }
    struct DetachNIC: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "detach-nic", abstract: "Detach the NIC on a VLAN (its MAC is retired).")
        @Argument var name: String
        @Argument var vlan: Int
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.detachNIC(name, vlan: vlan) } }
    }
    struct BindIP: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "bind-ip", abstract: "Bind an IPv4 address (a.b.c.d/len) to the NIC on a VLAN.")
        @Argument var name: String
        @Argument var vlan: Int
        @Argument var address: String
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.bindIP(name, vlan: vlan, address: address) } }
    }
    struct UnbindIP: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "unbind-ip", abstract: "Unbind an address (a.b.c.d).")
        @Argument var name: String
        @Argument var vlan: Int
        @Argument var host: String
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.unbindIP(name, vlan: vlan, host: host) } }
    }
    struct MapStorage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "map-storage", abstract: "Map a virtual (target, LUN) onto a storage address.")
        @Argument var name: String
        @Argument var target: Int
        @Argument var lun: Int
        @Argument(help: "A path, block device or SAN address.") var storage: String
        @Flag(help: "Read-only (storage can be shared read-only; read-write by one personality).") var readOnly = false
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await client.call {
                try await $0.mapStorage(name, target: target, lun: lun, storage: storage, access: readOnly ? .readOnly : .readWrite)
            }
        }
    }
    struct UnmapStorage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "unmap-storage", abstract: "Unmap a (target, LUN).")
        @Argument var name: String
        @Argument var target: Int
        @Argument var lun: Int
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.unmapStorage(name, target: target, lun: lun) } }
    }
    struct SetWorkload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-workload", abstract: "Set the workload command (or --clear it).")
        @Argument var name: String
        @Argument(help: "The command line, started in the processor's network namespace.") var command: String?
        @Flag var clear = false
        @OptionGroup var client: ClientOptions
        func validate() throws {
            if (command == nil) != clear { throw ValidationError("give a command, or --clear") }
        }
        func run() async throws { try await client.call { try await $0.setWorkload(name, command: command) } }
    }
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a personality to another processor by hand (the old one returns to the pool).")
        @Argument var name: String
        @Option(help: "A particular free node (default: the lowest free one).") var to: NodeNumber?
        @OptionGroup var client: ClientOptions
        func run() async throws { try await client.call { try await $0.migrate(name, to: to) } }
    }
}

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What happened to the platform, oldest first; --follow watches for more.",
        discussion: """
            Every command applied, every failure and failover (each step of its timeline as a \
            failover-step event, then a failover summary) is an event with an id. --follow prints \
            the events so far, then each new one as it is recorded (one line each: id, time, kind, \
            subject, detail; with --json one JSON object per line), until Ctrl-C.
            """)
    @Option(help: "Only events after this id.") var since: Int = 0
    @Option(help: "At most this many (per request).") var limit: Int = 1000
    @Flag(help: "Keep printing new events as they are recorded (until Ctrl-C).") var follow = false
    @Option(help: "How often to ask for more with --follow, in milliseconds.") var interval: Int = 250
    @OptionGroup var client: ClientOptions

    func validate() throws {
        guard since >= 0 else { throw ValidationError("--since: an event id is 0 or more") }
        guard (1...10000).contains(limit) else { throw ValidationError("--limit: 1...10000") }
        guard (10...60000).contains(interval) else { throw ValidationError("--interval: 10...60000 ms") }
    }

    func run() async throws {
        guard follow else { return try await client.call { try await $0.events(since: Int64(since), limit: limit) } }
        var last = Int64(since)
        while true {
            let events = try await client.answer { try await $0.events(since: last, limit: limit) }
            for e in events {
                if client.json {
                    print(String(decoding: try APIBody.encode(e), as: UTF8.self))
                } else {
                    let time = Date(timeIntervalSince1970: Double(e.timeMs) / 1000)
                    let detail = e.detail.isEmpty ? "" : "  \(e.detail)"
                    print("\(e.id)  \(ISO8601DateFormatter().string(from: time))  \(e.kind)  \(e.subject)\(detail)")
                }
                last = max(last, e.id)
            }
            fflush(nil)
            if events.count < limit { try await Task.sleep(for: .milliseconds(interval)) }  // the poll interval of --follow
        }
    }
}

extension String {
    var pathEscaped: String { addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? self }
}
