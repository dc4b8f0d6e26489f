import ArgumentParser
import Foundation

// `plexus console NODE [--follow]`: a processing node's console as its control node keeps it
// ("Management logic": console routing). The node sends its workload's output and its own log
// over its management RVI; the control node appends them to <state>/console/node<N>.log (with
// its own lines about the node: failures, failovers); this command reads that through the API.

struct ConsoleCommand: ParsableCommand {
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

    @Argument(help: "The processing node's number.") var node: Int
    @Flag(help: "Keep printing what arrives (until Ctrl-C).") var follow = false
    @Option(help: "Start at this byte offset of the log.") var from: Int = 0
    @Option(help: "How often to ask for more with --follow, in milliseconds.") var interval: Int = 250
    @OptionGroup var client: ClientOptions

    func validate() throws {
        guard (1...65535).contains(node) else { throw ValidationError("NODE: \(node) is not a node number (1...65535)") }
        guard from >= 0 else { throw ValidationError("--from: a byte offset is 0 or more") }
        guard (10...60000).contains(interval) else { throw ValidationError("--interval: 10...60000 ms") }
    }

    func run() throws {
        var offset = from
        while true {
            let (status, data) = try client.request("GET", "/v1/processors/\(node)/console?from=\(offset)")
            guard status < 400 else { return try client.show(status, data) }
            guard let answer = try? JSONDecoder().decode(Answer.self, from: data) else {
                throw CLIError("the API's answer is not a console piece: \(String(decoding: data.prefix(200), as: UTF8.self))")
            }
            if client.json {
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(answer.text, terminator: "")
            }
            fflush(nil)
            if answer.next == offset {
                guard follow else { return }
                usleep(useconds_t(interval * 1000))  // the poll interval of --follow
            }
            offset = answer.next
        }
    }

    struct Answer: Decodable {
        var node: Int
        var from: Int
        var next: Int
        var text: String
    }
}
