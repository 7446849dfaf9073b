import Foundation
import NN
import Torch

/// What data-parallel training asks of the processes it runs on (libtorch's c10d process group,
/// `Distributed.ProcessGroup`, in real runs). Every call is a collective: each process makes the
/// same calls in the same order, and a failure (a dead peer, a timeout) throws on each.
public protocol DataParallelGroup: AnyObject {
    var rank: Int { get }
    var worldSize: Int { get }
    /// Its number among the processes on its machine (its GPU, under torchrun).
    var localRank: Int { get }
    /// Sums (or averages) `tensors` across processes, in place.
    func allReduce(_ tensors: [Tensor], average: Bool) throws
    /// Every process's `tensor` (same shape on each), in rank order.
    func allGather(_ tensor: Tensor) throws -> [Tensor]
    /// Rank `root`'s values into `tensors`, in place.
    func broadcast(_ tensors: [Tensor], from root: Int) throws
    /// Rank `root`'s bytes, on every process.
    func broadcast(bytes: [UInt8], from root: Int) throws -> [UInt8]
    /// Whether `flag` is true on any process.
    func anyRank(_ flag: Bool) throws -> Bool
}

extension DataParallelGroup {
    /// Every process's rows of `tensor` ([n, ...], n may differ between processes, 0 included),
    /// in rank order: the counts are gathered first and shorter tensors padded for the gather.
    func allGatherRows(_ tensor: Tensor) throws -> [Tensor] {
        let counts = try allGather(Tensor([Int64(tensor.size(0))], shape: [1]).on(tensor.device)).map { Int($0.item(Int64.self)) }
        let longest = counts.max() ?? 0
        var padded = tensor
        if tensor.size(0) < longest {
            var shape = tensor.shape
            shape[0] = longest - tensor.size(0)
            padded = Tensor.cat([tensor, Tensor.zeros(shape, dtype: tensor.dtype).on(tensor.device)])
        }
        return try zip(allGather(padded.contiguous()), counts).map { $0.narrow(dim: 0, start: 0, length: $1) }
    }

    /// Averages the gradients of `parameters` across processes, as DistributedDataParallel does:
    /// flattened into buckets of about `bucketBytes` (one collective each, not one per tensor).
    /// A parameter without a gradient on this process counts as zeros.
    public func averageGradients(_ parameters: [Tensor], bucketBytes: Int = 25 << 20) throws {
        var bucket: [Tensor] = [], bytes = 0
        func flush() throws {
            guard !bucket.isEmpty else { return }
            let grads = bucket.map { p in p.grad ?? Tensor.zeros(p.shape, dtype: p.dtype).on(p.device) }
            let flat = Tensor.cat(grads.map { $0.reshape([-1]) })
            try allReduce([flat], average: true)
            var offset = 0
            withNoGrad {
                for (parameter, grad) in zip(bucket, grads) {
                    let piece = flat.narrow(dim: 0, start: offset, length: grad.count).view(grad.shape)
                    if parameter.grad == nil { parameter.grad = piece.clone() } else { parameter.grad!.copy_(piece) }
                    offset += grad.count
                }
            }
            bucket.removeAll()
            bytes = 0
        }
        for parameter in parameters {
            bucket.append(parameter)
            bytes += parameter.count * parameter.dtype.byteSize
            if bytes >= bucketBytes { try flush() }
        }
        try flush()
    }

    /// Rank 0's values of `module`'s parameters and buffers on every process.
    func broadcastState(_ module: Module) throws {
        try broadcast(module.stateDict().map(\.tensor), from: 0)
    }
}
