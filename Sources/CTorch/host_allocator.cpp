// The CPU allocator libtorch uses for every new CPU tensor, replaced by one whose policy lives in
// Swift (Torch/HostAllocator.swift): this file only forwards allocate and free to two C
// callbacks. c10's default allocator is posix_memalign/free, and glibc keeps freed heap
// mapped: between a step's many large short-lived tensors the process's peak RSS grows far
// beyond what is ever live (what gradient checkpointing saves is then mostly not returned).
#include "bridge.h"
#include <c10/core/CPUAllocator.h>

namespace {

ct_host_allocate g_allocate = nullptr;
ct_host_free g_free = nullptr;

void release(void *pointer) { g_free(pointer); }

struct CallbackAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t bytes) override {
    void *data = bytes == 0 ? nullptr : g_allocate(bytes);
    if (bytes != 0 && data == nullptr) {
      TORCH_CHECK_WITH(OutOfMemoryError, false, "the caching host allocator: can't allocate memory: you tried to allocate ", bytes, " bytes.");
    }
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void *dest, const void *src, std::size_t count) const override { default_copy_data(dest, src, count); }
};

CallbackAllocator g_allocator;

}  // namespace

extern "C" {

ct_status ct_set_host_allocator(ct_host_allocate allocate, ct_host_free free) {
  CT_TRY(
    TORCH_CHECK((allocate == nullptr) == (free == nullptr), "give both callbacks, or neither");
    TORCH_CHECK(g_allocate == nullptr || allocate == nullptr || (allocate == g_allocate && free == g_free),
                "another host allocator is installed");
    if (allocate != nullptr) {
      g_allocate = allocate;
      g_free = free;
    }
    // Priority 1, above the default's 0 (so that it can be set back too). Tensors made before
    // keep their own deleters, and the callbacks stay valid after a switch back to the default,
    // so switching while tensors live is safe.
    c10::SetCPUAllocator(allocate != nullptr ? static_cast<c10::Allocator *>(&g_allocator) : c10::GetDefaultCPUAllocator(),
                         /*priority=*/1))
}

}  // extern "C"
