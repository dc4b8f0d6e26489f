import Foundation
import PlexusNamespaces
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import PlexusLAN
import PlexusPlatform

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
        guard max <= PlatformLimits.nodeNumbers.count else {
            throw AgentRulesError(field: o.field("max"), "\(max) is more than a platform has (\(PlatformLimits.nodeNumbers.count))")
        }
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
