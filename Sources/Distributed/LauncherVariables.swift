import Foundation

/// Reads the variables torchrun (or a PyTorchJob) and Slurm set, refusing half-set or
/// malformed ones with what to set. Ranges are checked afterwards by `validated()`.
struct EnvironmentReader {
    let environment: [String: String]

    init(_ environment: [String: String]) { self.environment = environment }

    /// RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT, or nil when neither RANK nor WORLD_SIZE is set.
    func torchrun() throws -> DistributedEnvironment? {
        let rank = try integer("RANK"), worldSize = try integer("WORLD_SIZE")
        guard rank != nil || worldSize != nil else {
            if environment["LOCAL_RANK"] != nil {
                throw refuse("torchrun", "LOCAL_RANK is set but RANK and WORLD_SIZE are not",
                             "start the processes with torchrun, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT for each")
            }
            return nil
        }
        let elastic = environment.keys.contains { $0.hasPrefix("TORCHELASTIC_") } || environment["LOCAL_RANK"] != nil
        let source = elastic ? "torchrun" : "env"
        guard let rank else {
            throw refuse(source, "WORLD_SIZE=\(worldSize!) is set but RANK is not", "set RANK to this process's rank, 0 to \(worldSize! - 1)")
        }
        guard let worldSize else {
            throw refuse(source, "RANK=\(rank) is set but WORLD_SIZE is not", "set WORLD_SIZE to the total number of processes")
        }
        guard let address = nonEmpty("MASTER_ADDR") else {
            throw refuse(source, "WORLD_SIZE=\(worldSize) is set but MASTER_ADDR is not",
                         "set MASTER_ADDR to the address of the machine that runs rank 0 (127.0.0.1 when every rank runs here)")
        }
        guard let port = try integer("MASTER_PORT") else {
            throw refuse(source, "WORLD_SIZE=\(worldSize) is set but MASTER_PORT is not",
                         "set MASTER_PORT to a free TCP port (e.g. 29500), the same on every rank")
        }
        let localRank = try integer("LOCAL_RANK")
        let localWorldSize = try integer("LOCAL_WORLD_SIZE")
        if localRank != nil && localWorldSize == nil && worldSize > 1 {
            throw refuse(source, "LOCAL_RANK=\(localRank!) is set but LOCAL_WORLD_SIZE is not",
                         "set LOCAL_WORLD_SIZE to the number of processes on this machine (torchrun sets both)")
        }
        return DistributedEnvironment(
            rank: rank, worldSize: worldSize, localRank: localRank, localWorldSize: localWorldSize,
            masterAddress: address, masterPort: port,
            useAgentStore: ["true", "1"].contains(environment["TORCHELASTIC_USE_AGENT_STORE"]?.lowercased() ?? ""),
            restartCount: try integer("TORCHELASTIC_RESTART_COUNT") ?? 0, source: source)
    }

    /// SLURM_PROCID / SLURM_NTASKS and friends, or nil outside an srun step or for a single task.
    func slurm() throws -> DistributedEnvironment? {
        guard let rank = try integer("SLURM_PROCID"), let tasks = try integer("SLURM_NTASKS"), tasks > 1 else { return nil }
        guard let localRank = try integer("SLURM_LOCALID") else {
            throw refuse("slurm", "SLURM_PROCID and SLURM_NTASKS=\(tasks) are set but SLURM_LOCALID is not",
                         "start the tasks with srun (it sets SLURM_LOCALID), or use torchrun's variables")
        }
        let localWorldSize = try integer("SLURM_NTASKS_PER_NODE") ?? tasksPerNode()
        let jobID = Int(environment["SLURM_JOB_ID"] ?? "")
        guard let address = nonEmpty("MASTER_ADDR") ?? nonEmpty("SLURM_LAUNCH_NODE_IPADDR") else {
            throw refuse("slurm", "neither MASTER_ADDR nor SLURM_LAUNCH_NODE_IPADDR is set",
                         "export MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1) before srun")
        }
        let port = try integer("MASTER_PORT") ?? DistributedEnvironment.slurmDefaultPort(jobID: jobID)
        return DistributedEnvironment(rank: rank, worldSize: tasks, localRank: localRank, localWorldSize: localWorldSize ?? 1,
                                      masterAddress: address, masterPort: port, source: "slurm")
    }

    /// This node's entry of SLURM_TASKS_PER_NODE ("2(x3),1": three nodes of 2, then one of 1).
    private func tasksPerNode() throws -> Int? {
        guard let text = nonEmpty("SLURM_TASKS_PER_NODE") else { return nil }
        var counts: [Int] = []
        for part in text.split(separator: ",") {
            let pieces = part.split(separator: "(")
            guard let count = Int(pieces[0]) else { throw malformedTaskList(text) }
            var repeats = 1
            if pieces.count == 2 {
                guard pieces[1].hasPrefix("x"), pieces[1].hasSuffix(")"), let n = Int(pieces[1].dropFirst().dropLast()) else {
                    throw malformedTaskList(text)
                }
                repeats = n
            }
            counts += Array(repeating: count, count: repeats)
        }
        let node = try integer("SLURM_NODEID") ?? 0
        guard counts.indices.contains(node) else {
            throw refuse("slurm", "SLURM_NODEID=\(node) has no entry in SLURM_TASKS_PER_NODE=\(text)", "set SLURM_NTASKS_PER_NODE")
        }
        return counts[node]
    }

    private func malformedTaskList(_ text: String) -> DistributedError {
        refuse("slurm", "SLURM_TASKS_PER_NODE=\"\(text)\" is not a list of task counts like 2(x3),1",
               "set SLURM_NTASKS_PER_NODE to the number of tasks on this node")
    }

    private func nonEmpty(_ name: String) -> String? {
        guard let value = environment[name]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        return value
    }

    /// The variable as an integer; nil when unset; a refusal when set to anything else.
    private func integer(_ name: String) throws -> Int? {
        guard let text = environment[name] else { return nil }
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else { throw malformed(name, text) }
        return value
    }

    private func malformed(_ name: String, _ text: String) -> DistributedError {
        let source = name.hasPrefix("SLURM_") ? "slurm" : "torchrun"
        return refuse(source, "\(name)=\"\(text)\" is not an integer", "set \(name) to a whole number, or unset it")
    }

    private func refuse(_ source: String, _ message: String, _ advice: String) -> DistributedError {
        DistributedError(kind: .configuration, rank: nil, worldSize: nil, address: nil,
                         operation: "reading the \(source) variables", message: message, advice: advice)
    }
}
