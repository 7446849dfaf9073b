import Torch

/// `items` in buckets of one device and dtype (those of `tensor(item)`), buckets in order of
/// first appearance and items in order within them, as torch's
/// `_group_tensors_by_device_and_dtype`: a fused or foreach call takes one bucket (CUDA's
/// kernels require it; the CPU's accept a mix, but the grouping is the same everywhere).
func groupedByDeviceAndDType<Item>(_ items: [Item], _ tensor: (Item) -> Tensor) -> [[Item]] {
    var order: [DeviceAndDType] = []
    var buckets: [DeviceAndDType: [Item]] = [:]
    for item in items {
        let t = tensor(item)
        let key = DeviceAndDType(device: t.device, dtype: t.dtype)
        if buckets[key] == nil { order.append(key) }
        buckets[key, default: []].append(item)
    }
    return order.map { buckets[$0]! }
}

private struct DeviceAndDType: Hashable { let device: Device; let dtype: DType }

/// A parameter that takes part in a step: it has a gradient.
struct SteppingParameter {
    let name: String
    let parameter: Tensor
    /// What the fused kernel updates: the parameter itself, or a contiguous copy of a
    /// non-contiguous one (the kernels walk flat memory), copied back by `finish`.
    let target: Tensor
    /// Contiguous, for the same reason.
    let grad: Tensor
}

/// The parameters of `group` that have a gradient (torch skips those whose grad is None), in
/// buckets of one device and dtype.
func steppingBuckets(_ group: ParameterGroup) -> [[SteppingParameter]] {
    let stepping = group.parameters.compactMap { name, parameter in
        parameter.grad.map { grad in
            SteppingParameter(name: name, parameter: parameter, target: parameter.isContiguous ? parameter : parameter.contiguous(),
                              grad: grad.isContiguous ? grad : grad.contiguous())
        }
    }
    return groupedByDeviceAndDType(stepping, \.parameter)
}

extension [SteppingParameter] {
    /// Copies the result of a non-contiguous parameter's step back into it.
    func finish() {
        for p in self where p.target !== p.parameter { p.parameter.copy_(p.target) }
    }
}
