import ArgumentParser
import PlexusCore

/// A node number on the command line: a decimal number (`plexus console 4`, `--node 5`), as
/// ``NodeNumber/init(_:)-(String)`` parses it; anything else is refused by the parser, naming
/// the argument.
extension NodeNumber: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}
