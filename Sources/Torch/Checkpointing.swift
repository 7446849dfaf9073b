import CTorch
#if canImport(Glibc)
import Glibc
#endif

// Gradient checkpointing through the bridge's custom autograd function (checkpoint.cpp): the
// block is a Swift closure reached through a C function pointer and a retained context.

extension Autograd {
    /// `block(inputs)`, keeping only `inputs` for backward instead of every activation inside the
    /// block; backward runs the block again (same dropout masks, same autocast) and
    /// backpropagates through it — torch.utils.checkpoint with `use_reentrant=True`.
    ///
    /// - `parameters`: the block's trainable parameters; they get their `.grad` from the
    ///   recomputation. Any other tensor the block reads must be a constant (a mask, not something
    ///   that needs a gradient).
    /// - The block runs twice, so it must compute the same thing both times from its inputs and
    ///   the random state; the backward pass may run it on another thread (CUDA).
    /// - A failure inside the block (a libtorch error or a thrown Swift error) in forward fails
    ///   this op; in backward it fails `backward()`. Either is a `TorchError` inside
    ///   `withTorchErrors`, as for any op (an out-of-memory keeps its kind).
    /// - Incompatible with gradients requested for chosen inputs only (the nested backward fills
    ///   `.grad`): call `backward()` on the loss.
    public static func checkpoint(_ inputs: [Tensor], parameters: [Tensor], file: StaticString = #fileID, line: UInt = #line,
                                  _ block: @escaping ([Tensor]) throws -> Tensor) -> Tensor {
        // A recorder (ONNX export) needs the block's ops on the caller's own tensors.
        if OpRecorder.isAnyActive, ThreadState.current.recorder != nil {
            do { return try block(inputs) } catch {
                reportFailure("checkpoint", CallSite(file: file, line: line), message: "\(error)") { inputs }
                return .undefined()
            }
        }
        let context = Unmanaged.passRetained(CheckpointBlock(block)).toOpaque()
        let handles = inputs.map { Optional($0.handle) }, parameterHandles = parameters.map { Optional($0.handle) }
        var out: OpaquePointer?
        // The bridge owns the context from the call on, failure or not.
        let status = withExtendedLifetime((inputs, parameters)) {
            ct_checkpoint(runCheckpointBlock, context, releaseCheckpointBlock, handles, Int64(handles.count),
                          parameterHandles, Int64(parameterHandles.count), &out)
        }
        guard status == 0, let out else {
            reportFailure("checkpoint", CallSite(file: file, line: line)) { inputs }
            return .undefined()
        }
        return Tensor(owning: out)
    }
}

/// The closure a checkpoint runs, kept alive by the autograd node until it is freed.
private final class CheckpointBlock {
    let body: ([Tensor]) throws -> Tensor
    init(_ body: @escaping ([Tensor]) throws -> Tensor) { self.body = body }
}

/// Runs the block inside its own error scope and reports any failure as a status and a message:
/// neither Swift errors nor libtorch failures leave through the C++ frames that called it.
private let runCheckpointBlock: ct_checkpoint_block = { context, inputs, count, out, message in
    let block = Unmanaged<CheckpointBlock>.fromOpaque(context!).takeUnretainedValue()
    let tensors = (0..<Int(count)).map { Tensor(owning: inputs![$0]!) }
    do {
        let result = try withTorchErrors { try block.body(tensors) }
        var handle: OpaquePointer?
        guard ct_shallow_clone(result.handle, &handle) == 0 else {
            message!.pointee = strdup(String(cString: ct_last_error()))
            return ct_status(CT_ERROR_GENERAL.rawValue)
        }
        out!.pointee = handle
        return 0
    } catch {
        message!.pointee = strdup("in the checkpointed block: \(error)")
        let outOfMemory = (error as? TorchError)?.isOutOfMemory == true
        return ct_status((outOfMemory ? CT_ERROR_OUT_OF_MEMORY : CT_ERROR_GENERAL).rawValue)
    }
}

private let releaseCheckpointBlock: @convention(c) (UnsafeMutableRawPointer?) -> Void = { context in
    Unmanaged<CheckpointBlock>.fromOpaque(context!).release()
}
