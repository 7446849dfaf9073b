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
            fatalError("cannot create a generator on \(device): \(Self.failureReason(device))")
        }
        self.init(handle: out)
    }

    /// libtorch's default generator for `device` (what random ops use without a generator).
    public static func `default`(device: Device = .cpu) -> Generator {
        var out: OpaquePointer?
        guard ct_generator_default(device.bridged, &out) == 0, let out else {
            fatalError("cannot get the default generator of \(device): \(Self.failureReason(device))")
        }
        return Generator(handle: out)
    }

    /// libtorch's message, unless the device is one this build or machine cannot use: then why
    /// (libtorch's own words for a CPU-only build are a paragraph about ATen_cuda).
    private static func failureReason(_ device: Device) -> String {
        let message = String(cString: ct_last_error())
        do { _ = try device.validated() } catch { return "\(error)" }
        return message
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

/// The default generators' states, for checkpoints that must resume a GPU run exactly.
extension Torch {
    /// The state of libtorch's default generator on each of `devices` (the global stream that
    /// dropout and initialisation draw from), keyed by the device's name: "cpu", "cuda:0".
    /// Throws a `DeviceError` for a device this build or machine cannot use.
    public static func randomStates(devices: [Device]) throws -> [String: Tensor] {
        var states: [String: Tensor] = [:]
        for device in devices { states[device.description] = try Generator.default(device: device.validated()).state }
        return states
    }

    /// Restores what `randomStates` returned. Throws a `DeviceError` for a key that is not a
    /// device name or names a device this machine lacks, a `TorchError` for a state that does not
    /// fit the generator; nothing is restored unless every device is usable.
    public static func setRandomStates(_ states: [String: Tensor]) throws {
        let devices = try states.keys.sorted().map { (try Device.parse($0).validated(), states[$0]!) }
        for (device, state) in devices { try Generator.default(device: device).setState(state) }
    }
}
