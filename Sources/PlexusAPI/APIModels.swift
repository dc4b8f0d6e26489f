import Foundation
import PlexusCore
import PlexusStorage
import PlexusPlatform

// The management API's JSON, in one place: the request bodies every route takes, the answers
// that are not platform records (Processor, PAN, Personality, PlatformStore.Migration and
// PlatformEvent come from PlexusPlatform), and the refusal. The server decodes and encodes
// these, and ManagementClient (the agent's and the CLI's) encodes and decodes the same types,
// so both sides agree on every field by construction. docs/openapi.yaml describes them.

// MARK: - Request bodies

/// A request's JSON body. Its `CodingKeys` are the fields it takes: ``APIBody/decode(_:from:)``
/// refuses any other key, naming it, before anything is decoded.
public protocol APIRequestBody: Codable, Sendable {
    associatedtype CodingKeys: CodingKey & CaseIterable
}

extension APIRequestBody {
    /// The fields the body takes, sorted.
    public static var fields: [String] { CodingKeys.allCases.map(\.stringValue).sorted() }
}

/// `POST /v1/processors`: processing nodes into the free pool.
public struct AddProcessorsBody: APIRequestBody, Hashable {
    public var nodes: [NodeNumber]
    public init(nodes: [NodeNumber]) { self.nodes = nodes }
    public enum CodingKeys: String, CodingKey, CaseIterable { case nodes }
}

/// `POST /v1/pans`: a new PAN.
public struct CreatePANBody: APIRequestBody, Hashable {
    public var name: String
    public init(name: String) { self.name = name }
    public enum CodingKeys: String, CodingKey, CaseIterable { case name }
}

/// `POST /v1/pans/{pan}/vlans`: a VLAN for the PAN.
public struct AddVLANBody: APIRequestBody, Hashable {
    public var vlan: Int
    public init(vlan: Int) { self.vlan = vlan }
    public enum CodingKeys: String, CodingKey, CaseIterable { case vlan }
}

/// `POST /v1/pans/{pan}/processors`: a processor from the pool (`node`, else the lowest free
/// one) with a new personality (`name`, else `<pan>-<node>`).
public struct AddPANProcessorBody: APIRequestBody, Hashable {
    public var name: String?
    public var node: NodeNumber?
    public init(name: String? = nil, node: NodeNumber? = nil) { self.name = name; self.node = node }
    public enum CodingKeys: String, CodingKey, CaseIterable { case name, node }
}

/// `POST /v1/personalities/{name}/nics`: a NIC (a new MAC) on a VLAN of the PAN.
public struct AttachNICBody: APIRequestBody, Hashable {
    public var vlan: Int
    public var promiscuousAllowed: Bool?
    public init(vlan: Int, promiscuousAllowed: Bool? = nil) { self.vlan = vlan; self.promiscuousAllowed = promiscuousAllowed }
    public enum CodingKeys: String, CodingKey, CaseIterable { case vlan, promiscuousAllowed }
}

/// `POST /v1/personalities/{name}/ips`: an address (a.b.c.d/len) on the NIC of a VLAN.
public struct BindIPBody: APIRequestBody, Hashable {
    public var vlan: Int
    public var address: String
    public init(vlan: Int, address: String) { self.vlan = vlan; self.address = address }
    public enum CodingKeys: String, CodingKey, CaseIterable { case vlan, address }
}

/// `POST /v1/personalities/{name}/storage`: a virtual (target, LUN) onto a storage address.
public struct MapStorageBody: APIRequestBody, Hashable {
    public var target: Int
    public var lun: Int
    public var storage: String
    /// Read-write when absent.
    public var access: StorageAccess?

    public init(target: Int, lun: Int, storage: String, access: StorageAccess? = nil) {
        self.target = target
        self.lun = lun
        self.storage = storage
        self.access = access
    }

    public enum CodingKeys: String, CodingKey, CaseIterable { case target, lun, storage, access }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        target = try c.decode(Int.self, forKey: .target)
        lun = try c.decode(Int.self, forKey: .lun)
        storage = try c.decode(String.self, forKey: .storage)
        access = try c.decodeIfPresent(String.self, forKey: .access).map { a throws(PlatformError) in
            guard let v = StorageAccess(rawValue: a) else {
                throw PlatformError(.invalid, field: "access", "'\(a)' is not read-write or read-only")
            }
            return v
        }
    }
}

/// `PUT /v1/personalities/{name}/workload`: the workload command, or none (absent or null).
public struct SetWorkloadBody: APIRequestBody, Hashable {
    public var command: String?
    public init(command: String?) { self.command = command }
    public enum CodingKeys: String, CodingKey, CaseIterable { case command }
}

/// `POST /v1/personalities/{name}/migrate`: to a particular free node, else the lowest free one.
public struct MigrateBody: APIRequestBody, Hashable {
    public var to: NodeNumber?
    public init(to: NodeNumber? = nil) { self.to = to }
    public enum CodingKeys: String, CodingKey, CaseIterable { case to }
}

// MARK: - Answers

/// An answer with nothing to say (a deletion): `{}`.
public struct EmptyAnswer: Codable, Sendable, Hashable {
    public init() {}
}

/// `GET /v1/health`.
public struct HealthAnswer: Codable, Sendable, Hashable {
    public var status: String
    public init(status: String) { self.status = status }
}

/// `GET /v1/processors/{node}/console`: bytes `from..<next` of a node's console log at this
/// control node.
public struct ConsoleText: Codable, Sendable, Hashable {
    public var node: NodeNumber
    public var from: Int
    /// Where the next read starts (`from` when there was nothing new).
    public var next: Int
    /// The bytes, as UTF-8 (an invalid sequence becomes U+FFFD).
    public var text: String

    public init(node: NodeNumber, from: Int, next: Int, text: String) {
        self.node = node
        self.from = from
        self.next = next
        self.text = text
    }
}

/// A refusal: `{"error": {"kind", "field", "message"}}`.
public struct RefusalAnswer: Codable, Sendable, Hashable {
    public struct Detail: Codable, Sendable, Hashable {
        public var kind: String
        public var field: String?
        public var message: String
    }
    public var error: Detail

    public init(kind: String, field: String?, message: String) {
        error = Detail(kind: kind, field: field, message: message)
    }
}

// MARK: - Reading and writing

/// The one JSON encoding and the one body check of the API, for the server and its clients.
public enum APIBody {
    /// Keys sorted: the server's answers, and what a client sends, are byte for byte stable.
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return try e.encode(value)
    }

    /// Reads a request body as `T`. An empty body is `{}`. Every refusal names its field: `body`
    /// when it is not a JSON object, the first unknown key (in sorted order) when there is one,
    /// else the field that is missing or of the wrong type; nothing is decoded before the keys
    /// are checked.
    public static func decode<T: APIRequestBody>(_ type: T.Type, from data: Data) throws(PlatformError) -> T {
        let data = data.isEmpty ? Data("{}".utf8) : data
        guard let object = try? JSONDecoder().decode([String: JSONValue].self, from: data) else {
            throw PlatformError(.invalid, field: "body", "the body is not a JSON object")
        }
        let fields = Set(T.fields)
        if let unknown = object.keys.sorted().first(where: { !fields.contains($0) }) {
            throw PlatformError(.invalid, field: unknown, "unknown field (this request takes \(T.fields.joined(separator: ", ")))")
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let e as PlatformError {
            throw e
        } catch let e as DecodingError {
            throw refusal(e, object)
        } catch {
            throw PlatformError(.invalid, field: "body", "\(error)")
        }
    }

    /// A decoding error as a refusal naming the (top-level) field.
    static func refusal(_ e: DecodingError, _ object: [String: JSONValue]) -> PlatformError {
        func field(_ path: [any CodingKey]) -> String { path.first?.stringValue ?? "body" }
        switch e {
        case .keyNotFound(let key, let context):
            return PlatformError(.invalid, field: context.codingPath.first?.stringValue ?? key.stringValue, "missing")
        case .valueNotFound(_, let context):
            return PlatformError(.invalid, field: field(context.codingPath), "missing")
        case .typeMismatch(let type, let context):
            return PlatformError(.invalid, field: field(context.codingPath), expectation(type, nested: context.codingPath.count > 1))
        case .dataCorrupted(let context) where (context.underlyingError as? NodeNumber.OutOfRange) != nil:
            // A negative node number, or one beyond u32: refused as the store refuses one
            // beyond its range.
            let value = (context.underlyingError as! NodeNumber.OutOfRange).value
            return PlatformError(.invalid, field: field(context.codingPath), PlatformLimits.notANodeNumber(value))
        case .dataCorrupted(let context):
            // A number that is not an integer (1.5), where every number a body takes is one. The
            // decoder may lose the path of that error: the field is then the first (sorted) whose
            // value holds such a number.
            func fraction(_ v: JSONValue) -> Bool {
                switch v {
                case .double: true
                case .array(let a): a.contains(where: fraction)
                default: false
                }
            }
            let name = context.codingPath.first?.stringValue ?? object.keys.sorted().first { fraction(object[$0]!) }
            guard let name else { return PlatformError(.invalid, field: "body", context.debugDescription) }
            return PlatformError(.invalid, field: name, object[name]?.elements != nil ? "must be an array of integers" : "must be an integer")
        @unknown default:
            return PlatformError(.invalid, field: "body", "\(e)")
        }
    }

    static func expectation(_ type: Any.Type, nested: Bool) -> String {
        let one: String = switch type {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is Int.Type: "an integer"
        default: "an array of integers"
        }
        if nested { return "must be an array of " + (type is String.Type ? "strings" : type is Bool.Type ? "booleans" : "integers") }
        return "must be " + one
    }
}

/// A JSON value, as JSONDecoder reads it strictly (a number is never a boolean, nor the reverse):
/// for reading a document field by field (the agent's rules) or showing any answer readably.
public enum JSONValue: Decodable, Sendable, Hashable {
    case null, bool(Bool), int(Int), double(Double), string(String), array([JSONValue]), object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let v = try? c.decode(Bool.self) { self = .bool(v) }
        else if let v = try? c.decode(Int.self) { self = .int(v) }
        else if let v = try? c.decode(Double.self) { self = .double(v) }
        else if let v = try? c.decode(String.self) { self = .string(v) }
        else if let v = try? c.decode([JSONValue].self) { self = .array(v) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public var isObject: Bool { if case .object = self { true } else { false } }
    public var elements: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
}
