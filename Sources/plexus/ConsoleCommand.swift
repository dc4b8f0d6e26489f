import ArgumentParser
import Foundation
import PlexusAPI
import PlexusCore

// `plexus console NODE [--follow]`: a processing node's console as its control node keeps it
// ("Management logic": console routing). The node sends its workload's output and its own log
// over its management RVI; the control node appends them to <state>/console/node<N>.log (with
// its own lines about the node: failures, failovers); this command reads that through the API.

struct ConsoleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Show a processing node's console: its workload's output and its log, as the control node keeps them.",
        discussion: """
            Each processing node streams its workload's output (stdout and stderr) and its own \
            log to both control nodes over its management RVI; each control node keeps them for \
            audit in <state>/console/node<N>.log, with its own lines about the node (its \
            failure, the failover that moved its personality, with the timeline). This command \
            prints that log from the start (or --from a byte offset) and, with --follow, keeps \
            printing what arrives until interrupted. With --json it prints each answer of the \
            API (GET /v1/processors/{node}/console) as is.

            Example: plexus console 4 --follow
            """)

    @Argument(help: "The processing node's number.") var node: NodeNumber
    @Flag(help: "Keep printing what arrives (until Ctrl-C).") var follow = false
    @Option(help: "Start at this byte offset of the log.") var from: Int = 0
    @Option(help: "How often to ask for more with --follow, in milliseconds.") var interval: Int = 250
    @OptionGroup var client: ClientOptions

    func validate() throws {
        guard (1...65535).contains(node.rawValue) else { throw ValidationError("NODE: \(node) is not a node number (1...65535)") }
        guard from >= 0 else { throw ValidationError("--from: a byte offset is 0 or more") }
        guard (10...60000).contains(interval) else { throw ValidationError("--interval: 10...60000 ms") }
    }

    func run() async throws {
        var offset = from
        while true {
            let piece = try await client.answer { try await $0.console(node: node, from: offset) }
            if client.json {
                print(String(decoding: try APIBody.encode(piece), as: UTF8.self))
            } else {
                print(piece.text, terminator: "")
            }
            fflush(nil)
            if piece.next == offset {
                guard follow else { return }
                try await Task.sleep(for: .milliseconds(interval))  // the poll interval of --follow
            }
            offset = piece.next
        }
    }
}
