// Process groups across real processes on 127.0.0.1: dist-worker started as each rank.
// Serialized: each test starts 2-3 processes on a 2-core machine.
import Foundation
import Testing
import Distributed
import Torch

@Suite(.serialized)
struct ProcessGroupTests {
    @Test func everyCollectiveAgreesAcrossThreeTorchrunRanks() throws {
        let runs = try runRanks(torchrunRanks(3, port: try freePort()), ["check", "--timeout", "60"], limit: 180)
        for run in runs {
            #expect(run.succeeded, "\(run)")
            #expect(run.stdout.contains("rank \(run.rank) of 3: every collective agrees"), "\(run)")
        }
    }

    @Test func everyCollectiveAgreesAcrossTwoSlurmTasks() throws {
        // MASTER_ADDR comes from SLURM_LAUNCH_NODE_IPADDR; the local world size from SLURM_TASKS_PER_NODE.
        let port = try freePort()
        let ranks = (0..<2).map { rank in
            ["SLURM_PROCID": "\(rank)", "SLURM_NTASKS": "2", "SLURM_LOCALID": "\(rank)", "SLURM_TASKS_PER_NODE": "2",
             "SLURM_NODEID": "0", "SLURM_LAUNCH_NODE_IPADDR": "127.0.0.1", "MASTER_PORT": "\(port)"]
        }
        for run in try runRanks(ranks, ["check", "--timeout", "60"], limit: 180) {
            #expect(run.succeeded, "\(run)")
        }
    }

    @Test func aKilledPeerIsNamedByTheOthersWithinTheTimeout() throws {
        let runs = try runRanks(torchrunRanks(3, port: try freePort()), ["die", "2", "--timeout", "20"], limit: 120, awaited: [0, 1])
        #expect(runs[2].signaled, "\(runs[2])")
        for run in runs[0...1] {
            #expect(run.failedCleanly, "\(run)")
            #expect(run.stderr.contains("rank \(run.rank) of 3, store 127.0.0.1:"), "\(run)")
            #expect(run.stderr.contains("allReduce failed"), "\(run)")
            // "rank 2 did not answer", or "ranks 1, 2" should the other survivor notice late.
            #expect(run.stderr.contains("2 did not answer after the failure"), "\(run)")
            #expect(!run.stderr.contains("Timed out"), "the death was noticed, not waited out: \(run)")
        }
    }

    @Test func theDeathOfRankZeroIsToldByTheStoreGoingAway() throws {
        let runs = try runRanks(torchrunRanks(2, port: try freePort()), ["die", "0", "--timeout", "20"], limit: 120, awaited: [1])
        #expect(runs[1].failedCleanly, "\(runs[1])")
        #expect(runs[1].stderr.contains("hosted by rank 0) no longer answers either: rank 0 has most likely died"), "\(runs[1])")
    }

    @Test func aHungPeerTimesOutAndIsNamed() throws {
        // Rank 1 stops (SIGSTOP) with its sockets open: only the timeout can tell. (10 s: the
        // same timeout bounds the start, where three debug builds may be slow on a busy machine.)
        let runs = try runRanks(torchrunRanks(3, port: try freePort()), ["die", "1", "--stop", "--timeout", "10"], limit: 120, awaited: [0, 2])
        for run in [runs[0], runs[2]] {
            #expect(run.failedCleanly, "\(run)")
            #expect(run.stderr.contains("Timed out waiting 10000ms"), "\(run)")
            #expect(run.stderr.contains("rank 1 did not answer after the failure"), "\(run)")
        }
    }

    @Test func anUnreachableStoreFailsWithinTheTimeout() throws {
        let port = try freePort()
        let runs = try runRanks([torchrunRanks(2, port: port)[1]], ["join", "--timeout", "2"], limit: 60)
        #expect(runs[0].failedCleanly, "\(runs[0])")
        #expect(runs[0].stderr.contains("rank 1 of 2, store 127.0.0.1:\(port): connecting to the store failed"), "\(runs[0])")
        #expect(runs[0].stderr.contains("check that rank 0 is running"), "\(runs[0])")
    }

    @Test func ranksThatNeverArriveAreReported() throws {
        let port = try freePort()
        let runs = try runRanks([torchrunRanks(2, port: port)[0]], ["join", "--timeout", "2"], limit: 60)
        #expect(runs[0].failedCleanly, "\(runs[0])")
        #expect(runs[0].stderr.contains("1/2 clients joined"), "\(runs[0])")
        #expect(runs[0].stderr.contains("start all 2 processes"), "\(runs[0])")
    }

    @Test func aPortInUseIsRefusedWithThePort() throws {
        let holder = try ListeningSocket()
        let runs = try runRanks([torchrunRanks(2, port: holder.port)[0]], ["join", "--timeout", "5"], limit: 60)
        #expect(runs[0].failedCleanly, "\(runs[0])")
        #expect(runs[0].stderr.contains("port \(holder.port) is already in use"), "\(runs[0])")
        #expect(runs[0].stderr.contains("choose another MASTER_PORT"), "\(runs[0])")
        withExtendedLifetime(holder) {}
    }

    // MARK: - In this process: a group of one

    @Test func aGroupOfOneRunsEveryCollective() throws {
        let group = try ProcessGroup(DistributedEnvironment(rank: 0, worldSize: 1, masterPort: try freePort()), timeout: .seconds(30))
        let t = Tensor([Float(2), 4])
        try group.allReduce([t], op: .average)
        #expect(t.toArray(Float.self) == [2, 4])
        #expect(try group.allGather(Tensor([Int64(7)])).map { $0.toArray(Int64.self) } == [[7]])
        let output = Tensor.zeros([2])
        try group.reduceScatter([Tensor([Float(1), 2])], into: output)
        #expect(output.toArray(Float.self) == [1, 2])
        try group.barrier()
        #expect(try group.broadcast(bytes: [1, 2, 3]) == [1, 2, 3])
        #expect(try group.anyRank(true))
        #expect(try !group.anyRank(false))

        #expect { try group.allReduce([Tensor([Int64(1)])], op: .average) } throws: {
            ($0 as? DistributedError)?.kind == .unsupported
        }
        #expect { try group.reduceScatter([output, output], into: output) } throws: {
            ($0 as? DistributedError)?.kind == .configuration
        }
        #expect { try group.broadcast([t], from: 1) } throws: { ($0 as? DistributedError)?.kind == .configuration }
    }

    @Test(.enabled(if: !ProcessGroup.hasNCCL, "a CUDA build has NCCL"))
    func ncclIsRefusedWithoutCUDA() throws {
        let environment = DistributedEnvironment(rank: 0, worldSize: 1, masterPort: try freePort())
        #expect { try ProcessGroup(environment, device: .cuda(0)) } throws: { error in
            guard let error = error as? DistributedError else { return false }
            return error.kind == .unsupported && error.advice.contains("Scripts/bootstrap --cuda")
        }
    }
}
