import PlexusCore
import PlexusRCLAN

// Console routing ("Management logic": each processing node's console is routed to the control
// node and kept there). A node sends its workload's output and its own log as console pieces
// over its management RVI to both control nodes; each control node hands them to its console
// sink (the node module's ConsoleArchive keeps them, one file per node, for audit).

/// Where a control node's virtual LAN server puts the consoles it receives.
public protocol ConsoleSink: AnyObject, Sendable {
    /// Keeps a piece of node `node`'s console, once: returns false when the piece was kept
    /// already (the same incarnation and sequence, offered again) or could not be written.
    func append(node: NodeNumber, incarnation: UInt64, sequence: UInt32, _ text: [UInt8]) -> Bool
    /// Adds a line of the control node's own to node `node`'s console (a failover, a fencing).
    func note(node: NodeNumber, _ line: String)
}

extension VirtualEthernet {
    /// The most console bytes a node holds while its control nodes cannot take them.
    public static let consoleBacklog = 1 << 20

    /// Adds bytes to this node's console (its workload's output): they go to both control
    /// nodes on the next turn, in pieces of at most ``ControlMessage/maximumConsolePiece``.
    /// The node's own log (``events``) goes to the console by itself.
    public func console(_ bytes: [UInt8]) {
        guard pendingConsole.count + bytes.count <= Self.consoleBacklog else {
            consoleDropped += UInt64(bytes.count)
            return
        }
        pendingConsole += bytes
    }

    /// Reports that this node's workload process ended by itself (exit status, or 128 +
    /// signal): the control nodes resume the personality on a virtual node of a failover
    /// server (seed 002). Sent on the next turn, after the console written before it.
    public func reportProcessFailure(status: Int32) {
        processExit = status
    }

    func sendConsole(_ layer: RCLAN) {
        if eventsOnConsole < events.total {
            let (lines, missed) = events.since(eventsOnConsole)
            if missed > 0 { pendingConsole += Array("plexus node \(node): (\(missed) log lines dropped)\n".utf8) }
            for e in lines { pendingConsole += Array("plexus node \(node): \(e)\n".utf8) }
            eventsOnConsole = events.total
        }
        var start = 0
        while start < pendingConsole.count {
            let end = min(pendingConsole.count, start + ControlMessage.maximumConsolePiece)
            consoleSequence &+= 1
            let m = ControlMessage.console(node: node, incarnation: consoleIncarnation, sequence: consoleSequence,
                                           text: Array(pendingConsole[start..<end])).encoded()
            var taken = false
            for s in servers where (try? layer.send(m, on: s)) != nil { taken = true }
            if !taken { consoleDropped += UInt64(end - start) }
            start = end
        }
        pendingConsole.removeAll(keepingCapacity: true)
        if let status = processExit {
            processExit = nil
            let m = ControlMessage.processFailed(node: node, status: status).encoded()
            for s in servers { _ = try? layer.send(m, on: s) }
        }
    }
}
