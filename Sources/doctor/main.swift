import Torch
print("libtorch \(Torch.version), threads \(Torch.threadCount), cuda \(Torch.isCUDAAvailable)")
let a = Tensor([1.0, 2.0, 3.0] as [Float]).requiringGrad()
let y = (a * a).sum()
y.backward()
print(y.item(Float.self), a.grad!.toArray(Float.self))
let r = OpRecorder()
r.record { _ = F.linear(a.reshape(1, 3), weight: Tensor.ones([2, 3])).relu() }
print(r.summary)
do { try withTorchErrors { _ = Tensor.ones([2, 3]).matmul(Tensor.ones([4, 5])) } } catch { print("caught:", error) }
print(Tensor.arange(0, 12).reshape(3, 4)[1..., .all, ])
