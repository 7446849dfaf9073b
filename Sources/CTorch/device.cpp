// Devices: CUDA facts, synchronisation, pinned memory, allocator counters and the process-wide
// numeric switches (TF32, determinism).
//
// Nothing here includes a CUDA header: every call goes through libtorch_cpu, which reaches CUDA
// through the hooks and allocator that libtorch_cuda registers when it is linked. So the file
// compiles the same in both builds; CTORCH_WITH_CUDA only turns libtorch's messages for a
// missing libtorch_cuda ("Allocator for cuda is not set", "No CUDA GPUs are available") into
// one that says what to do.
#include "bridge.h"
#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <torch/cuda.h>

namespace {
void require_cuda_build(const char *what) {
#ifndef CTORCH_WITH_CUDA
  throw std::runtime_error(std::string(what) +
                           " needs CUDA, but this build does not link libtorch_cuda; "
                           "run Scripts/bootstrap --cuda and rebuild");
#else
  (void)what;
#endif
}

c10::DeviceIndex cuda_index(int64_t index) {
  if (index < 0 || index >= at::detail::getCUDAHooks().deviceCount())
    throw std::invalid_argument("cuda:" + std::to_string(index) + " does not exist: libtorch sees " +
                                std::to_string(at::detail::getCUDAHooks().deviceCount()) + " CUDA devices");
  return static_cast<c10::DeviceIndex>(index);
}

// The caching allocator libtorch_cuda registers for kCUDA (the one torch.cuda.memory_stats reads).
c10::DeviceAllocator *cuda_allocator(const char *what) {
  require_cuda_build(what);
  return c10::getDeviceAllocator(at::kCUDA);
}
}  // namespace

extern "C" {

bool ct_built_with_cuda(void) {
#ifdef CTORCH_WITH_CUDA
  return true;
#else
  return false;
#endif
}

ct_status ct_cuda_runtime_version(int64_t *out) {
  CT_TRY(require_cuda_build("the CUDA runtime version"); *out = at::detail::getCUDAHooks().versionCUDART())
}

ct_status ct_cuda_synchronize(int64_t index) {
  CT_TRY(require_cuda_build("synchronize"); torch::cuda::synchronize(cuda_index(index)))
}

ct_status ct_pin_memory(ct_tensor t, ct_tensor *out) { CT_TRY(*out = wrap(T(t).pin_memory())) }
ct_status ct_is_pinned(ct_tensor t, bool *out) { CT_TRY(*out = T(t).is_pinned()) }

ct_status ct_cuda_memory_stats(int64_t index, ct_memory_stats *out) {
  CT_TRY(
    auto stats = cuda_allocator("memory statistics")->getDeviceStats(cuda_index(index));
    const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    out->allocated = stats.allocated_bytes[all].current;
    out->peak_allocated = stats.allocated_bytes[all].peak;
    out->reserved = stats.reserved_bytes[all].current;
    out->peak_reserved = stats.reserved_bytes[all].peak)
}
ct_status ct_cuda_reset_peak_memory_stats(int64_t index) {
  CT_TRY(cuda_allocator("memory statistics")->resetPeakStats(cuda_index(index)))
}

// The legacy setters write both the legacy flag and the newer per-backend fp32 precision, so
// the two stay in step (libtorch throws on reading when they were set through different APIs).
// setFloat32MatmulPrecision("high") is not used: it would also switch oneDNN matmuls on the CPU.
ct_status ct_allow_tf32(bool *out) { CT_TRY(*out = at::globalContext().allowTF32CuBLAS()) }
ct_status ct_set_allow_tf32(bool allow) {
  CT_TRY(auto &context = at::globalContext(); context.setAllowTF32CuBLAS(allow); context.setAllowTF32CuDNN(allow))
}

// warn_only = false: an op without a deterministic implementation fails instead of warning.
// cuDNN's autotuner picks kernels by timing, so it is off whenever determinism is asked for.
ct_status ct_deterministic_algorithms(bool *out) { CT_TRY(*out = at::globalContext().deterministicAlgorithms()) }
ct_status ct_set_deterministic_algorithms(bool enabled) {
  CT_TRY(
    auto &context = at::globalContext();
    context.setDeterministicAlgorithms(enabled, /*warn_only=*/false);
    context.setDeterministicCuDNN(enabled);
    if (enabled) context.setBenchmarkCuDNN(false))
}

}  // extern "C"
