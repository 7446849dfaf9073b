import CTorch

/// Page-locked (pinned) host memory: the CUDA driver copies it to the GPU without staging it
/// first, and only from pinned memory can `to(.cuda(i), nonBlocking: true)` overlap with compute.
/// Pinning is not recorded by `OpRecorder`: it changes where bytes live, not what a model computes.
extension Tensor {
    /// Whether the tensor lives in pinned host memory.
    public var isPinned: Bool { query("is_pinned", nil, false, inputs: [self]) { ct_is_pinned(handle, $0) } }

    /// A copy in pinned memory (`self` when already pinned). Throws where pinning is impossible:
    /// a build without CUDA, a machine without a GPU, a tensor that is not on the CPU.
    public func pinnedMemory(file: StaticString = #fileID, line: UInt = #line) throws -> Tensor {
        try withTorchErrors { pinned(CallSite(file: file, line: line)) }
    }

    /// For batches about to go to `device`: a pinned copy when `device` is a GPU and the tensor is
    /// still on the CPU, `self` otherwise, so one loader path serves CPU and GPU training.
    /// Failing to pin for a GPU (out of pinned memory, say) is reported like a failed op.
    public func pinnedIfUseful(for device: Device, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        guard case .cuda = device, self.device == .cpu, !isPinned else { return self }
        return pinned(CallSite(file: file, line: line))
    }

    private func pinned(_ site: CallSite) -> Tensor {
        if isPinned { return self }
        var out: OpaquePointer?
        guard ct_pin_memory(handle, &out) == 0, let out else {
            reportFailure("pin_memory", site) { [self] }
            return .undefined()
        }
        return Tensor(owning: out)
    }
}
