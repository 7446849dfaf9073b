// One rank of a multi-process job: what DistributedTests and `Scripts/bench allreduce` start
// 2-3 times, each with the launcher's variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, or
// Slurm's). Exits 1 with the DistributedError on stderr when anything fails.
import ArgumentParser
import Distributed
import Foundation
import Torch

@main
struct DistWorker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dist-worker", abstract: "One rank of a distributed check or benchmark.",
        subcommands: [Check.self, Die.self, Join.self, Bench.self])
}

struct GroupOptions: ParsableArguments {
    @Option(help: "Seconds to wait for the other ranks, at the start and in each collective.") var timeout = 60.0

    /// The group the launcher's variables describe.
    func join() throws -> ProcessGroup {
        guard let environment = try DistributedEnvironment.detect(ProcessInfo.processInfo.environment) else {
            throw ValidationError("no RANK/WORLD_SIZE (or SLURM_PROCID/SLURM_NTASKS) in the environment")
        }
        return try ProcessGroup(environment, timeout: .milliseconds(Int(timeout * 1000)))
    }
}

/// Fails the rank with what it saw and what it expected.
struct Mismatch: Error, CustomStringConvertible {
    let description: String
}

func expect<T: Equatable>(_ what: String, _ got: T, _ expected: T) throws {
    guard got == expected else { throw Mismatch(description: "\(what): got \(got), expected \(expected)") }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Runs every collective and checks its result on this rank.")
    @OptionGroup var options: GroupOptions

    func run() throws {
        let group = try options.join()
        let (r, n) = (group.rank, group.worldSize)
        let triangle = Double(n * (n + 1) / 2)

        // allReduce: several tensors of different shapes and dtypes, each reduced on its own.
        let a = Tensor.full([3], Double(r + 1)), b = Tensor.full([2, 2], Double(r + 1), dtype: .float64)
        let c = Tensor([Int64(r), Int64(10 * r)])
        try group.allReduce([a, b, c])
        try expect("allReduce sum (float32)", a.toArray(Float.self), [Float](repeating: Float(triangle), count: 3))
        try expect("allReduce sum (float64)", b.toArray(Double.self), [Double](repeating: triangle, count: 4))
        try expect("allReduce sum (int64)", c.toArray(Int64.self), [Int64(n * (n - 1) / 2), Int64(10 * n * (n - 1) / 2)])
        let mean = Tensor.full([4], Double(r + 1))
        try group.allReduce([mean], op: .average)
        try expect("allReduce average", mean.toArray(Float.self), [Float](repeating: Float(n + 1) / 2, count: 4))
        let high = Tensor([Float(r), Float(-r)]), low = Tensor([Float(r), Float(-r)])
        try group.allReduce([high], op: .max)
        try group.allReduce([low], op: .min)
        try expect("allReduce max", high.toArray(Float.self), [Float(n - 1), 0])
        try expect("allReduce min", low.toArray(Float.self), [0, Float(-(n - 1))])

        // allGather: one tensor per rank, in rank order.
        let gathered = try group.allGather(Tensor([Float(r), Float(100 * r)]))
        try expect("allGather", gathered.map { $0.toArray(Float.self) }, (0..<n).map { [Float($0), Float(100 * $0)] })

        // broadcast from the last rank, two tensors.
        let root = n - 1
        let x = Tensor.full([3], Double(r)), y = Tensor([Int64(r)])
        try group.broadcast([x, y], from: root)
        try expect("broadcast", x.toArray(Float.self) + [Float(y.item(Int64.self))], [Float](repeating: Float(root), count: 4))

        // reduceScatter: rank i gets the sum over ranks of their input i.
        let inputs = (0..<n).map { Tensor.full([2], Double(10 * r + $0)) }
        let output = Tensor.zeros([2])
        try group.reduceScatter(inputs, into: output)
        try expect("reduceScatter", output.toArray(Float.self), [Float](repeating: Float(10 * n * (n - 1) / 2 + n * r), count: 2))

        try group.barrier()

        let bytes = try group.broadcast(bytes: Array("rank \(r) says hello".utf8), from: 0)
        try expect("broadcast(bytes:)", String(decoding: bytes, as: UTF8.self), "rank 0 says hello")
        try expect("broadcast(bytes:) of nothing", try group.broadcast(bytes: r == 0 ? [] : [1, 2], from: 0), [])
        try expect("anyRank(one rank true)", try group.anyRank(r == n - 1), true)
        try expect("anyRank(all false)", try group.anyRank(false), false)
        print("rank \(r) of \(n): every collective agrees")
    }
}

struct Die: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Rank VICTIM kills itself after a barrier; the others then all-reduce.")
    @Argument(help: "The rank that dies.") var victim: Int
    @Flag(help: "Stop (SIGSTOP: hung, sockets open) instead of dying.") var stop = false
    @OptionGroup var options: GroupOptions

    func run() throws {
        let group = try options.join()
        try group.barrier()
        if group.rank == victim { kill(getpid(), stop ? SIGSTOP : SIGKILL) }
        let started = ContinuousClock.now
        do {
            for _ in 0..<100 { try group.allReduce([Tensor.ones([1024])]) }
        } catch {
            FileHandle.standardError.write(Data("after \(ContinuousClock.now - started):\n".utf8))
            throw error
        }
        throw Mismatch(description: "rank \(victim) was killed, yet 100 all-reduces succeeded")
    }
}

struct Join: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Joins the group and passes a barrier.")
    @OptionGroup var options: GroupOptions

    func run() throws {
        let group = try options.join()
        try group.barrier()
        print("rank \(group.rank) of \(group.worldSize): joined")
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Times all-reduces of one float32 tensor; rank 0 prints JSON.")
    @Option(help: "Size of the tensor in MB (10^6 bytes).") var megabytes = 25.0
    @Option(help: "Timed all-reduces.") var iterations = 20
    @Option(help: "Untimed all-reduces first.") var warmup = 3
    @OptionGroup var options: GroupOptions

    func run() throws {
        let group = try options.join()
        let tensor = Tensor.ones([Int(megabytes * 1e6) / 4])
        for _ in 0..<warmup { try group.allReduce([tensor]) }
        var seconds: [Double] = []
        for _ in 0..<iterations {
            try group.barrier()
            let started = ContinuousClock.now
            try group.allReduce([tensor])
            let elapsed = ContinuousClock.now - started
            seconds.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        }
        if group.rank == 0 {
            let median = seconds.sorted()[seconds.count / 2]
            print(#"{"median_s": \#(median), "megabytes": \#(megabytes), "world_size": \#(group.worldSize), "iterations": \#(iterations)}"#)
        }
    }
}
