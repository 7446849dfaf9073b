// Shared helpers of the bridge's .cpp files (C++ only; never seen by Swift).
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <exception>
#include <new>
#include <string>
#include <vector>
#include "ctorch.h"

namespace ctorch {

/// Records a failure for ct_last_error / ct_last_error_kind and returns its status (the kind).
ct_status fail(const char *message, ct_error_kind kind);
/// Same for libtorch's own errors; the CPU allocator reports running out of memory as a plain
/// c10::Error, recognised by its message, so that it counts as out of memory like CUDA's.
ct_status fail(const c10::Error &e);

inline at::Tensor &T(ct_tensor h) {
  if (h == nullptr) throw std::invalid_argument("null tensor handle");
  return *reinterpret_cast<at::Tensor *>(h);
}
/// An optional tensor argument: NULL means absent.
inline std::optional<at::Tensor> opt(ct_tensor h) {
  if (h == nullptr) return std::nullopt;
  return *reinterpret_cast<at::Tensor *>(h);
}
inline ct_tensor wrap(at::Tensor t) { return reinterpret_cast<ct_tensor>(new at::Tensor(std::move(t))); }

at::ScalarType dtype(int32_t d);
int32_t dtype_code(at::ScalarType t);
at::Device device(ct_device d);
at::Scalar scalar(ct_scalar s);
inline at::TensorOptions options(int32_t d, ct_device dev) { return at::TensorOptions().dtype(dtype(d)).device(device(dev)); }
inline at::IntArrayRef ints(const int64_t *p, int64_t n) { return at::IntArrayRef(p, static_cast<size_t>(n)); }
inline std::optional<at::IntArrayRef> opt_dims(const int64_t *p, int64_t n) {
  if (p == nullptr || n == 0) return std::nullopt;
  return ints(p, n);
}
std::optional<at::Generator> generator(ct_generator g);
/// A list argument: `n` handles.
inline std::vector<at::Tensor> tensors(const ct_tensor *ts, int64_t n) {
  std::vector<at::Tensor> v;
  v.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) v.push_back(T(ts[i]));
  return v;
}
inline ct_tensor_list wrap_list(std::vector<at::Tensor> v) {
  return reinterpret_cast<ct_tensor_list>(new std::vector<at::Tensor>(std::move(v)));
}
int64_t reduction(int32_t r);

}  // namespace ctorch

// Every bridge function body is one CT_TRY: libtorch's exceptions stop here.
// OutOfMemoryError derives from c10::Error, so it is caught first.
#define CT_TRY(...)                                                                    \
  try {                                                                                \
    __VA_ARGS__;                                                                       \
    return 0;                                                                          \
  } catch (const c10::OutOfMemoryError &e) {                                           \
    return ctorch::fail(e.what_without_backtrace(), CT_ERROR_OUT_OF_MEMORY);           \
  } catch (const c10::Error &e) {                                                      \
    return ctorch::fail(e);                                                            \
  } catch (const std::bad_alloc &e) {                                                  \
    return ctorch::fail(e.what(), CT_ERROR_OUT_OF_MEMORY);                             \
  } catch (const std::exception &e) {                                                  \
    return ctorch::fail(e.what(), CT_ERROR_GENERAL);                                   \
  } catch (...) {                                                                      \
    return ctorch::fail("unknown C++ exception inside libtorch", CT_ERROR_GENERAL);    \
  }

using ctorch::T;
using ctorch::wrap;
