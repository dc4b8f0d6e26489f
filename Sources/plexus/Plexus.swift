import ArgumentParser
import Logging
import PlexusCore
import PlexusNamespaces
import PlexusLAN

@main
struct Plexus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plexus",
        abstract: "Processing area networks over io_uring: virtual interfaces on two fabrics, RDMA WRITE, and the tools to measure them.",
        discussion: """
            Plexus turns a pool of Linux hosts, or processes on one host, into processing area \
            networks. This build holds the fabric core: every node has a port on fabric A and a \
            port on fabric B (UDP on its own address), VIA-style virtual interfaces demultiplexed \
            in O(1), emulated RDMA WRITE into registered memory guarded by keys, and 16896-byte \
            unchecksummed frames in registered memory; and the RCLAN layer above it: redundant \
            VIs (a VI on each fabric) delivering messages exactly once and in order, with \
            millisecond failover between the fabrics.

            Start with `plexus demo`, which runs two nodes on loopback and shows what they did; \
            `plexus rvi --fault a:drop=5 --kill-leg b` shows a redundant VI at work under faults.
            `plexus bench --help` lists the measurements and the baselines each is compared to.

            Every command stops within a second on SIGINT (Ctrl-C), SIGTERM or SIGHUP, and \
            removes the network namespaces, bridges, veths and child processes it created \
            (exit status 128 + the signal; `plexus control` and `plexus node` stop cleanly, print \
            their counters and exit 0). What a SIGKILLed run leaves behind, `plexus cleanup` \
            removes (and so does the next run that creates anything).
            """,
        version: PlexusVersion.description,
        subcommands: [Demo.self, ControlCommand.self, NodeCommand.self, API.self, Pool.self, PANCommand.self, PersonalityCommand.self, StorageCommand.self,
                      Events.self, ConsoleCommand.self, AgentCommand.self, RVIShow.self, Info.self, Bench.self, BenchPeer.self, Cleanup.self])

    /// Every command: the stop signals are waited for on a thread of their own (ShutdownSignals)
    /// before anything else starts; then the command parsed from the arguments runs, awaited if
    /// it is asynchronous (the API's clients, `api serve`, `agent`), else on this thread (the
    /// long-running node commands).
    static func main() async {
        ShutdownSignals.install()
        // Log lines go to standard error with the time, the level, the label and metadata; each
        // logger's own level decides what is written (quiet unless a command asks, e.g.
        // `--log-level` of plexus control and plexus node).
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .trace
            return handler
        }
        do {
            var command = try parseAsRoot(nil)
            if var asynchronous = command as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
