import Foundation
import PlexusLAN

/// The parameters a scenario ran with, as its JSON line records them (only those it reads).
public struct BenchParameters: Codable, Sendable, Hashable {
    public var size: Int?
    public var seconds: Double?
    public var count: Int?
    public var rounds: Int?
    public var fabric: String?
    public var busyPoll: Bool?
    public var vis: Int?
    public var policy: String?
    public var link: Bool?
    public var loss: Double?
    public var mtu: Int?
    public var pattern: String?
    public var blockSize: Int?
    public var queueDepth: Int?
    public var fileMiB: Int?
    public var direct: Bool?
    public var laneDepth: Int?
    public var slotKiB: Int?
    public var nodes: Int?

    enum CodingKeys: String, CodingKey {
        case size, seconds, count, rounds, fabric, busyPoll = "busy_poll", vis, policy, link, loss, mtu
        case pattern, blockSize = "block_size", queueDepth = "queue_depth", fileMiB = "file_mib", direct
        case laneDepth = "lane_depth", slotKiB = "slot_kib", nodes
    }

    /// The parameters `scenario` reads from `o`.
    public init(_ scenario: BenchScenario, _ o: BenchOptions) {
        switch scenario {
        case .viThroughput: (size, seconds, rounds, fabric) = (o.size, o.seconds, o.rounds, o.fabric.rawValue)
        case .viLatency, .rviLatency: (size, count, rounds, busyPoll) = (o.size, o.count, o.rounds, o.busyPoll)
        case .rdmaWrite: (size, seconds, rounds) = (o.size, o.seconds, o.rounds)
        case .viScale: (size, seconds, rounds, vis) = (o.size, o.seconds, o.rounds, o.vis)
        case .rviThroughput, .rviMessages: (size, seconds, rounds, policy) = (o.size, o.seconds, o.rounds, o.policy)
        case .rviFailover: (size, seconds, rounds, policy, link) = (o.size, o.seconds, o.rounds, o.policy, o.link)
        case .rviLoss: (size, seconds, rounds, loss, policy) = (o.size, o.seconds, o.rounds, o.loss, o.policy)
        case .vlanTCP: (seconds, rounds, mtu) = (o.seconds, o.rounds, TAP.maximumMTU)
        case .vlanPing: (count, rounds, busyPoll) = (o.count, o.rounds, o.busyPoll)
        case .vlanFailover: seconds = max(o.seconds, 3)
        case .failover: (rounds, nodes) = (o.rounds, o.nodes == 6 ? nil : o.nodes)
        case .storage:
            (pattern, blockSize, queueDepth, seconds, rounds) = (o.pattern, o.blockSize, o.queueDepth, o.seconds, o.rounds)
            (fileMiB, direct, laneDepth, slotKiB) = (o.storageFileMiB, o.direct, o.laneDepth, o.slotKiB)
        case .platformIdle: (nodes, seconds) = (o.nodes, o.seconds)
        }
    }
}

/// The machine a result was measured on.
public struct Machine: Codable, Sendable, Hashable {
    public var kernel: String
    public var cpus: Int
    public var cpuModel: String
    public var memoryGiB: Int

    enum CodingKeys: String, CodingKey { case kernel, cpus, cpuModel = "cpu_model", memoryGiB = "memory_gib" }

    /// This machine.
    public static func describe() -> Machine {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { String($0.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces)) } ?? "unknown"
        return Machine(kernel: release, cpus: ProcessInfo.processInfo.activeProcessorCount, cpuModel: model,
                       memoryGiB: Int(ProcessInfo.processInfo.physicalMemory >> 30))
    }
}

/// One scenario's JSON line: its result's fields, with the scenario, its parameters, the
/// machine, the date, the command and the faults beside them in the same object.
public struct BenchReport<Result: Codable & Sendable>: Codable, Sendable {
    public var scenario: String
    public var parameters: BenchParameters
    public var result: Result
    public var machine: Machine
    public var date: String
    public var command: String
    public var faults: [String]?

    enum CodingKeys: String, CodingKey { case scenario, parameters, machine, date, command, faults }

    /// A report on `result`, dated now, on this machine.
    public init(_ scenario: BenchScenario, options: BenchOptions, result: Result, command: String, faults: [String]) {
        self.scenario = scenario.rawValue
        parameters = BenchParameters(scenario, options)
        self.result = result
        machine = Machine.describe()
        date = ISO8601DateFormatter().string(from: Date())
        self.command = command
        self.faults = faults.isEmpty ? nil : faults
    }

    public init(from decoder: any Decoder) throws {
        result = try Result(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        scenario = try c.decode(String.self, forKey: .scenario)
        parameters = try c.decode(BenchParameters.self, forKey: .parameters)
        machine = try c.decode(Machine.self, forKey: .machine)
        date = try c.decode(String.self, forKey: .date)
        command = try c.decode(String.self, forKey: .command)
        faults = try c.decodeIfPresent([String].self, forKey: .faults)
    }

    public func encode(to encoder: any Encoder) throws {
        try result.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(scenario, forKey: .scenario)
        try c.encode(parameters, forKey: .parameters)
        try c.encode(machine, forKey: .machine)
        try c.encode(date, forKey: .date)
        try c.encode(command, forKey: .command)
        try c.encodeIfPresent(faults, forKey: .faults)
    }

    /// The report as one line of JSON, keys sorted.
    public var jsonLine: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }
}
