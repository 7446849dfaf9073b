// Shared helpers of the bridge's .cpp files (C++ only; never seen by Swift).
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <exception>
#include <string>
#include <vector>
#include "ctorch.h"

namespace ctorch {

void set_last_error(const char *message);

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
int64_t reduction(int32_t r);

}  // namespace ctorch

// Every bridge function body is one CT_TRY: libtorch's exceptions stop here.
#define CT_TRY(...)                                                   \
  try {                                                               \
    __VA_ARGS__;                                                      \
    return 0;                                                         \
  } catch (const c10::Error &e) {                                     \
    ctorch::set_last_error(e.what_without_backtrace());               \
    return 1;                                                         \
  } catch (const std::exception &e) {                                 \
    ctorch::set_last_error(e.what());                                 \
    return 1;                                                         \
  } catch (...) {                                                     \
    ctorch::set_last_error("unknown C++ exception inside libtorch");  \
    return 1;                                                         \
  }

using ctorch::T;
using ctorch::wrap;
