import Foundation
import Testing
@testable import Torch

/// The caching host allocator: blocks come back for reuse, what it keeps mapped stays within the
/// most ever live (plus its slack), tensors compute the same whichever allocator made them, and
/// switching while tensors live is safe. Each test runs in its own process: the allocator and its
/// figures are process-wide, and other suites allocate beside them.
@Suite("Host allocator")
struct HostAllocatorTests {
    @Test func sizeClassesRoundUpByAtMostAnEighth() {
        let page = HostAllocator.pageSize
        var previous = 0
        for bytes in stride(from: 1 << 20, through: 64 << 20, by: 12_345) {
            let size = LargeBlockCache.sizeClass(bytes)
            #expect(size >= bytes && Double(size) <= Double(bytes) * 1.125 + Double(page), "\(bytes) → \(size)")
            #expect(size % page == 0 && size >= previous, "\(bytes) → \(size)")
            previous = size
        }
        #expect(LargeBlockCache.sizeClass(1 << 20) == 1 << 20)
    }

    @Test func freedBlocksAreReusedAndValuesAreRight() async {
        await #expect(processExitsWith: .success) {
            try HostAllocator.use(.caching)
            #expect(HostAllocator.current == .caching)
            let before = HostAllocator.statistics!
            for round in 0..<5 {
                let x = Tensor.full([1_000_000], Double(round + 1)) * 2   // 4 MB, twice
                #expect(x.sum().item(Double.self) == Double(round + 1) * 2_000_000)
            }
            let after = HostAllocator.statistics!
            // The first round maps; later rounds reuse both blocks.
            #expect(after.reuses - before.reuses >= 8, "\(after)")
            #expect(after.maps - before.maps <= 3, "\(after)")
            #expect(after.cachedBytes == after.mappedBytes, "everything freed is kept: \(after)")
        }
    }

    @Test func mappedBytesStayWithinTheMostEverLivePlusSlack() async {
        await #expect(processExitsWith: .success) {
            try HostAllocator.use(.caching)
            func check() {
                let s = HostAllocator.statistics!
                #expect(s.mappedBytes <= s.peakLiveBytes + LargeBlockCache.slack(s.peakLiveBytes), "\(s)")
                #expect(s.cachedBytes >= 0 && s.cachedBytes <= s.mappedBytes, "\(s)")
            }
            // Sizes that never repeat: each round's blocks fit none of the next round's classes.
            for round in 0..<12 {
                let megabytes = 3 + 5 * round
                var live: [Tensor] = []
                for _ in 0..<8 { live.append(Tensor.ones([megabytes << 18])) }   // 4 bytes each
                #expect(live.reduce(0) { $0 + $1.sum().item(Double.self) } == Double(8 * (megabytes << 18)))
                check()
                live.removeAll()
                check()
            }
            #expect(HostAllocator.statistics!.unmaps > 0, "the bound never applied")
        }
    }

    @Test func resultsDoNotDependOnTheAllocatorAndSwitchingIsSafe() async {
        await #expect(processExitsWith: .success) {
            func work(_ seed: UInt64) -> Tensor {
                let a = Tensor.randn([512, 700], generator: Generator(seed: seed)).requiringGrad()
                let b = Tensor.randn([700, 600], generator: Generator(seed: seed + 1))
                let y = (a.matmul(b).relu() * 3).softmax(dim: 1)
                (y * y).sum().backward()
                return Tensor.cat([y.flatten(), a.grad!.flatten()], dim: 0)
            }
            let plain = work(1)
            try HostAllocator.use(.caching)
            let cached = work(1)
            #expect(plain.equal(cached))
            // Made by one allocator, freed under the other, in both directions.
            let madeCached = Tensor.ones([1 << 20])
            try HostAllocator.use(.malloc)
            let madeMalloc = Tensor.ones([1 << 20])
            #expect(work(1).equal(plain))
            try HostAllocator.use(.caching)
            #expect((madeCached + madeMalloc).sum().item(Double.self) == 2 * Double(1 << 20))
            _ = consume madeCached
            _ = consume madeMalloc
            #expect(work(1).equal(plain))
        }
    }

    /// A block the system cannot map is libtorch's out-of-memory error, worded as the default's.
    @Test func anImpossibleBlockIsOutOfMemory() async {
        await #expect(processExitsWith: .success) {
            try HostAllocator.use(.caching)
            let error = #expect(throws: TorchError.self) { try withTorchErrors { _ = Tensor.empty([1 << 50]) } }
            #expect(error?.isOutOfMemory == true && error?.message.contains("can't allocate memory") == true, "\(String(describing: error))")
            #expect(Tensor.ones([1 << 20]).sum().item(Double.self) == Double(1 << 20))
        }
    }

    @Test func threadsAllocateAndFreeTogether() async {
        await #expect(processExitsWith: .success) {
            try HostAllocator.use(.caching)
            let failures = Locked(0)
            DispatchQueue.concurrentPerform(iterations: 4) { thread in
                for round in 0..<30 {
                    let n = (1 << 18) * (1 + (thread + round) % 5)
                    let x = Tensor.full([n], Double(thread + 1))
                    let y = x * 2
                    if y.sum().item(Double.self) != Double(n) * Double(2 * (thread + 1)) { failures.withLock { $0 += 1 } }
                }
            }
            #expect(failures.withLock { $0 } == 0)
            let s = HostAllocator.statistics!
            #expect(s.cachedBytes == s.mappedBytes, "blocks leaked: \(s)")
        }
    }
}
