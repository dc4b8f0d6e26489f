import Foundation
import PlexusCore
import Testing

@Suite("Node numbers")
struct NodeNumberTests {
    @Test("JSON carries a node number as a plain integer, both ways", arguments: [0, 1, 4095, UInt32.max])
    func json(raw: UInt32) throws {
        let n = NodeNumber(raw)
        let data = try JSONEncoder().encode([n])
        #expect(String(decoding: data, as: UTF8.self) == "[\(raw)]")
        #expect(try JSONDecoder().decode([NodeNumber].self, from: data) == [n])
    }

    @Test("a JSON object keyed and valued by node numbers reads as it did with integers")
    func inObjects() throws {
        struct Row: Codable, Equatable { var node: NodeNumber?; var spares: [NodeNumber] }
        let data = Data(#"{"node":7,"spares":[3,4]}"#.utf8)
        let row = try JSONDecoder().decode(Row.self, from: data)
        #expect(row == Row(node: 7, spares: [3, 4]))
        let e = JSONEncoder()
        e.outputFormatting = .sortedKeys
        #expect(String(decoding: try e.encode(row), as: UTF8.self) == #"{"node":7,"spares":[3,4]}"#)
        #expect(try JSONDecoder().decode(Row.self, from: Data(#"{"node":null,"spares":[]}"#.utf8)).node == nil)
    }

    @Test("decoding refuses what is no node number, naming the value", arguments: ["-1", "4294967296", "1.5", "\"3\""])
    func refused(json: String) {
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([NodeNumber].self, from: Data("[\(json)]".utf8)) }
    }

    @Test("a negative number's refusal says why")
    func refusalMessage() {
        do {
            _ = try JSONDecoder().decode([NodeNumber].self, from: Data("[-1]".utf8))
            Issue.record("decoded -1")
        } catch DecodingError.dataCorrupted(let context) {
            #expect(context.debugDescription == "-1 is not a node number (0...4294967295)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test("prints and parses the bare number")
    func text() {
        #expect(NodeNumber(42).description == "42")
        #expect("node \(NodeNumber(42))" == "node 42")
        #expect(NodeNumber("4095") == 4095)
        for bad in ["", "-1", "x", " 3", "4294967296"] { #expect(NodeNumber(bad) == nil) }
    }

    @Test("orders, converts and stays in u32")
    func values() {
        #expect([NodeNumber(5), 3, 4].sorted() == [3, 4, 5])
        #expect(NodeNumber(exactly: -1) == nil)
        #expect(NodeNumber(exactly: Int(UInt32.max) + 1) == nil)
        #expect(NodeNumber(exactly: 12)?.rawValue == 12)
        #expect(Int(NodeNumber(4095)) == 4095)
    }
}
