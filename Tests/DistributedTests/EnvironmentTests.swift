// DistributedEnvironment.detect: what each launcher sets, and each inconsistent setting refused
// with the variable's name and what to set.
import Testing
import Distributed

struct EnvironmentTests {
    private func refusal(_ environment: [String: String]) -> DistributedError? {
        do {
            _ = try DistributedEnvironment.detect(environment)
            return nil
        } catch {
            return error as? DistributedError
        }
    }

    @Test func nothingSetIsOneProcess() throws {
        #expect(try DistributedEnvironment.detect([:]) == nil)
        #expect(try DistributedEnvironment.detect(["MASTER_ADDR": "10.0.0.1", "PATH": "/bin"]) == nil)
        #expect(try DistributedEnvironment.detect(["SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0"]) == nil)
    }

    @Test func torchrun() throws {
        let detected = try #require(try DistributedEnvironment.detect([
            "RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "node-0",
            "MASTER_PORT": "29400", "TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RESTART_COUNT": "2",
            "TORCHELASTIC_RUN_ID": "job", "GLOO_SOCKET_IFNAME": "eth0",
        ]))
        #expect(detected == DistributedEnvironment(rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, masterAddress: "node-0",
                                                   masterPort: 29400, useAgentStore: true, restartCount: 2, socketInterface: "eth0",
                                                   source: "torchrun"))
        #expect(detected.storeAddress == "node-0:29400")
        #expect(!detected.isLoopback)
    }

    @Test func pyTorchJobSetsNoLocalRanks() throws {
        // Kubeflow's PyTorchJob: one process per pod, no LOCAL_* and no agent store.
        let detected = try #require(try DistributedEnvironment.detect(
            ["RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "job-master-0", "MASTER_PORT": "23456"]))
        #expect(detected.rank == 1 && detected.worldSize == 2)
        #expect(detected.localRank == 1 && detected.localWorldSize == 2)
        #expect(!detected.useAgentStore)
        #expect(detected.source == "env")
    }

    @Test func slurm() throws {
        let detected = try #require(try DistributedEnvironment.detect([
            "SLURM_PROCID": "5", "SLURM_NTASKS": "7", "SLURM_LOCALID": "0", "SLURM_TASKS_PER_NODE": "2(x3),1",
            "SLURM_NODEID": "3", "SLURM_LAUNCH_NODE_IPADDR": "10.1.2.3", "SLURM_JOB_ID": "123456",
        ]))
        #expect(detected == DistributedEnvironment(rank: 5, worldSize: 7, localRank: 0, localWorldSize: 1, masterAddress: "10.1.2.3",
                                                   masterPort: 29500 + 456, source: "slurm"))
        // MASTER_ADDR / MASTER_PORT win over what is derived; SLURM_NTASKS_PER_NODE over SLURM_TASKS_PER_NODE.
        let explicit = try #require(try DistributedEnvironment.detect([
            "SLURM_PROCID": "1", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "2",
            "SLURM_TASKS_PER_NODE": "garbage", "MASTER_ADDR": "head", "MASTER_PORT": "31000", "SLURM_LAUNCH_NODE_IPADDR": "10.1.2.3",
        ]))
        #expect(explicit.masterAddress == "head" && explicit.masterPort == 31000 && explicit.localWorldSize == 2)
        #expect(DistributedEnvironment.slurmDefaultPort(jobID: nil) == 29500)
    }

    @Test func torchrunWinsOverSlurm() throws {
        // torchrun started inside an srun step: its variables describe the processes.
        let detected = try #require(try DistributedEnvironment.detect([
            "RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
            "SLURM_PROCID": "0", "SLURM_NTASKS": "1",
        ]))
        #expect(detected.source == "env" && detected.worldSize == 2)
    }

    @Test func explicitSettingsAreChecked() throws {
        let environment = DistributedEnvironment(rank: 0, worldSize: 2, masterPort: 29500)
        #expect(try environment.validated() == environment)
        #expect(environment.source == "explicit" && environment.isLoopback && environment.localWorldSize == 2)
        let bad = DistributedEnvironment(rank: 2, worldSize: 2, masterPort: 29500)
        #expect { try bad.validated() } throws: { "\($0)".contains("rank=2 is not below worldSize=2") }
        #expect(DistributedEnvironment(rank: 0, worldSize: 1, masterAddress: "::1", masterPort: 1).storeAddress == "[::1]:1")
    }

    @Test(arguments: [
        // (variables, what the message must say)
        (["WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "29500"], "WORLD_SIZE=2 is set but MASTER_ADDR is not"),
        (["WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "h"], "MASTER_PORT is not"),
        (["WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"], "set RANK to this process's rank, 0 to 1"),
        (["RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"], "WORLD_SIZE is not"),
        (["RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"], "RANK=2 is not below WORLD_SIZE=2"),
        (["RANK": "-1", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"], "RANK=-1 is negative"),
        (["RANK": "0", "WORLD_SIZE": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"], "WORLD_SIZE=0 is not a number of processes"),
        (["RANK": "one", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"], "RANK=\"one\" is not an integer"),
        (["RANK": "0", "WORLD_SIZE": "2.5", "MASTER_ADDR": "h", "MASTER_PORT": "1"], "WORLD_SIZE=\"2.5\" is not an integer"),
        (["RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "http"], "MASTER_PORT=\"http\" is not an integer"),
        (["RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "70000"], "MASTER_PORT=70000 is not a TCP port"),
        (["RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": " ", "MASTER_PORT": "1"], "MASTER_ADDR is not"),
        (["RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"],
         "LOCAL_RANK=2 is not below LOCAL_WORLD_SIZE=2"),
        (["RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"], "LOCAL_WORLD_SIZE is not"),
        (["LOCAL_RANK": "0"], "LOCAL_RANK is set but RANK and WORLD_SIZE are not"),
        (["SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0"], "neither MASTER_ADDR nor SLURM_LAUNCH_NODE_IPADDR is set"),
        (["SLURM_PROCID": "0", "SLURM_NTASKS": "2", "MASTER_ADDR": "h"], "SLURM_LOCALID is not"),
        (["SLURM_PROCID": "x", "SLURM_NTASKS": "2"], "SLURM_PROCID=\"x\" is not an integer"),
        (["SLURM_PROCID": "3", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0", "MASTER_ADDR": "h"], "SLURM_PROCID=3 is not below SLURM_NTASKS=2"),
        (["SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0", "MASTER_ADDR": "h", "SLURM_TASKS_PER_NODE": "2(y2)"],
         "SLURM_TASKS_PER_NODE=\"2(y2)\" is not a list of task counts"),
    ])
    func inconsistentSettingsAreRefusedWithWhatToSet(variables: [String: String], expected: String) throws {
        let error = try #require(refusal(variables), "\(variables) was accepted")
        #expect(error.kind == .configuration)
        #expect(error.description.contains(expected), "\(error)")
        #expect(!error.advice.isEmpty)
    }
}
