import Distributed
import Foundation
import Torch
import Training

/// The c10d process group is what data-parallel training runs on.
extension ProcessGroup: DataParallelGroup {
    public func allReduce(_ tensors: [Tensor], average: Bool) throws { try allReduce(tensors, op: average ? .average : .sum) }
    public var localRank: Int { environment.localRank }
}

/// The processes this one trains with: from torchrun's, Slurm's or the launcher's environment;
/// nil when it trains alone. The group runs on the recipe's device (Gloo on the CPU, NCCL on
/// CUDA, where `cuda` or `auto` means this process's own GPU, `cuda:LOCAL_RANK`).
public func dataParallelGroup(_ recipe: Recipe, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ProcessGroup? {
    guard let found = try DistributedEnvironment.detect(environment), found.worldSize > 1 else { return nil }
    let device = try RunBuilder.device(of: recipe, localRank: found.localRank)
    let timeout = environment["CLIPTUNE_DIST_TIMEOUT_S"].flatMap(Int.init).map { Duration.seconds($0) } ?? .seconds(300)
    return try ProcessGroup(found, device: device, timeout: timeout)
}
