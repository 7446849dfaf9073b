import Foundation
import Testing
import Torch

/// Resident set size of this process, from /proc/self/statm.
private func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}

@Suite("Memory and threads")
struct LifetimeAndThreadTests {
    /// Runs in its own process so that tests running in parallel do not move the RSS.
    @Test func temporariesAreFreed() async {
        await #expect(processExitsWith: .success) {
            let a = Tensor.ones([4, 4]), b = Tensor.ones([4, 4])
            func churn(_ n: Int) {
                for _ in 0..<n { _ = (a + b) * 0.5 }   // two temporaries per iteration
            }
            churn(20_000)   // warm-up: allocator caches, lazy libtorch state
            let before = residentBytes()
            churn(100_000)  // 200,000 tensors; leaking even 100 bytes each would add 20 MB
            let growth = residentBytes() - before
            print("RSS grew by \(growth / 1024) KiB over 200,000 temporary tensors")
            exit(growth < 4 << 20 ? 0 : 1)
        }
    }

    @Test func tensorsOutliveTheirSourcesAndViewsKeepStorageAlive() {
        var view: Tensor
        do {
            let base = Tensor.arange(0, 10, dtype: .float32)
            view = base[2..<5]
            #expect(view.sharesStorage(with: base))
        }
        #expect(view.toArray(Float.self) == [2, 3, 4])
        view = view * 2.0
        #expect(view.toArray(Float.self) == [4, 6, 8])
    }

    @Test func opsFromTwoThreadsAtOnce() async {
        func work(_ seed: UInt64) -> (Double, String?) {
            let g = Generator(seed: seed)
            var total = 0.0
            for _ in 0..<200 {
                let x = Tensor.randn([16, 16], dtype: .float64, generator: g)
                total += x.matmul(x.mT).diagonal().sum().item(Double.self) // = sum of squares
            }
            // Errors are per thread: a failure here must not leak into the other thread.
            let message = (try? withTorchErrors { _ = Tensor.ones([2]).view([5]) }) == nil ? "failed" : nil
            return (total, message)
        }
        func reference(_ seed: UInt64) -> Double {
            let g = Generator(seed: seed)
            var total = 0.0
            for _ in 0..<200 { total += Tensor.randn([16, 16], dtype: .float64, generator: g).pow(2).sum().item(Double.self) }
            return total
        }
        async let first = Task.detached { work(1) }.value
        async let second = Task.detached { work(2) }.value
        let (r1, r2) = await (first, second)
        #expect(Swift.abs(r1.0 - reference(1)) < 1e-6 * r1.0)
        #expect(Swift.abs(r2.0 - reference(2)) < 1e-6 * r2.0)
        #expect(r1.1 == "failed" && r2.1 == "failed")
    }
}
