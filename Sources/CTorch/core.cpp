// Errors, lifetime, creation, data transfer, generators, threads and autograd state.
#include "bridge.h"
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <cstring>
#include <torch/headeronly/version.h>
#include <sstream>

namespace ctorch {
static thread_local std::string last_error;
static thread_local ct_error_kind last_error_kind = CT_ERROR_NONE;
ct_status fail(const char *message, ct_error_kind kind) {
  last_error = message ? message : "";
  last_error_kind = kind;
  return kind;
}
ct_status fail(const c10::Error &e) {
  const char *message = e.what_without_backtrace();
  // alloc_cpu.cpp: "DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes".
  bool out_of_memory = std::strstr(message, "DefaultCPUAllocator: can't allocate memory") != nullptr;
  return fail(message, out_of_memory ? CT_ERROR_OUT_OF_MEMORY : CT_ERROR_GENERAL);
}

at::ScalarType dtype(int32_t d) {
  switch (d) {
    case CT_FLOAT32: return at::kFloat;
    case CT_FLOAT64: return at::kDouble;
    case CT_FLOAT16: return at::kHalf;
    case CT_BFLOAT16: return at::kBFloat16;
    case CT_INT64: return at::kLong;
    case CT_INT32: return at::kInt;
    case CT_UINT8: return at::kByte;
    case CT_BOOL: return at::kBool;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(d));
}
int32_t dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return CT_FLOAT32;
    case at::kDouble: return CT_FLOAT64;
    case at::kHalf: return CT_FLOAT16;
    case at::kBFloat16: return CT_BFLOAT16;
    case at::kLong: return CT_INT64;
    case at::kInt: return CT_INT32;
    case at::kByte: return CT_UINT8;
    case at::kBool: return CT_BOOL;
    default: throw std::invalid_argument(std::string("unsupported dtype ") + c10::toString(t));
  }
}
at::Device device(ct_device d) {
  if (d.type == CT_CPU) return at::Device(at::kCPU);
  if (d.type == CT_CUDA) return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(d.index));
  throw std::invalid_argument("unknown device type " + std::to_string(d.type));
}
at::Scalar scalar(ct_scalar s) {
  switch (s.kind) {
    case CT_SCALAR_FLOAT: return at::Scalar(s.f);
    case CT_SCALAR_INT: return at::Scalar(s.i);
    case CT_SCALAR_BOOL: return at::Scalar(s.i != 0);
  }
  throw std::invalid_argument("unknown scalar kind " + std::to_string(s.kind));
}
std::optional<at::Generator> generator(ct_generator g) {
  if (g == nullptr) return std::nullopt;
  return *reinterpret_cast<at::Generator *>(g);
}
int64_t reduction(int32_t r) {
  switch (r) {
    case CT_REDUCTION_NONE: return at::Reduction::None;
    case CT_REDUCTION_MEAN: return at::Reduction::Mean;
    case CT_REDUCTION_SUM: return at::Reduction::Sum;
  }
  throw std::invalid_argument("unknown reduction " + std::to_string(r));
}
}  // namespace ctorch

using namespace ctorch;
static at::Generator &G(ct_generator g) { return *reinterpret_cast<at::Generator *>(g); }

extern "C" {

const char *ct_last_error(void) { return ctorch::last_error.c_str(); }
int32_t ct_last_error_kind(void) { return ctorch::last_error_kind; }
ct_status ct_version(const char **out) { CT_TRY(*out = TORCH_VERSION) }
ct_status ct_cuda_is_available(bool *out) { CT_TRY(*out = at::hasCUDA()) }
ct_status ct_cuda_device_count(int64_t *out) { CT_TRY(*out = at::detail::getCUDAHooks().deviceCount()) }
ct_status ct_set_num_threads(int64_t n) { CT_TRY(at::set_num_threads(static_cast<int>(n))) }
ct_status ct_get_num_threads(int64_t *out) { CT_TRY(*out = at::get_num_threads()) }
ct_status ct_set_num_interop_threads(int64_t n) { CT_TRY(at::set_num_interop_threads(static_cast<int>(n))) }
ct_status ct_manual_seed(uint64_t seed) { CT_TRY(at::manual_seed(seed)) }

void ct_tensor_free(ct_tensor t) { delete reinterpret_cast<at::Tensor *>(t); }
void ct_tensor_list_free(ct_tensor_list l) { delete reinterpret_cast<std::vector<at::Tensor> *>(l); }
ct_status ct_tensor_list_size(ct_tensor_list l, int64_t *out) {
  CT_TRY(*out = static_cast<int64_t>(reinterpret_cast<std::vector<at::Tensor> *>(l)->size()))
}
ct_status ct_tensor_list_get(ct_tensor_list l, int64_t i, ct_tensor *out) {
  CT_TRY(*out = wrap(std::move(reinterpret_cast<std::vector<at::Tensor> *>(l)->at(static_cast<size_t>(i)))))
}
ct_status ct_undefined(ct_tensor *out) { CT_TRY(*out = wrap(at::Tensor())) }
ct_status ct_defined(ct_tensor t, bool *out) { CT_TRY(*out = T(t).defined()) }
ct_status ct_dim(ct_tensor t, int64_t *out) { CT_TRY(*out = T(t).dim()) }
ct_status ct_sizes(ct_tensor t, int64_t *out, int64_t capacity) {
  CT_TRY(auto s = T(t).sizes(); for (int64_t i = 0; i < std::min<int64_t>(capacity, s.size()); i++) out[i] = s[i])
}
ct_status ct_strides(ct_tensor t, int64_t *out, int64_t capacity) {
  CT_TRY(auto s = T(t).strides(); for (int64_t i = 0; i < std::min<int64_t>(capacity, s.size()); i++) out[i] = s[i])
}
ct_status ct_numel(ct_tensor t, int64_t *out) { CT_TRY(*out = T(t).numel()) }
ct_status ct_scalar_type(ct_tensor t, int32_t *out) { CT_TRY(*out = dtype_code(T(t).scalar_type())) }
ct_status ct_device_of(ct_tensor t, ct_device *out) {
  CT_TRY(auto d = T(t).device(); out->type = d.is_cuda() ? CT_CUDA : CT_CPU; out->index = d.has_index() ? d.index() : 0)
}
ct_status ct_is_contiguous(ct_tensor t, bool *out) { CT_TRY(*out = T(t).is_contiguous()) }
ct_status ct_same_storage(ct_tensor a, ct_tensor b, bool *out) { CT_TRY(*out = T(a).is_alias_of(T(b))) }

ct_status ct_from_data(const void *data, size_t nbytes, const int64_t *shape, int64_t ndim, int32_t d, ct_tensor *out) {
  CT_TRY(
    auto t = at::empty(ints(shape, ndim), at::TensorOptions().dtype(dtype(d)));
    if (t.nbytes() != nbytes) throw std::invalid_argument(
        "buffer holds " + std::to_string(nbytes) + " bytes but shape needs " + std::to_string(t.nbytes()));
    if (nbytes > 0) std::memcpy(t.data_ptr(), data, nbytes);
    *out = wrap(std::move(t)))
}
ct_status ct_from_blob(void *data, const int64_t *shape, int64_t ndim, const int64_t *strides, int32_t d,
                       void (*deleter)(void *), void *context, ct_tensor *out) {
  CT_TRY(
    auto del = [deleter, context](void *) { if (deleter) deleter(context); };
    auto opts = at::TensorOptions().dtype(dtype(d));
    *out = wrap(strides ? at::from_blob(data, ints(shape, ndim), ints(strides, ndim), del, opts)
                        : at::from_blob(data, ints(shape, ndim), del, opts)))
}
ct_status ct_empty(const int64_t *shape, int64_t ndim, int32_t d, ct_device dev, ct_tensor *out) {
  CT_TRY(*out = wrap(at::empty(ints(shape, ndim), options(d, dev))))
}
ct_status ct_zeros(const int64_t *shape, int64_t ndim, int32_t d, ct_device dev, ct_tensor *out) {
  CT_TRY(*out = wrap(at::zeros(ints(shape, ndim), options(d, dev))))
}
ct_status ct_ones(const int64_t *shape, int64_t ndim, int32_t d, ct_device dev, ct_tensor *out) {
  CT_TRY(*out = wrap(at::ones(ints(shape, ndim), options(d, dev))))
}
ct_status ct_full(const int64_t *shape, int64_t ndim, ct_scalar v, int32_t d, ct_device dev, ct_tensor *out) {
  CT_TRY(*out = wrap(at::full(ints(shape, ndim), scalar(v), options(d, dev))))
}
ct_status ct_arange(ct_scalar start, ct_scalar end, ct_scalar step, int32_t d, ct_device dev, ct_tensor *out) {
  CT_TRY(*out = wrap(at::arange(scalar(start), scalar(end), scalar(step), options(d, dev))))
}
ct_status ct_linspace(double start, double end, int64_t steps, int32_t d, ct_device dev, ct_tensor *out) {
  CT_TRY(*out = wrap(at::linspace(start, end, steps, options(d, dev))))
}
ct_status ct_eye(int64_t n, int32_t d, ct_device dev, ct_tensor *out) { CT_TRY(*out = wrap(at::eye(n, options(d, dev)))) }
ct_status ct_rand(const int64_t *shape, int64_t ndim, int32_t d, ct_device dev, ct_generator g, ct_tensor *out) {
  CT_TRY(*out = wrap(at::rand(ints(shape, ndim), generator(g), options(d, dev))))
}
ct_status ct_randn(const int64_t *shape, int64_t ndim, int32_t d, ct_device dev, ct_generator g, ct_tensor *out) {
  CT_TRY(*out = wrap(at::randn(ints(shape, ndim), generator(g), options(d, dev))))
}
ct_status ct_randint(int64_t low, int64_t high, const int64_t *shape, int64_t ndim, int32_t d, ct_device dev,
                     ct_generator g, ct_tensor *out) {
  CT_TRY(*out = wrap(at::randint(low, high, ints(shape, ndim), generator(g), options(d, dev))))
}
ct_status ct_randperm(int64_t n, int32_t d, ct_device dev, ct_generator g, ct_tensor *out) {
  CT_TRY(*out = wrap(at::randperm(n, generator(g), options(d, dev))))
}
ct_status ct_bernoulli(ct_tensor p, ct_generator g, ct_tensor *out) { CT_TRY(*out = wrap(at::bernoulli(T(p), generator(g)))) }
ct_status ct_uniform_(ct_tensor t, double from, double to, ct_generator g) { CT_TRY(T(t).uniform_(from, to, generator(g))) }
ct_status ct_normal_(ct_tensor t, double mean, double std, ct_generator g) { CT_TRY(T(t).normal_(mean, std, generator(g))) }

ct_status ct_generator_new(uint64_t seed, ct_device dev, ct_generator *out) {
  CT_TRY(
    if (dev.type != CT_CPU) {
      auto g = at::globalContext().defaultGenerator(device(dev)).clone();
      g.set_current_seed(seed);
      *out = reinterpret_cast<ct_generator>(new at::Generator(std::move(g)));
    } else {
      *out = reinterpret_cast<ct_generator>(new at::Generator(at::make_generator<at::CPUGeneratorImpl>(seed)));
    })
}
ct_status ct_generator_default(ct_device dev, ct_generator *out) {
  CT_TRY(*out = reinterpret_cast<ct_generator>(new at::Generator(at::globalContext().defaultGenerator(device(dev)))))
}
void ct_generator_free(ct_generator g) { delete reinterpret_cast<at::Generator *>(g); }
ct_status ct_generator_set_seed(ct_generator g, uint64_t seed) {
  CT_TRY(std::lock_guard<std::mutex> lock(G(g).mutex()); G(g).set_current_seed(seed))
}
ct_status ct_generator_seed(ct_generator g, uint64_t *out) { CT_TRY(*out = G(g).current_seed()) }
ct_status ct_generator_get_state(ct_generator g, ct_tensor *out) {
  CT_TRY(std::lock_guard<std::mutex> lock(G(g).mutex()); *out = wrap(G(g).get_state()))
}
ct_status ct_generator_set_state(ct_generator g, ct_tensor state) {
  CT_TRY(std::lock_guard<std::mutex> lock(G(g).mutex()); G(g).set_state(T(state)))
}

ct_status ct_copy_to_buffer(ct_tensor t, void *dst, size_t nbytes) {
  CT_TRY(
    auto c = T(t).to(at::kCPU).contiguous();
    if (c.nbytes() != nbytes) throw std::invalid_argument(
        "destination holds " + std::to_string(nbytes) + " bytes but the tensor has " + std::to_string(c.nbytes()));
    if (nbytes > 0) std::memcpy(dst, c.data_ptr(), nbytes))
}
ct_status ct_data_ptr(ct_tensor t, void **out) { CT_TRY(*out = T(t).data_ptr()) }
ct_status ct_item_double(ct_tensor t, double *out) { CT_TRY(*out = T(t).item<double>()) }
ct_status ct_item_int64(ct_tensor t, int64_t *out) { CT_TRY(*out = T(t).item<int64_t>()) }
ct_status ct_to_string(ct_tensor t, char **out) {
  CT_TRY(std::ostringstream s; s << T(t); *out = strdup(s.str().c_str()))
}
void ct_string_free(char *s) { free(s); }

ct_status ct_requires_grad(ct_tensor t, bool *out) { CT_TRY(*out = T(t).requires_grad()) }
ct_status ct_set_requires_grad(ct_tensor t, bool r) { CT_TRY(T(t).requires_grad_(r)) }
ct_status ct_is_leaf(ct_tensor t, bool *out) { CT_TRY(*out = T(t).is_leaf()) }
ct_status ct_retain_grad(ct_tensor t) { CT_TRY(T(t).retain_grad()) }
ct_status ct_backward(ct_tensor t, ct_tensor gradient, bool retain_graph, bool create_graph) {
  CT_TRY(T(t).backward(gradient ? T(gradient) : at::Tensor(), retain_graph, create_graph))
}
ct_status ct_grad(ct_tensor t, ct_tensor *out) {
  CT_TRY(const auto &g = T(t).grad(); *out = g.defined() ? wrap(g) : nullptr)
}
ct_status ct_set_grad(ct_tensor t, ct_tensor grad) {
  CT_TRY(if (grad) T(t).mutable_grad() = T(grad); else T(t).mutable_grad().reset())
}
ct_status ct_grad_mode_enabled(bool *out) { CT_TRY(*out = c10::GradMode::is_enabled()) }
ct_status ct_set_grad_mode(bool enabled) { CT_TRY(c10::GradMode::set_enabled(enabled)) }
ct_status ct_inference_mode_enter(ct_guard *out) { CT_TRY(*out = reinterpret_cast<ct_guard>(new c10::InferenceMode(true))) }
void ct_guard_free(ct_guard g) { delete reinterpret_cast<c10::InferenceMode *>(g); }
static at::DeviceType device_type(ct_device_type d) { return d == CT_CUDA ? at::kCUDA : at::kCPU; }
ct_status ct_autocast_enabled(ct_device_type d, bool *out) { CT_TRY(*out = at::autocast::is_autocast_enabled(device_type(d))) }
ct_status ct_set_autocast_enabled(ct_device_type d, bool enabled) {
  CT_TRY(at::autocast::set_autocast_enabled(device_type(d), enabled))
}
ct_status ct_set_autocast_dtype(ct_device_type d, int32_t dt) {
  CT_TRY(at::autocast::set_autocast_dtype(device_type(d), dtype(dt)))
}
ct_status ct_autocast_increment_nesting(int64_t *out) { CT_TRY(*out = at::autocast::increment_nesting()) }
ct_status ct_autocast_decrement_nesting(int64_t *out) { CT_TRY(*out = at::autocast::decrement_nesting()) }
ct_status ct_autocast_clear_cache(void) { CT_TRY(at::autocast::clear_cache()) }

}  // extern "C"
