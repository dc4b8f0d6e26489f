import Foundation
import PlexusNamespaces
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import PlexusLAN
import PlexusPlatform

// The agent hook ("Management logic" of seed 004: the platform's structures "may be accessed by
// an administrator ... or with an agent administrator. An agent for example may be used to
// reconfigure a PAN in response to certain events, such as time of day or year, or in response
// to certain loads on the system").
//
// The agent is a client of the management API like any administrator: it holds the bearer
// token and sends the same requests (`GET /v1/pans/{pan}`, `POST /v1/pans/{pan}/processors`,
// `POST /v1/personalities/{name}/nics`, `PUT /v1/personalities/{name}/workload`,
// `DELETE /v1/personalities/{name}`). It never opens the store. Its rules (one per PAN) come
// from a JSON file; `docs/operations.md` ("Reconfiguring by program: the agent hook") describes
// the format, and `AgentRules.parse` is its reference.

// MARK: - Rules

/// The agent's rules: one per PAN it manages.
public struct AgentRules: Sendable, Hashable {
    public var pans: [PANRule]

    public init(pans: [PANRule]) { self.pans = pans }

    /// Reads a rules file; a bad one is refused naming the field (`pans[0].schedule[1].from`).
    public static func load(file: String) throws(AgentRulesError) -> AgentRules {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw AgentRulesError(field: "rules", "cannot read \(file)")
        }
        return try parse(data)
    }

    /// Parses the JSON text of a rules file.
    public static func parse(_ data: Data) throws(AgentRulesError) -> AgentRules {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: data) else {
            throw AgentRulesError(field: "rules", "not JSON")
        }
        do {
            let top = try RulesObject(value, path: "", allowed: ["pans"])
            let list = try top.array("pans")
            guard !list.isEmpty else { throw AgentRulesError(field: "pans", "name at least one PAN") }
            var pans: [PANRule] = []
            for (i, v) in list.enumerated() {
                let rule = try PANRule(parsing: v, path: "pans[\(i)]")
                if pans.contains(where: { $0.pan == rule.pan }) {
                    throw AgentRulesError(field: "pans[\(i)].pan", "PAN \(rule.pan) has a rule already")
                }
                pans.append(rule)
            }
            return AgentRules(pans: pans)
        } catch let e as AgentRulesError {
            throw e
        } catch {
            throw AgentRulesError(field: "rules", "\(error)")
        }
    }
}

/// A refused rules file: the field at fault (a path such as `pans[0].load.high`) and why.
public struct AgentRulesError: Error, Sendable, Hashable, CustomStringConvertible {
    public var field: String
    public var message: String
    public init(field: String, _ message: String) {
        self.field = field
        self.message = message
    }
    public var description: String { "\(field): \(message)" }
}

/// How many processors one PAN should have, and what a new one gets.
public struct PANRule: Sendable, Hashable {
    /// The PAN's name.
    public var pan: String
    /// Bounds on the PAN's processor count (every personality of the PAN counts, the agent's and
    /// the administrator's).
    public var min: Int
    public var max: Int
    /// Time-of-day windows; the first that contains the local time sets the baseline.
    public var schedule: [ScheduleWindow]
    /// Adjusts the count from the baseline by the measured load.
    public var load: LoadRule?
    /// What the agent gives every processor it adds.
    public var template: ProcessorTemplate

    public init(pan: String, min: Int, max: Int, schedule: [ScheduleWindow] = [], load: LoadRule? = nil,
                template: ProcessorTemplate = ProcessorTemplate()) {
        self.pan = pan
        self.min = min
        self.max = max
        self.schedule = schedule
        self.load = load
        self.template = template
    }

    /// The schedule's baseline at `time`: the processors of the first window containing it, else
    /// `min`.
    public func baseline(at time: TimeOfDay) -> (processors: Int, window: ScheduleWindow?) {
        if let w = schedule.first(where: { $0.contains(time) }) { return (w.processors, w) }
        return (min, nil)
    }

    /// The prefix of the personalities the agent creates in this PAN: `<pan>-agent-`.
    public var agentPrefix: String { "\(pan)-agent-" }

    /// The number `n` of an agent-made personality `<pan>-agent-<n>`, or nil if `name` is not one.
    public func agentIndex(_ name: String) -> Int? {
        guard name.hasPrefix(agentPrefix) else { return nil }
        let rest = name.dropFirst(agentPrefix.count)
        guard let n = Int(rest), n > 0, String(n) == rest else { return nil }
        return n
    }

    init(parsing value: JSONValue, path: String) throws {
        let o = try RulesObject(value, path: path, allowed: ["pan", "min", "max", "schedule", "load", "template"])
        pan = try o.string("pan")
        let nameOK = !pan.isEmpty && pan.first!.isLetter
            && pan.allSatisfy { ($0.isASCII && (($0.isLetter && $0.isLowercase) || $0.isNumber)) || $0 == "-" }
        guard nameOK else {
            throw AgentRulesError(field: o.field("pan"), "'\(pan)' is not a PAN name (a-z, 0-9 and '-', starting with a letter)")
        }
        // "<pan>-agent-<n>" must stay a valid personality name (at most 63 characters).
        guard pan.count <= 52 else {
            throw AgentRulesError(field: o.field("pan"), "at most 52 characters, so that <pan>-agent-<n> is a valid personality name")
        }
        min = try o.int("min")
        max = try o.int("max")
        guard min >= 0 else { throw AgentRulesError(field: o.field("min"), "\(min) is negative") }
        guard max >= Swift.max(min, 1) else {
            throw AgentRulesError(field: o.field("max"), "\(max) is below min (\(min)) or below 1")
        }
        guard max <= 65535 else { throw AgentRulesError(field: o.field("max"), "\(max) is more than a platform has (65535)") }
        schedule = []
        for (i, w) in try o.optionalArray("schedule").enumerated() {
            schedule.append(try ScheduleWindow(parsing: w, path: o.field("schedule") + "[\(i)]", min: min, max: max))
        }
        load = try o.optionalValue("load").map { v in try LoadRule(parsing: v, path: o.field("load")) }
        template = try o.optionalValue("template").map { v in try ProcessorTemplate(parsing: v, path: o.field("template")) }
            ?? ProcessorTemplate()
    }
}

/// A time of day, to the minute: 00:00 to 23:59, and 24:00 as the end of a window.
public struct TimeOfDay: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Minutes since midnight (0...1440).
    public var minutes: Int

    public init(hour: Int, minute: Int) { minutes = hour * 60 + minute }

    /// `HH:MM` (or `H:MM`).
    public init?(_ s: String) {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...2).contains(parts[0].count), parts[1].count == 2,
              parts.allSatisfy({ $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              let h = Int(parts[0]), let m = Int(parts[1]), m < 60, h < 24 || (h == 24 && m == 0)
        else { return nil }
        minutes = h * 60 + m
    }

    /// The local time of `date` in `timeZone`, to the minute.
    public init(_ date: Date, in timeZone: TimeZone) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let c = calendar.dateComponents([.hour, .minute], from: date)
        minutes = (c.hour ?? 0) * 60 + (c.minute ?? 0)
    }

    public var description: String { String(format: "%02d:%02d", minutes / 60, minutes % 60) }
    public static func < (a: TimeOfDay, b: TimeOfDay) -> Bool { a.minutes < b.minutes }
}

/// A window of the day with its processor count: from `from` (included) to `to` (excluded),
/// crossing midnight when `to` is earlier than `from`.
public struct ScheduleWindow: Sendable, Hashable, CustomStringConvertible {
    public var from: TimeOfDay
    public var to: TimeOfDay
    public var processors: Int

    public init(from: TimeOfDay, to: TimeOfDay, processors: Int) {
        self.from = from
        self.to = to
        self.processors = processors
    }

    public func contains(_ t: TimeOfDay) -> Bool {
        from < to ? (from <= t && t < to) : (t >= from || t < to)
    }

    public var description: String { "\(from)-\(to)" }

    init(parsing value: JSONValue, path: String, min: Int, max: Int) throws {
        let o = try RulesObject(value, path: path, allowed: ["from", "to", "processors"])
        let f = try o.string("from")
        guard let from = TimeOfDay(f), from.minutes < 1440 else {
            throw AgentRulesError(field: o.field("from"), "'\(f)' is not a time of day (HH:MM, 00:00 to 23:59)")
        }
        let t = try o.string("to")
        guard let to = TimeOfDay(t) else {
            throw AgentRulesError(field: o.field("to"), "'\(t)' is not a time of day (HH:MM, 00:00 to 24:00)")
        }
        guard from.minutes != to.minutes else {
            throw AgentRulesError(field: o.field("to"), "the window is empty (from and to are the same time)")
        }
        processors = try o.int("processors")
        guard (min...max).contains(processors) else {
            throw AgentRulesError(field: o.field("processors"), "\(processors) is outside min...max (\(min)...\(max))")
        }
        self.from = from
        self.to = to
    }
}

/// Where the load comes from: the first number in a file (`/proc/loadavg`) or in a command's
/// standard output.
public enum LoadSource: Sendable, Hashable, CustomStringConvertible {
    case file(String)
    /// Run with `/bin/sh -c`; it must exit 0 within 10 seconds.
    case command(String)

    public var description: String {
        switch self {
        case .file(let p): "file \(p)"
        case .command(let c): "command `\(c)`"
        }
    }

    /// Reads the load (blocking: the file is read, or the command run to its end).
    public func read() throws -> Double {
        let text: String
        switch self {
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else { throw LoadError("cannot read \(path)") }
            text = String(decoding: data, as: UTF8.self)
        case .command(let command):
            text = try Self.run(command)
        }
        guard let v = Self.firstNumber(in: text) else {
            throw LoadError("no number in the output of \(self): '\(text.prefix(80))'")
        }
        return v
    }

    /// The first decimal number in `text` (`0.52` in `0.52 0.58 0.59 1/123 4567`).
    public static func firstNumber(in text: String) -> Double? {
        guard let m = text.firstMatch(of: /[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?/),
              let v = Double(String(m.output)), v.isFinite
        else { return nil }
        return v
    }

    static func run(_ command: String) throws -> String {
        // A ChildProcess: the command dies with this process (a stop on a signal, a SIGKILL).
        let out = Pipe()
        let p: ChildProcess
        do {
            p = try ChildProcess(path: "/bin/sh", arguments: ["sh", "-c", command], output: out.fileHandleForWriting.fileDescriptor)
        } catch { throw LoadError("cannot start \(command): \(error)") }
        try? out.fileHandleForWriting.close()
        let timedOut = TimeoutFlag()
        let timer = DispatchWorkItem {
            timedOut.set()
            p.signal(SIGKILL)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + 10, execute: timer)
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let status = p.wait()
        timer.cancel()
        if timedOut.isSet { throw LoadError("`\(command)` took more than 10 s and was killed") }
        guard status == 0 else {
            throw LoadError("`\(command)` failed (exit status \(status))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Set once by the timer, read by the waiting thread.
    final class TimeoutFlag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        func set() { lock.withLock { value = true } }
        var isSet: Bool { lock.withLock { value } }
    }
}

/// A load that could not be read.
public struct LoadError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// The load rule: above `high`, the count goes up by `step`; below `low`, down by `step`.
public struct LoadRule: Sendable, Hashable {
    public var source: LoadSource
    public var high: Double
    public var low: Double
    public var step: Int

    public init(source: LoadSource, high: Double, low: Double, step: Int = 1) {
        self.source = source
        self.high = high
        self.low = low
        self.step = step
    }

    init(parsing value: JSONValue, path: String) throws {
        let o = try RulesObject(value, path: path, allowed: ["file", "command", "high", "low", "step"])
        switch (try o.optionalString("file"), try o.optionalString("command")) {
        case (let f?, nil):
            guard !f.isEmpty else { throw AgentRulesError(field: o.field("file"), "empty") }
            source = .file(f)
        case (nil, let c?):
            guard !c.trimmingCharacters(in: .whitespaces).isEmpty else { throw AgentRulesError(field: o.field("command"), "empty") }
            source = .command(c)
        case (_?, _?):
            throw AgentRulesError(field: o.field("command"), "give a file or a command, not both")
        case (nil, nil):
            throw AgentRulesError(field: o.field("file"), "missing (give the load's source: a file or a command)")
        }
        high = try o.number("high")
        low = try o.number("low")
        guard low < high else { throw AgentRulesError(field: o.field("low"), "\(low) is not below high (\(high))") }
        step = try o.optionalInt("step") ?? 1
        guard step >= 1 else { throw AgentRulesError(field: o.field("step"), "\(step) is not at least 1") }
    }
}

/// What the agent gives a processor it adds: a NIC on each VLAN (a new MAC each), and a workload.
public struct ProcessorTemplate: Sendable, Hashable {
    public var vlans: [Int]
    public var workload: String?
    /// Per template VLAN, the addresses a new processor may take: it is given the first one of
    /// the range that no personality holds on that VLAN.
    public var addresses: [Int: AddressRange]

    public init(vlans: [Int] = [], workload: String? = nil, addresses: [Int: AddressRange] = [:]) {
        self.vlans = vlans
        self.workload = workload
        self.addresses = addresses
    }

    init(parsing value: JSONValue, path: String) throws {
        let o = try RulesObject(value, path: path, allowed: ["vlans", "workload", "addresses"])
        vlans = []
        for (i, v) in try o.optionalArray("vlans").enumerated() {
            guard case .int(let vlan) = v, (1...4094).contains(vlan) else {
                throw AgentRulesError(field: o.field("vlans") + "[\(i)]", "not a VLAN number (1...4094)")
            }
            guard !vlans.contains(vlan) else { throw AgentRulesError(field: o.field("vlans") + "[\(i)]", "VLAN \(vlan) is named twice") }
            vlans.append(vlan)
        }
        workload = try o.optionalString("workload")
        if let w = workload, w.trimmingCharacters(in: .whitespaces).isEmpty {
            throw AgentRulesError(field: o.field("workload"), "empty (leave it out for no workload)")
        }
        addresses = [:]
        switch o.optionalValue("addresses") {
        case nil: break
        case .object(let ranges)?:
            for (key, v) in ranges.sorted(by: { $0.key < $1.key }) {
                let field = o.field("addresses") + "." + key
                guard let vlan = Int(key), vlans.contains(vlan) else {
                    throw AgentRulesError(field: field, "not one of the template's VLANs (\(vlans.map(String.init).joined(separator: ", ")))")
                }
                guard case .string(let text) = v else { throw AgentRulesError(field: field, "must be a string such as \"10.10.0.100-10.10.0.199/24\"") }
                guard let range = AddressRange(text) else {
                    throw AgentRulesError(field: field, "\"\(text)\" is not first-last/len (such as 10.10.0.100-10.10.0.199/24, first ≤ last, in one /len)")
                }
                addresses[vlan] = range
            }
        case _?:
            throw AgentRulesError(field: o.field("addresses"), "must be an object of VLAN → \"first-last/len\"")
        }
    }
}

/// A range of IPv4 host addresses in one subnet, `first-last/len` (`10.10.0.100-10.10.0.199/24`);
/// it may not include the subnet's own address or its broadcast address.
public struct AddressRange: Sendable, Hashable, CustomStringConvertible {
    public var first: UInt32
    public var last: UInt32
    public var prefix: Int

    public init?(_ text: String) {
        let slash = text.split(separator: "/", omittingEmptySubsequences: false)
        let ends = slash.first.map { $0.split(separator: "-", omittingEmptySubsequences: false) } ?? []
        guard slash.count == 2, ends.count == 2, let len = Int(slash[1]), (1...32).contains(len),
              let a = Self.parse(ends[0]), let b = Self.parse(ends[1]), a <= b else { return nil }
        let mask: UInt32 = len == 32 ? .max : ~(UInt32.max >> UInt32(len))
        guard a & mask == b & mask else { return nil }
        // A subnet's own address and its broadcast address are no host's (from /30 down).
        if len <= 30 && (a & ~mask == 0 || b & ~mask == ~mask) { return nil }
        first = a
        last = b
        prefix = len
    }

    static func parse(_ s: Substring) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard p.count <= 3, let o = UInt32(p), o <= 255 else { return nil }
            v = v << 8 | o
        }
        return v
    }

    static func text(_ v: UInt32) -> String { "\(v >> 24).\(v >> 16 & 255).\(v >> 8 & 255).\(v & 255)" }

    /// The first address of the range not in `taken` (host parts, as `a.b.c.d`), as `a.b.c.d/len`.
    public func firstFree(excluding taken: Set<String>) -> String? {
        var v = first
        while true {
            if !taken.contains(Self.text(v)) { return Self.text(v) + "/\(prefix)" }
            if v == last { return nil }
            v += 1
        }
    }

    public var description: String { "\(Self.text(first))-\(Self.text(last))/\(prefix)" }
}

/// One JSON object of the rules file, read field by field so that every error names its field.
struct RulesObject {
    let path: String
    let fields: [String: JSONValue]

    init(_ value: JSONValue, path: String, allowed: Set<String>) throws {
        guard case .object(let dict) = value else {
            throw AgentRulesError(field: path.isEmpty ? "rules" : path, "must be a JSON object")
        }
        self.path = path
        if let unknown = dict.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw AgentRulesError(field: path.isEmpty ? unknown : "\(path).\(unknown)",
                                  "unknown field (here: \(allowed.sorted().joined(separator: ", ")))")
        }
        fields = dict
    }

    func field(_ k: String) -> String { path.isEmpty ? k : "\(path).\(k)" }

    func optionalValue(_ k: String) -> JSONValue? {
        switch fields[k] {
        case nil, .null?: nil
        case let v?: v
        }
    }

    func string(_ k: String) throws -> String {
        guard let v = try optionalString(k) else { throw AgentRulesError(field: field(k), "missing") }
        return v
    }

    func optionalString(_ k: String) throws -> String? {
        switch optionalValue(k) {
        case nil: return nil
        case .string(let s)?: return s
        default: throw AgentRulesError(field: field(k), "must be a string")
        }
    }

    func int(_ k: String) throws -> Int {
        guard let v = try optionalInt(k) else { throw AgentRulesError(field: field(k), "missing") }
        return v
    }

    func optionalInt(_ k: String) throws -> Int? {
        switch optionalValue(k) {
        case nil: return nil
        case .int(let i)?: return i
        default: throw AgentRulesError(field: field(k), "must be an integer")
        }
    }

    func number(_ k: String) throws -> Double {
        switch optionalValue(k) {
        case nil: throw AgentRulesError(field: field(k), "missing")
        case .int(let i)?: return Double(i)
        case .double(let d)?: return d
        default: throw AgentRulesError(field: field(k), "must be a number")
        }
    }

    func array(_ k: String) throws -> [JSONValue] {
        guard optionalValue(k) != nil else { throw AgentRulesError(field: field(k), "missing") }
        return try optionalArray(k)
    }

    func optionalArray(_ k: String) throws -> [JSONValue] {
        switch optionalValue(k) {
        case nil: return []
        case .array(let a)?: return a
        default: throw AgentRulesError(field: field(k), "must be an array")
        }
    }
}

// MARK: - The API client

/// A client of the management API over HTTP with the bearer token: what the agent (and the
/// tests) use, the same requests an administrator sends.
public final class ManagementClient: Sendable {
    public let base: String
    let token: String
    let session: URLSession

    /// - Parameters:
    ///   - base: the API's base URL without `/v1` (`http://127.0.0.1:7070`).
    ///   - connections: how many requests may be in flight to the API at once.
    public init(base: String, token: String, connections: Int = 8, timeout: TimeInterval = 30) {
        self.base = base.hasSuffix("/") ? String(base.dropLast()) : base
        self.token = token
        let config = URLSessionConfiguration.ephemeral
        config.httpMaximumConnectionsPerHost = connections
        config.timeoutIntervalForRequest = timeout
        session = URLSession(configuration: config)
    }

    deinit { session.finishTasksAndInvalidate() }

    /// One request; its status and body. Throws an ``APIRefusal`` with status 0 when no answer
    /// came (the API is down or unreachable).
    public func send(_ method: String, _ path: String, json body: Data? = nil) async throws(APIRefusal) -> (status: Int, body: Data) {
        guard let url = URL(string: base + path) else {
            throw APIRefusal(status: 0, kind: "unreachable", field: nil, message: "bad URL \(base + path)")
        }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = body
        }
        let result: Result<(Int, Data), APIRefusal> = await withCheckedContinuation { c in
            session.dataTask(with: request) { data, response, error in
                if let http = response as? HTTPURLResponse {
                    c.resume(returning: .success((http.statusCode, data ?? Data())))
                } else {
                    c.resume(returning: .failure(APIRefusal(status: 0, kind: "unreachable", field: nil,
                                                            message: "no answer from \(url): \(error.map { "\($0.localizedDescription)" } ?? "?")")))
                }
            }.resume()
        }
        return try result.get()
    }

    /// One request whose answer is decoded as `T`; a refusal (4xx/5xx) is thrown as an
    /// ``APIRefusal`` carrying the API's error kind, field and message.
    public func call<T: Decodable>(_ method: String, _ path: String, as: T.Type = T.self) async throws(APIRefusal) -> T {
        let answer = try await send(method, path)
        return try decode(method, path, answer)
    }

    /// As ``call(_:_:as:)``, with `body` as the request's JSON.
    public func call<T: Decodable, B: Encodable & Sendable>(_ method: String, _ path: String, _ body: B,
                                                            as: T.Type = T.self) async throws(APIRefusal) -> T {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(body) else {
            throw APIRefusal(status: 0, kind: "invalid", field: nil, message: "cannot encode the body of \(method) \(path)")
        }
        let answer = try await send(method, path, json: data)
        return try decode(method, path, answer)
    }

    func decode<T: Decodable>(_ method: String, _ path: String, _ answer: (status: Int, body: Data)) throws(APIRefusal) -> T {
        guard (200..<300).contains(answer.status) else { throw APIRefusal(status: answer.status, body: answer.body) }
        do {
            return try JSONDecoder().decode(T.self, from: answer.body)
        } catch {
            throw APIRefusal(status: answer.status, kind: "unexpected", field: nil,
                             message: "cannot read the answer to \(method) \(path): \(String(decoding: answer.body.prefix(200), as: UTF8.self))")
        }
    }

    /// A path component, percent-escaped.
    public static func escape(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? s
    }
}

/// A request the API refused (its status, and its error's kind, field and message), or one that
/// got no answer (status 0, kind `unreachable`).
public struct APIRefusal: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    public var status: Int
    public var kind: String
    public var field: String?
    public var message: String

    public init(status: Int, kind: String, field: String?, message: String) {
        self.status = status
        self.kind = kind
        self.field = field
        self.message = message
    }

    /// From the API's `{"error": {"kind", "field", "message"}}`.
    public init(status: Int, body: Data) {
        struct Wrapper: Decodable { var error: Detail }
        struct Detail: Decodable { var kind: String; var field: String?; var message: String }
        if let e = try? JSONDecoder().decode(Wrapper.self, from: body).error {
            self.init(status: status, kind: e.kind, field: e.field, message: e.message)
        } else {
            let text = String(decoding: body.prefix(200), as: UTF8.self)
            self.init(status: status, kind: "http-\(status)", field: nil, message: text.isEmpty ? "(no error body)" : text)
        }
    }

    public var description: String {
        status == 0 ? message : "\(status) \(kind): \(field.map { "\($0): " } ?? "")\(message)"
    }
}

// MARK: - The agent

/// Something the agent did, or tried and could not do, in one step.
public struct AgentAction: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, Codable {
        /// A processor added to the PAN, with the template applied.
        case added
        /// A personality the agent made removed (its processor back in the free pool).
        case removed
        /// A processor added, but the template could not be applied: the personality was
        /// removed again.
        case rolledBack = "rolled-back"
        /// As `rolledBack`, but removing it failed too: it is retried at every step until it is gone.
        case rollbackPending = "rollback-pending"
        /// The API refused a request (409 the free pool is empty, 404 no such PAN...), or did
        /// not answer. Nothing was changed; the next step tries again.
        case refused
        /// The load could not be read; the schedule and the last load adjustment still apply.
        case loadUnavailable = "load-unavailable"
        /// The PAN has more processors than wanted, but the rest were not made by the agent, so
        /// it leaves them.
        case held
    }
    public var kind: Kind
    public var pan: String
    public var personality: String?
    public var node: Int?
    /// The refusal, for `refused`, `rolledBack` and `rollbackPending`.
    public var refusal: APIRefusal?
    public var message: String

    public init(_ kind: Kind, pan: String, personality: String? = nil, node: Int? = nil, refusal: APIRefusal? = nil,
                _ message: String) {
        self.kind = kind
        self.pan = pan
        self.personality = personality
        self.node = node
        self.refusal = refusal
        self.message = message
    }

    public var description: String { "\(pan): \(kind.rawValue)\(personality.map { " \($0)" } ?? ""): \(message)" }
}

/// What the agent decided for a PAN in a step, and why.
public struct AgentDecision: Sendable, Hashable, Codable, CustomStringConvertible {
    public var pan: String
    /// The local time the step ran at (`HH:MM`).
    public var time: String
    /// The schedule window in force (`08:00-18:00`), if any.
    public var window: String?
    /// The schedule's count (the window's, else `min`).
    public var baseline: Int
    /// The load read in this step, if there is a load rule and it could be read.
    public var load: Double?
    /// The load's adjustment: processors over (or under) the baseline.
    public var adjustment: Int
    /// The count aimed for: baseline + adjustment, within min...max.
    public var desired: Int
    /// The PAN's processors at the start of the step.
    public var current: Int

    public var description: String {
        var s = "\(pan) at \(time): schedule \(baseline) (\(window.map { "window \($0)" } ?? "no window: min"))"
        if let load { s += ", load \(String(format: "%.2f", load))" }
        if adjustment != 0 { s += ", adjusted \(adjustment > 0 ? "+" : "")\(adjustment)" }
        return s + ": want \(desired), have \(current)"
    }
}

/// The reconfiguration agent: each step reads every PAN of its rules through the management API,
/// decides how many processors it should have, and adds or removes processors to get there.
///
/// **The count.** Every personality of the PAN counts. The schedule's *baseline* is the
/// processors of the first window containing the local time, or `min` outside every window. The
/// load rule keeps an *adjustment*: a step whose load is above `high` raises it by `step`, one
/// whose load is below `low` lowers it by `step`, one in between (or whose load cannot be read)
/// leaves it. The adjustment is then clamped so that baseline + adjustment stays within
/// min...max, and the count wanted is baseline + adjustment. When a step cannot reach the count
/// (the free pool ran dry, or the surplus is not the agent's to remove) a positive (negative)
/// adjustment comes back to the count reached, never past zero: the load does not wind up, and
/// its next change acts at once. The adjustment is kept across windows and lives in memory: a
/// restarted agent starts again from the schedule.
///
/// **Adding** (`POST /v1/pans/{pan}/processors` with the name `<pan>-agent-<n>`, n one more than
/// any it has seen), then a NIC on each template VLAN and the template's workload. If any of
/// these is refused, the personality is removed again (nothing is left half-applied) and the
/// step stops adding to that PAN. **Removing** takes only personalities named
/// `<pan>-agent-<n>`, the highest n (the newest) first. A refusal (the free pool is empty, the
/// PAN does not exist, the API is down) is reported as an action and retried at the next step.
public actor ReconfigurationAgent {
    public let rules: AgentRules
    let client: ManagementClient
    let timeZone: TimeZone
    let readLoad: @Sendable (LoadSource) async throws -> Double

    /// The load adjustment per PAN.
    var adjustments: [String: Int] = [:]
    /// The highest `n` of `<pan>-agent-<n>` used, per PAN (names only grow within a run).
    var highestIndex: [String: Int] = [:]
    /// Personalities whose rollback failed, per PAN: removed at the next step.
    var pendingRemovals: [String: [String]] = [:]
    /// What the last step decided, per PAN, in the rules' order.
    public private(set) var lastDecisions: [AgentDecision] = []

    /// - Parameters:
    ///   - timeZone: the zone whose local time the schedule windows are in.
    ///   - readLoad: reads a load source (the default reads the file or runs the command).
    public init(rules: AgentRules, client: ManagementClient, timeZone: TimeZone = .current,
                readLoad: @escaping @Sendable (LoadSource) async throws -> Double = ReconfigurationAgent.readLoad) {
        self.rules = rules
        self.client = client
        self.timeZone = timeZone
        self.readLoad = readLoad
    }

    /// Reads the source off the concurrency pool (a command may take a while).
    public static func readLoad(_ source: LoadSource) async throws -> Double {
        try await withCheckedThrowingContinuation { c in
            DispatchQueue.global().async { c.resume(with: Result { try source.read() }) }
        }
    }

    /// One reconciliation step at `now`: every PAN of the rules in turn. Returns what it did
    /// (``lastDecisions`` says what it aimed for).
    public func reconcile(now: Date) async -> [AgentAction] {
        var actions: [AgentAction] = []
        var decisions: [AgentDecision] = []
        for rule in rules.pans {
            if let d = await reconcile(rule, now: now, actions: &actions) { decisions.append(d) }
        }
        lastDecisions = decisions
        return actions
    }

    /// Runs a step every `interval` until the task is cancelled, handing each step's actions and
    /// decisions to `report`.
    public func run(every interval: Duration, clock: @Sendable () -> Date = { Date() },
                    report: @Sendable ([AgentAction], [AgentDecision]) -> Void) async {
        while !Task.isCancelled {
            let actions = await reconcile(now: clock())
            report(actions, lastDecisions)
            try? await Task.sleep(for: interval)
        }
    }

    func reconcile(_ rule: PANRule, now: Date, actions: inout [AgentAction]) async -> AgentDecision? {
        let panPath = "/v1/pans/\(ManagementClient.escape(rule.pan))"
        var members: [String]
        do throws(APIRefusal) {
            members = try await client.call("GET", panPath, as: PAN.self).personalities
        } catch {
            actions.append(AgentAction(.refused, pan: rule.pan, refusal: error, "cannot read the PAN (\(error)); trying again next step"))
            return nil
        }

        // Rollbacks that failed before.
        for name in pendingRemovals[rule.pan] ?? [] {
            do throws(APIRefusal) {
                try await remove(name)
                actions.append(AgentAction(.removed, pan: rule.pan, personality: name, "removed (its template had failed)"))
                pendingRemovals[rule.pan]?.removeAll { $0 == name }
                members.removeAll { $0 == name }
            } catch where error.status == 404 {
                pendingRemovals[rule.pan]?.removeAll { $0 == name }
                members.removeAll { $0 == name }
            } catch {
                actions.append(AgentAction(.rollbackPending, pan: rule.pan, personality: name, refusal: error,
                                           "still cannot remove it (\(error)); trying again next step"))
            }
        }

        // The count wanted.
        let time = TimeOfDay(now, in: timeZone)
        let (baseline, window) = rule.baseline(at: time)
        var adjustment = adjustments[rule.pan] ?? 0
        var load: Double?
        if let l = rule.load {
            do {
                let v = try await readLoad(l.source)
                load = v
                if v > l.high { adjustment += l.step } else if v < l.low { adjustment -= l.step }
            } catch {
                actions.append(AgentAction(.loadUnavailable, pan: rule.pan,
                                           "cannot read the load from \(l.source): \(error); the schedule still applies"))
            }
        }
        adjustment = Swift.min(Swift.max(adjustment, rule.min - baseline), rule.max - baseline)
        let desired = Swift.min(Swift.max(baseline + adjustment, rule.min), rule.max)
        let decision = AgentDecision(pan: rule.pan, time: time.description, window: window?.description, baseline: baseline,
                                     load: load, adjustment: adjustment, desired: desired, current: members.count)

        var count = members.count
        let owned = members.compactMap { name in rule.agentIndex(name).map { (n: $0, name: name) } }.sorted { $0.n < $1.n }
        highestIndex[rule.pan] = Swift.max(owned.last?.n ?? 0, highestIndex[rule.pan] ?? 0)
        if count < desired {
            var next = highestIndex[rule.pan] ?? 0
            while count < desired {
                next += 1
                guard await add(rule, name: rule.agentPrefix + String(next), actions: &actions) else { break }
                count += 1
            }
        } else if count > desired {
            let surplus = count - desired
            for victim in owned.reversed().prefix(surplus) {
                do throws(APIRefusal) {
                    try await remove(victim.name)
                    actions.append(AgentAction(.removed, pan: rule.pan, personality: victim.name, "want \(desired), had \(members.count)"))
                    count -= 1
                } catch {
                    actions.append(AgentAction(.refused, pan: rule.pan, personality: victim.name, refusal: error,
                                               "cannot remove it (\(error)); trying again next step"))
                }
            }
            if owned.count < surplus {
                actions.append(AgentAction(.held, pan: rule.pan,
                                           "want \(desired), but \(members.count - owned.count) of its \(members.count) processors "
                                           + "were not made by the agent and are left alone"))
            }
        }
        // The load's adjustment does not run ahead of what the step could do (the pool ran dry,
        // the rest are not the agent's): it comes back to the count reached, so that the load
        // falling (or rising) again acts at the next step instead of first unwinding.
        if count < desired && adjustment > 0 { adjustment = Swift.max(0, count - baseline) }
        if count > desired && adjustment < 0 { adjustment = Swift.min(0, count - baseline) }
        adjustments[rule.pan] = adjustment
        return decision
    }

    /// Adds one processor named `name` with the template; true if it was added whole.
    func add(_ rule: PANRule, name: String, actions: inout [AgentAction]) async -> Bool {
        struct AddBody: Encodable, Sendable { var name: String }
        struct NICBody: Encodable, Sendable { var vlan: Int }
        struct WorkloadBody: Encodable, Sendable { var command: String }
        struct IPBody: Encodable, Sendable { var vlan: Int; var address: String }
        var bound: [String] = []
        let added: Personality
        do throws(APIRefusal) {
            added = try await client.call("POST", "/v1/pans/\(ManagementClient.escape(rule.pan))/processors",
                                          AddBody(name: name), as: Personality.self)
            highestIndex[rule.pan] = Swift.max(highestIndex[rule.pan] ?? 0, rule.agentIndex(name) ?? 0)
        } catch {
            if error.field == "name" {
                // The name is taken (by a personality of another PAN): the next step takes the next one.
                highestIndex[rule.pan] = Swift.max(highestIndex[rule.pan] ?? 0, rule.agentIndex(name) ?? 0)
            }
            actions.append(AgentAction(.refused, pan: rule.pan, personality: name, refusal: error,
                                       "cannot add a processor (\(error)); trying again next step"))
            return false
        }
        let path = "/v1/personalities/\(ManagementClient.escape(name))"
        var step = ""
        do throws(APIRefusal) {
            for vlan in rule.template.vlans {
                step = "attaching a NIC on VLAN \(vlan)"
                _ = try await client.call("POST", path + "/nics", NICBody(vlan: vlan), as: Personality.self)
            }
            for (vlan, range) in rule.template.addresses.sorted(by: { $0.key < $1.key }) {
                step = "binding an address of \(range) on VLAN \(vlan)"
                let everyone = try await client.call("GET", "/v1/personalities", as: [Personality].self)
                let taken = Set(everyone.flatMap { $0.ips.filter { $0.vlan == vlan }.map { String($0.address.prefix { $0 != "/" }) } })
                guard let address = range.firstFree(excluding: taken) else {
                    throw APIRefusal(status: 409, kind: "conflict", field: "addresses",
                                     message: "every address of \(range) on VLAN \(vlan) is taken")
                }
                _ = try await client.call("POST", path + "/ips", IPBody(vlan: vlan, address: address), as: Personality.self)
                bound.append("\(address) on VLAN \(vlan)")
            }
            if let command = rule.template.workload {
                step = "setting the workload"
                _ = try await client.call("PUT", path + "/workload", WorkloadBody(command: command), as: Personality.self)
            }
        } catch {
            let failure = error
            do throws(APIRefusal) {
                try await remove(name)
                actions.append(AgentAction(.rolledBack, pan: rule.pan, personality: name, node: added.node, refusal: failure,
                                           "\(step) was refused (\(failure)); the personality was removed again"))
            } catch {
                pendingRemovals[rule.pan, default: []].append(name)
                actions.append(AgentAction(.rollbackPending, pan: rule.pan, personality: name, node: added.node, refusal: failure,
                                           "\(step) was refused (\(failure)), and removing the personality failed too (\(error)); "
                                           + "trying again next step"))
            }
            return false
        }
        let vlans = rule.template.vlans.map(String.init).joined(separator: ", ")
        let nics = switch rule.template.vlans.count {
        case 0: "no NICs"
        case 1: "a NIC on VLAN \(vlans)"
        default: "NICs on VLANs \(vlans)"
        }
        actions.append(AgentAction(.added, pan: rule.pan, personality: name, node: added.node,
                                   "node \(added.node.map(String.init) ?? "-"), \(nics)"
                                   + (bound.isEmpty ? "" : ", " + bound.joined(separator: ", "))
                                   + (rule.template.workload.map { ", workload `\($0)`" } ?? "")))
        return true
    }

    func remove(_ name: String) async throws(APIRefusal) {
        struct Empty: Decodable {}
        _ = try await client.call("DELETE", "/v1/personalities/\(ManagementClient.escape(name))", as: Empty.self)
    }
}
