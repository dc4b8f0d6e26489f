import ArgumentParser
import Foundation
import PlexusNamespaces
import PlexusLAN

/// `plexus cleanup`: removes what killed runs left behind.
struct Cleanup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cleanup",
        abstract: "Remove the namespaces, links and processes that killed plexus runs left behind.",
        discussion: """
            A plexus command that creates network namespaces, bridges, veths or child processes \
            (the vlan-* and failover benches, rvi-failover --link, `plexus demo` as root, the \
            workloads of `plexus node`) lists each one, before creating it, in a state file of \
            its own: \(Leftovers.directory)/<pid>-<start time>.json ($PLEXUS_RUN_DIR overrides \
            the directory). Its names carry its pid too: namespaces px<pid><letter>n<N>, bridges \
            px<pid><letter>br<a|b>, veths px<pid><letter><N><a|b>h. On SIGINT, SIGTERM or SIGHUP \
            the command removes them itself; a run killed with SIGKILL (or by a time-out that \
            sends it) cannot, and its state file stays.

            This command reads every state file whose owner is no longer running (no process \
            with its pid and start time: a reused pid is not mistaken for it) and removes what \
            the file lists and still exists: it kills the processes still in each child's process \
            group and those still running in its namespaces, deletes its links and its \
            namespaces, then the file, and prints each thing it removed. It never touches what a \
            running process owns, nor anything no state file lists (what plexus did not create). \
            Every plexus run that creates something does the same first, so leftovers do not \
            pile up. Needs root to remove namespaces and links.

            Example: plexus cleanup --dry-run
                     plexus cleanup
            """)

    @Flag(help: "Only print what would be removed.")
    var dryRun = false

    func run() throws {
        let removals = Leftovers.removeDeadOwners(dryRun: dryRun)
        var count = 0
        for r in removals where !r.removed.isEmpty {
            print("\(dryRun ? "would remove" : "removed") what pid \(r.owner) (\(r.command)) left behind:")
            for thing in r.removed { print("  \(thing)") }
            count += r.removed.count
        }
        let stale = removals.filter(\.removed.isEmpty).count
        if count == 0 {
            print("nothing to remove" + (stale > 0 ? " (\(stale) state file(s) of dead runs listed nothing that still exists\(dryRun ? "" : "; removed")" + ")" : ""))
        }
    }
}
