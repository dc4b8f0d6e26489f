import Foundation
import PlexusCore
import PlexusNamespaces
import PlexusTestSupport
import Testing

/// The block of docs/operations.md between the walkthrough markers, as written there.
private func walkthrough() throws -> String {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let doc = try String(contentsOf: root.appendingPathComponent("docs/operations.md"), encoding: .utf8)
    guard let begin = doc.range(of: "<!-- walkthrough:begin -->\n```sh\n"),
          let end = doc.range(of: "```\n<!-- walkthrough:end -->", range: begin.upperBound..<doc.endIndex) else {
        throw PlexusError(.configuration, "docs/operations.md has no walkthrough block")
    }
    return String(doc[begin.upperBound..<end.lowerBound])
}

@Suite("The operations walkthrough runs as written", .serialized,
       .requiresIOUring, .requiresRoot, .requiresTool("ip"), .requiresTUN, .requiresTool("ping"), .requiresTool("curl"),
       .requiresTool("python3"))
struct WalkthroughTests {
    @Test("docs/operations.md: two fabrics as bridges, five namespaces, control and processing nodes as processes, ping and curl across a virtual LAN, kill -9 of a node and its spare serving")
    func walkthroughAsWritten() throws {
        let exe = try #require(plexusExecutable, "the plexus executable was not built next to the tests (run swift build first)")
        let script = try walkthrough()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-walkthrough-\(getpid()).sh").path
        try script.write(toFile: file, atomically: true, encoding: .utf8)
        defer {
            try? FileManager.default.removeItem(atPath: file)
            // Whatever a failed run left: the walkthrough's own names only.
            for n in 1...5 { _ = NamespaceFabric.execute(["ip", "netns", "del", "pxw\(n)"]) }
            for b in ["pxwa", "pxwb"] { _ = NamespaceFabric.execute(["ip", "link", "del", b]) }
            _ = NamespaceFabric.execute(["rm", "-rf", "/tmp/plexus-walkthrough"])
        }
        let bin = URL(fileURLWithPath: exe).deletingLastPathComponent().path
        let path = bin + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin")
        let r = NamespaceFabric.execute(["env", "PATH=\(path)", "timeout", "-s", "KILL", "150", "bash", file])
        #expect(r.status == 0, "the walkthrough failed (exit \(r.status)):\n\(r.output.suffix(3000))")
        let pages = r.output.components(separatedBy: "served by the web personality").count - 1
        #expect(pages == 2, "node 3 fetched the page from node 4, then from its spare:\n\(r.output.suffix(2000))")
        #expect(r.output.contains("3 received") && r.output.contains("walkthrough done"), "three pings answered, and the end reached:\n\(r.output.suffix(2000))")
        #expect(r.output.contains("takes over node 4's personality"), "node 5's console says it took over:\n\(r.output.suffix(2000))")
        #expect(NamespaceFabric.execute(["ip", "netns", "list"]).output.split(separator: "\n").allSatisfy { !$0.hasPrefix("pxw") },
                "the walkthrough removed its namespaces")
    }
}
