import CTorch

/// A random-number generator. Pass one to random ops for a reproducible stream independent
/// of the global one (data augmentation per worker, initialisation); save its `state` to resume exactly.
public final class Generator: @unchecked Sendable {
    let handle: OpaquePointer

    private init(handle: OpaquePointer) { self.handle = handle }

    /// A new CPU (or CUDA) generator seeded with `seed`.
    public convenience init(seed: UInt64, device: Device = .cpu) {
        var out: OpaquePointer?
        guard ct_generator_new(seed, device.bridged, &out) == 0, let out else {
            fatalError("cannot create a generator on \(device): \(String(cString: ct_last_error()))")
        }
        self.init(handle: out)
    }

    /// libtorch's default generator for `device` (what random ops use without a generator).
    public static func `default`(device: Device = .cpu) -> Generator {
        var out: OpaquePointer?
        guard ct_generator_default(device.bridged, &out) == 0, let out else {
            fatalError("cannot get the default generator of \(device): \(String(cString: ct_last_error()))")
        }
        return Generator(handle: out)
    }

    deinit { ct_generator_free(handle) }

    /// The seed last set; setting it restarts the stream.
    public var seed: UInt64 {
        get { query("generator_seed", nil, UInt64(0)) { ct_generator_seed(handle, $0) } }
        set { if ct_generator_set_seed(handle, newValue) != 0 { reportFailure("generator_set_seed", nil) { [] } } }
    }

    /// The complete internal state as a uint8 tensor, for checkpoints.
    public var state: Tensor {
        makeTensor(.generatorGetState, nil, inputs: []) { ct_generator_get_state(handle, $0) }
    }

    /// Restores a state from `state`; throws when it is not a state of this kind of generator.
    public func setState(_ state: Tensor) throws {
        try withTorchErrors {
            if ct_generator_set_state(handle, state.handle) != 0 { reportFailure("generator_set_state", nil) { [state] } }
        }
    }
}
