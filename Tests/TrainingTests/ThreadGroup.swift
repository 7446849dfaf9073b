import Foundation
import Torch
@testable import Training

/// Processes played by threads of this test process: the collectives of `DataParallelGroup`
/// done in memory (sums in rank order), so that data-parallel training can be checked against
/// one process without launching any. (The real group, over c10d, is tested across processes.)
final class ThreadGroupHub: @unchecked Sendable {
    let size: Int
    private let condition = NSCondition()
    private var generation = 0, arrived = 0
    private var slots: [Any?]
    private var results: [Any?] = []

    init(size: Int) {
        self.size = size
        slots = Array(repeating: nil, count: size)
    }

    func group(_ rank: Int) -> ThreadGroup { ThreadGroup(hub: self, rank: rank) }

    /// Every rank's `value`, in rank order, once all have given theirs.
    func exchange(_ rank: Int, _ value: Any) throws -> [Any] {
        condition.lock(); defer { condition.unlock() }
        let mine = generation
        slots[rank] = value
        arrived += 1
        if arrived == size {
            results = slots
            slots = Array(repeating: nil, count: size)
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            let deadline = Date(timeIntervalSinceNow: 120)
            while generation == mine {
                guard condition.wait(until: deadline) else { throw TrainingError(message: "rank \(rank): the other threads did not arrive") }
            }
        }
        return results.map { $0! }
    }
}

final class ThreadGroup: DataParallelGroup {
    let hub: ThreadGroupHub
    let rank: Int
    var worldSize: Int { hub.size }
    var localRank: Int { rank }

    init(hub: ThreadGroupHub, rank: Int) {
        self.hub = hub
        self.rank = rank
    }

    func allReduce(_ tensors: [Tensor], average: Bool) throws {
        let all = try hub.exchange(rank, tensors.map { $0.clone() }) as! [[Tensor]]
        withNoGrad {
            for (index, tensor) in tensors.enumerated() {
                var sum = all[0][index]
                for other in all.dropFirst() { sum = sum + other[index] }
                tensor.copy_(average ? sum / Double(worldSize) : sum)
            }
        }
    }

    func allGather(_ tensor: Tensor) throws -> [Tensor] { try hub.exchange(rank, tensor.clone()) as! [Tensor] }

    func broadcast(_ tensors: [Tensor], from root: Int) throws {
        let all = try hub.exchange(rank, tensors.map { $0.clone() }) as! [[Tensor]]
        withNoGrad { for (tensor, value) in zip(tensors, all[root]) { tensor.copy_(value) } }
    }

    func broadcast(bytes: [UInt8], from root: Int) throws -> [UInt8] { (try hub.exchange(rank, bytes) as! [[UInt8]])[root] }

    func anyRank(_ flag: Bool) throws -> Bool { (try hub.exchange(rank, flag) as! [Bool]).contains(true) }
}

/// Collected results of `onThreads`.
private final class ThreadResults<R>: @unchecked Sendable {
    var results: [Result<R, Error>?]
    init(_ count: Int) { results = Array(repeating: nil, count: count) }
}

/// Runs `body(rank)` on `count` threads at once and returns their results in rank order
/// (rethrowing the first error).
func onThreads<R>(_ count: Int, _ body: @escaping @Sendable (Int) throws -> R) throws -> [R] {
    let box = ThreadResults<R>(count)
    let group = DispatchGroup()
    let lock = NSLock()
    for rank in 0..<count {
        group.enter()
        let thread = Thread {
            let result = Result { try body(rank) }
            lock.lock(); box.results[rank] = result; lock.unlock()
            group.leave()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }
    group.wait()
    return try box.results.map { try $0!.get() }
}
