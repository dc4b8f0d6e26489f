import ArgumentParser
import Foundation
import PlexusNamespaces
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import PlexusAPI
import PlexusLAN
import PlexusNode
import PlexusPlatform
import Synchronization

// The management surface: `plexus api serve` runs the REST API on a control node's state, and
// the other commands here are its clients, one command per route (docs/openapi.yaml).

struct API: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api",
        abstract: "Serve the management API of a control node.",
        subcommands: [Serve.self])

    struct Serve: ParsableCommand {
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

        func run() throws {
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
            let done = DispatchSemaphore(value: 0)
            let failure = Handoff<String?>(nil)
            Task {
                // No signal handling of its own: ShutdownSignals (Plexus.main) stops the process.
                do { try await app.runService(gracefulShutdownSignals: []) } catch { failure.set("\(error)") }
                done.signal()
            }
            done.wait()
            if let e = failure.get() { throw CLIError("the management API stopped: \(e)") }
        }
    }
}

/// A value handed from a callback or task to the thread waiting for it.
final class Handoff<T: Sendable>: Sendable {
    let value: Mutex<T>
    init(_ v: T) { value = Mutex(v) }
    func set(_ v: T) { value.withLock { $0 = v } }
    func get() -> T { value.withLock { $0 } }
}

/// Where the API is, how to authenticate, and how to print.
struct ClientOptions: ParsableArguments {
    @Option(help: "The management API's base URL (default: $PLEXUS_API, else http://127.0.0.1:7070).")
    var api: String?
    @Option(help: "File holding the API token (default: $PLEXUS_TOKEN_FILE, else plexus-state/api-token).")
    var tokenFile: String?
    @Flag(help: "Print the API's JSON answer as is (for programs).") var json = false

    /// Calls the API; prints the answer; throws (exit 1) on a refusal, naming the field.
    func call(_ method: String, _ path: String, _ body: [String: Any?]? = nil) throws {
        let (status, data) = try request(method, path, body)
        try show(status, data)
    }

    /// Sends one request; the answer's status and body (a refusal is not thrown here).
    func request(_ method: String, _ path: String, _ body: [String: Any?]? = nil) throws -> (status: Int, data: Data) {
        let base = api ?? ProcessInfo.processInfo.environment["PLEXUS_API"] ?? "http://127.0.0.1:7070"
        let file = tokenFile ?? ProcessInfo.processInfo.environment["PLEXUS_TOKEN_FILE"] ?? "plexus-state/api-token"
        guard let token = try? String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) else {
            throw CLIError("cannot read the API token from \(file) (--token-file; `plexus api serve` writes it in its state directory)")
        }
        guard let url = URL(string: base + path) else { throw CLIError("bad --api URL: \(base)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = try JSONSerialization.data(withJSONObject: body.mapValues { $0 ?? NSNull() }, options: [.sortedKeys])
        }
        let result = Handoff<(status: Int, data: Data)?>(nil)
        let failure = Handoff<String>("no answer")
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { d, r, e in
            if let http = r as? HTTPURLResponse, let d { result.set((http.statusCode, d)) }
            if let e { failure.set(e.localizedDescription) }
            done.signal()
        }.resume()
        done.wait()
        guard let (status, data) = result.get() else {
            throw CLIError("cannot reach the management API at \(base): \(failure.get())")
        }
        return (status, data)
    }

    /// Prints an answer (as is with --json, else readably); throws on a refusal, naming the field.
    func show(_ status: Int, _ data: Data) throws {
        let text = String(decoding: data, as: UTF8.self)
        let object = try? JSONSerialization.jsonObject(with: data)
        if status >= 400 {
            if json { print(text) }
            let e = (object as? [String: Any])?["error"] as? [String: Any]
            let field = (e?["field"] as? String).map { "\($0): " } ?? ""
            throw CLIError("refused (\(status) \(e?["kind"] as? String ?? "")): \(field)\(e?["message"] as? String ?? text)")
        }
        if json {
            print(text)
        } else if let object {
            print(Self.render(object), terminator: "")
        }
    }

    /// A readable rendering of a JSON answer: one `key: value` per line, nested by indentation.
    static func render(_ v: Any, indent: String = "") -> String {
        switch v {
        case let d as [String: Any]:
            if d.isEmpty { return indent + "ok\n" }
            return d.keys.sorted().map { k in
                let value = d[k]!
                if value is [String: Any] || (value as? [Any])?.contains(where: { $0 is [String: Any] }) == true {
                    return "\(indent)\(k):\n" + render(value, indent: indent + "  ")
                }
                return "\(indent)\(k): \(scalar(value))\n"
            }.joined()
        case let a as [Any]:
            if a.isEmpty { return indent + "(none)\n" }
            return a.map { e in
                let body = render(e, indent: indent + "  ")
                return indent + "- " + body.dropFirst(indent.count + 2)
            }.joined()
        default:
            return indent + scalar(v) + "\n"
        }
    }

    static func scalar(_ v: Any) -> String {
        switch v {
        case is NSNull: "-"
        case let a as [Any]: a.isEmpty ? "(none)" : a.map { scalar($0) }.joined(separator: ", ")
        default: "\(v)"
        }
    }
}

struct Pool: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The free pool of processing nodes, shared by every PAN.",
        subcommands: [List.self, Add.self, Remove.self, Return.self])
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every processor: free, assigned (and to which personality) or fenced.")
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("GET", "/v1/processors") }
    }
    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add processing nodes to the free pool.")
        @Argument(help: "Node numbers.") var nodes: [Int]
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("POST", "/v1/processors", ["nodes": nodes]) }
    }
    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take a free processor off the platform.")
        @Argument var node: Int
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("DELETE", "/v1/processors/\(node)") }
    }
    struct Return: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Return a fenced (repaired) processor to the free pool.")
        @Argument var node: Int
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("POST", "/v1/processors/\(node)/return") }
    }
}

struct PANCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pan",
        abstract: "Processing area networks: create, list, delete, their VLANs and processors.",
        subcommands: [List.self, Create.self, Show.self, Delete.self, AddVLAN.self, RemoveVLAN.self, AddProcessor.self])
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every PAN with its VLANs and personalities.")
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("GET", "/v1/pans") }
    }
    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a PAN.")
        @Argument(help: "1-63 of a-z, 0-9 and '-', starting with a letter.") var name: String
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("POST", "/v1/pans", ["name": name]) }
    }
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One PAN.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("GET", "/v1/pans/\(name.pathEscaped)") }
    }
    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a PAN: its processors return to the pool, its MACs are retired.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("DELETE", "/v1/pans/\(name.pathEscaped)") }
    }
    struct AddVLAN: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add-vlan", abstract: "Give a PAN a VLAN (1...4094, platform-wide).")
        @Argument var pan: String
        @Argument var vlan: Int
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("POST", "/v1/pans/\(pan.pathEscaped)/vlans", ["vlan": vlan]) }
    }
    struct RemoveVLAN: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove-vlan", abstract: "Remove a VLAN no NIC is on.")
        @Argument var pan: String
        @Argument var vlan: Int
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("DELETE", "/v1/pans/\(pan.pathEscaped)/vlans/\(vlan)") }
    }
    struct AddProcessor: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-processor", abstract: "Add a processor from the free pool to a PAN, with a new personality.")
        @Argument var pan: String
        @Option(help: "The personality's name (default <pan>-<node>).") var name: String?
        @Option(help: "A particular free node (default: the lowest free one).") var node: Int?
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("POST", "/v1/pans/\(pan.pathEscaped)/processors", ["name": name, "node": node]) }
    }
}

struct PersonalityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "personality",
        abstract: "Personalities: a processor's MACs, VLANs, IPs, storage map and workload, as one thing.",
        subcommands: [List.self, Show.self, Remove.self, AttachNIC.self, DetachNIC.self, BindIP.self, UnbindIP.self,
                      MapStorage.self, UnmapStorage.self, SetWorkload.self, Migrate.self])
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every personality.")
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("GET", "/v1/personalities") }
    }
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One personality, by name or by the node holding it.")
        @Argument(help: "A personality's name.") var name: String?
        @Option(help: "The node holding it, instead of a name.") var node: Int?
        @OptionGroup var client: ClientOptions
        func validate() throws {
            if (name == nil) == (node == nil) { throw ValidationError("give a personality's name or --node, not both") }
        }
        func run() throws {
            if let node { try client.call("GET", "/v1/processors/\(node)/personality") }
            else { try client.call("GET", "/v1/personalities/\(name!.pathEscaped)") }
        }
    }
    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a personality; its processor returns to the pool.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("DELETE", "/v1/personalities/\(name.pathEscaped)") }
    }
    struct AttachNIC: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "attach-nic", abstract: "Attach a NIC (new MAC) on a VLAN of the PAN.")
        @Argument var name: String
        @Argument var vlan: Int
        @Flag(help: "Let this NIC listen promiscuously.") var promiscuousAllowed = false
        @OptionGroup var client: ClientOptions
        func run() throws {
            try client.call("POST", "/v1/personalities/\(name.pathEscaped)/nics", ["vlan": vlan, "promiscuousAllowed": promiscuousAllowed])
        }
    }
    struct DetachNIC: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "detach-nic", abstract: "Detach the NIC on a VLAN (its MAC is retired).")
        @Argument var name: String
        @Argument var vlan: Int
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("DELETE", "/v1/personalities/\(name.pathEscaped)/nics/\(vlan)") }
    }
    struct BindIP: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "bind-ip", abstract: "Bind an IPv4 address (a.b.c.d/len) to the NIC on a VLAN.")
        @Argument var name: String
        @Argument var vlan: Int
        @Argument var address: String
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("POST", "/v1/personalities/\(name.pathEscaped)/ips", ["vlan": vlan, "address": address]) }
    }
    struct UnbindIP: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "unbind-ip", abstract: "Unbind an address (a.b.c.d).")
        @Argument var name: String
        @Argument var vlan: Int
        @Argument var host: String
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("DELETE", "/v1/personalities/\(name.pathEscaped)/ips/\(vlan)/\(host.pathEscaped)") }
    }
    struct MapStorage: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "map-storage", abstract: "Map a virtual (target, LUN) onto a storage address.")
        @Argument var name: String
        @Argument var target: Int
        @Argument var lun: Int
        @Argument(help: "A path, block device or SAN address.") var storage: String
        @Flag(help: "Read-only (storage can be shared read-only; read-write by one personality).") var readOnly = false
        @OptionGroup var client: ClientOptions
        func run() throws {
            try client.call("POST", "/v1/personalities/\(name.pathEscaped)/storage",
                            ["target": target, "lun": lun, "storage": storage, "access": readOnly ? "read-only" : "read-write"])
        }
    }
    struct UnmapStorage: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "unmap-storage", abstract: "Unmap a (target, LUN).")
        @Argument var name: String
        @Argument var target: Int
        @Argument var lun: Int
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("DELETE", "/v1/personalities/\(name.pathEscaped)/storage/\(target)/\(lun)") }
    }
    struct SetWorkload: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-workload", abstract: "Set the workload command (or --clear it).")
        @Argument var name: String
        @Argument(help: "The command line, started in the processor's network namespace.") var command: String?
        @Flag var clear = false
        @OptionGroup var client: ClientOptions
        func validate() throws {
            if (command == nil) != clear { throw ValidationError("give a command, or --clear") }
        }
        func run() throws { try client.call("PUT", "/v1/personalities/\(name.pathEscaped)/workload", ["command": command]) }
    }
    struct Migrate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a personality to another processor by hand (the old one returns to the pool).")
        @Argument var name: String
        @Option(help: "A particular free node (default: the lowest free one).") var to: Int?
        @OptionGroup var client: ClientOptions
        func run() throws { try client.call("POST", "/v1/personalities/\(name.pathEscaped)/migrate", ["to": to]) }
    }
}

struct Events: ParsableCommand {
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

    func run() throws {
        guard follow else { return try client.call("GET", "/v1/events?since=\(since)&limit=\(limit)") }
        var last = since
        while true {
            let (status, data) = try client.request("GET", "/v1/events?since=\(last)&limit=\(limit)")
            guard status < 400 else { return try client.show(status, data) }
            guard let events = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] else {
                throw CLIError("the API's answer is not a list of events: \(String(decoding: data.prefix(200), as: UTF8.self))")
            }
            for e in events {
                if client.json {
                    let line = (try? JSONSerialization.data(withJSONObject: e, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) }
                    print(line ?? "{}")
                } else {
                    let time = (e["timeMs"] as? Int).map { Date(timeIntervalSince1970: Double($0) / 1000) } ?? Date()
                    let detail = (e["detail"] as? String).map { $0.isEmpty ? "" : "  \($0)" } ?? ""
                    print("\(e["id"] ?? "?")  \(ISO8601DateFormatter().string(from: time))  \(e["kind"] ?? "")  \(e["subject"] ?? "")\(detail)")
                }
                if let id = e["id"] as? Int { last = max(last, id) }
            }
            fflush(nil)
            if events.count < limit { usleep(useconds_t(interval * 1000)) }  // the poll interval of --follow
        }
    }
}

extension String {
    var pathEscaped: String { addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? self }
}
