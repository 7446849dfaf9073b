// ctorch: a pure C ABI over libtorch.
//
// Rules (after tch-rs's torch_api.h):
//  * every function returns a status: 0 on success, non-zero on failure;
//  * results come back through out-parameters; every returned handle is owned by the caller
//    and freed exactly once with the matching ct_*_free;
//  * after a failure, ct_last_error() holds libtorch's message for the calling thread and
//    ct_last_error_kind() what kind of failure it was (the status is that kind too);
//  * no C++ exception ever crosses this boundary; no function decides policy.
#ifndef CTORCH_H
#define CTORCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_tensor_opaque *ct_tensor;
typedef struct ct_tensor_list_opaque *ct_tensor_list;
typedef struct ct_generator_opaque *ct_generator;
typedef struct ct_guard_opaque *ct_guard;
typedef int32_t ct_status;

typedef enum {
  CT_FLOAT32 = 0, CT_FLOAT64 = 1, CT_FLOAT16 = 2, CT_BFLOAT16 = 3,
  CT_INT64 = 4, CT_INT32 = 5, CT_UINT8 = 6, CT_BOOL = 7
} ct_dtype;

typedef enum { CT_CPU = 0, CT_CUDA = 1 } ct_device_type;
typedef struct { int32_t type; int32_t index; } ct_device;

typedef enum { CT_SCALAR_FLOAT = 0, CT_SCALAR_INT = 1, CT_SCALAR_BOOL = 2 } ct_scalar_kind;
typedef struct { int32_t kind; double f; int64_t i; } ct_scalar;

typedef enum { CT_REDUCTION_NONE = 0, CT_REDUCTION_MEAN = 1, CT_REDUCTION_SUM = 2 } ct_reduction;

/// What a failed call ran into. Out of memory is told apart because a caller can act on it
/// (a smaller batch), unlike a programming error.
typedef enum { CT_ERROR_NONE = 0, CT_ERROR_GENERAL = 1, CT_ERROR_OUT_OF_MEMORY = 2 } ct_error_kind;

/// A device caching allocator's counters, in bytes.
typedef struct { int64_t allocated; int64_t peak_allocated; int64_t reserved; int64_t peak_reserved; } ct_memory_stats;

// ---- errors, library ------------------------------------------------------------------
const char *ct_last_error(void);
/// A ct_error_kind: the kind of the calling thread's last failure.
int32_t ct_last_error_kind(void);
ct_status ct_version(const char **out);
ct_status ct_cuda_is_available(bool *out);
ct_status ct_cuda_device_count(int64_t *out);
ct_status ct_set_num_threads(int64_t n);
ct_status ct_get_num_threads(int64_t *out);
ct_status ct_set_num_interop_threads(int64_t n);
ct_status ct_manual_seed(uint64_t seed);

// ---- devices (device.cpp) ---------------------------------------------------------------
/// Whether this bridge was compiled for a build that links libtorch_cuda (CTORCH_WITH_CUDA).
bool ct_built_with_cuda(void);
/// The CUDA runtime version libtorch was built with (e.g. 13020); fails without libtorch_cuda.
ct_status ct_cuda_runtime_version(int64_t *out);
/// Waits for all work queued on the CUDA device.
ct_status ct_cuda_synchronize(int64_t index);
/// A copy of a CPU tensor in page-locked memory (the tensor itself when already pinned).
ct_status ct_pin_memory(ct_tensor t, ct_tensor *out);
ct_status ct_is_pinned(ct_tensor t, bool *out);
/// The CUDA caching allocator's counters for one device, and resetting its peaks.
ct_status ct_cuda_memory_stats(int64_t index, ct_memory_stats *out);
ct_status ct_cuda_reset_peak_memory_stats(int64_t index);
/// TF32 for CUDA float32 matmuls (cuBLAS) and convolutions (cuDNN); reading gives the matmul flag.
ct_status ct_allow_tf32(bool *out);
ct_status ct_set_allow_tf32(bool allow);
/// Deterministic algorithms (errors on ops without one) and cuDNN deterministic, benchmark off.
ct_status ct_deterministic_algorithms(bool *out);
ct_status ct_set_deterministic_algorithms(bool enabled);

// ---- lifetime and metadata ------------------------------------------------------------
void ct_tensor_free(ct_tensor t);
void ct_tensor_list_free(ct_tensor_list l);
ct_status ct_tensor_list_size(ct_tensor_list l, int64_t *out);
/// Moves element i out of the list into a new handle.
ct_status ct_tensor_list_get(ct_tensor_list l, int64_t i, ct_tensor *out);
ct_status ct_undefined(ct_tensor *out);
ct_status ct_defined(ct_tensor t, bool *out);
ct_status ct_dim(ct_tensor t, int64_t *out);
/// Writes min(dim, capacity) sizes.
ct_status ct_sizes(ct_tensor t, int64_t *out, int64_t capacity);
ct_status ct_strides(ct_tensor t, int64_t *out, int64_t capacity);
ct_status ct_numel(ct_tensor t, int64_t *out);
ct_status ct_scalar_type(ct_tensor t, int32_t *out);
ct_status ct_device_of(ct_tensor t, ct_device *out);
ct_status ct_is_contiguous(ct_tensor t, bool *out);
ct_status ct_same_storage(ct_tensor a, ct_tensor b, bool *out);

// ---- creation -------------------------------------------------------------------------
/// Copies nbytes from data (which must equal numel * element size) into a new CPU tensor.
ct_status ct_from_data(const void *data, size_t nbytes, const int64_t *shape, int64_t ndim, int32_t dtype, ct_tensor *out);
/// Wraps caller memory without copying; deleter(context) runs when libtorch drops it.
ct_status ct_from_blob(void *data, const int64_t *shape, int64_t ndim, const int64_t *strides, int32_t dtype,
                       void (*deleter)(void *), void *context, ct_tensor *out);
ct_status ct_empty(const int64_t *shape, int64_t ndim, int32_t dtype, ct_device device, ct_tensor *out);
ct_status ct_zeros(const int64_t *shape, int64_t ndim, int32_t dtype, ct_device device, ct_tensor *out);
ct_status ct_ones(const int64_t *shape, int64_t ndim, int32_t dtype, ct_device device, ct_tensor *out);
ct_status ct_full(const int64_t *shape, int64_t ndim, ct_scalar value, int32_t dtype, ct_device device, ct_tensor *out);
ct_status ct_arange(ct_scalar start, ct_scalar end, ct_scalar step, int32_t dtype, ct_device device, ct_tensor *out);
ct_status ct_linspace(double start, double end, int64_t steps, int32_t dtype, ct_device device, ct_tensor *out);
ct_status ct_eye(int64_t n, int32_t dtype, ct_device device, ct_tensor *out);
// Random creation uses `generator` when non-NULL, the default generator otherwise.
ct_status ct_rand(const int64_t *shape, int64_t ndim, int32_t dtype, ct_device device, ct_generator g, ct_tensor *out);
ct_status ct_randn(const int64_t *shape, int64_t ndim, int32_t dtype, ct_device device, ct_generator g, ct_tensor *out);
ct_status ct_randint(int64_t low, int64_t high, const int64_t *shape, int64_t ndim, int32_t dtype, ct_device device,
                     ct_generator g, ct_tensor *out);
ct_status ct_randperm(int64_t n, int32_t dtype, ct_device device, ct_generator g, ct_tensor *out);
ct_status ct_bernoulli(ct_tensor probabilities, ct_generator g, ct_tensor *out);
// In-place fills of an existing tensor (initialisers).
ct_status ct_uniform_(ct_tensor t, double from, double to, ct_generator g);
ct_status ct_normal_(ct_tensor t, double mean, double std, ct_generator g);

// ---- generators ----------------------------------------------------------------------
ct_status ct_generator_new(uint64_t seed, ct_device device, ct_generator *out);
/// A handle sharing libtorch's default generator for the device.
ct_status ct_generator_default(ct_device device, ct_generator *out);
void ct_generator_free(ct_generator g);
ct_status ct_generator_set_seed(ct_generator g, uint64_t seed);
ct_status ct_generator_seed(ct_generator g, uint64_t *out);
/// The full state as a uint8 tensor (for exact resume) and back.
ct_status ct_generator_get_state(ct_generator g, ct_tensor *out);
ct_status ct_generator_set_state(ct_generator g, ct_tensor state);

// ---- data in and out -------------------------------------------------------------------
/// Copies the tensor's elements (moved to CPU, made contiguous) into dst; nbytes must match.
ct_status ct_copy_to_buffer(ct_tensor t, void *dst, size_t nbytes);
/// Address of the first element of a CPU tensor (valid while the tensor lives).
ct_status ct_data_ptr(ct_tensor t, void **out);
ct_status ct_item_double(ct_tensor t, double *out);
ct_status ct_item_int64(ct_tensor t, int64_t *out);
ct_status ct_to_string(ct_tensor t, char **out); // free with ct_string_free
void ct_string_free(char *s);

// ---- conversion ------------------------------------------------------------------------
ct_status ct_to_dtype(ct_tensor t, int32_t dtype, ct_tensor *out);
ct_status ct_to_device(ct_tensor t, ct_device device, bool non_blocking, ct_tensor *out);
ct_status ct_contiguous(ct_tensor t, ct_tensor *out);
ct_status ct_clone(ct_tensor t, ct_tensor *out);
ct_status ct_detach(ct_tensor t, ct_tensor *out);
/// A new handle sharing the same tensor (no data copy).
ct_status ct_shallow_clone(ct_tensor t, ct_tensor *out);

// ---- views and indexing ---------------------------------------------------------------
ct_status ct_reshape(ct_tensor t, const int64_t *shape, int64_t ndim, ct_tensor *out);
ct_status ct_view(ct_tensor t, const int64_t *shape, int64_t ndim, ct_tensor *out);
ct_status ct_permute(ct_tensor t, const int64_t *dims, int64_t ndim, ct_tensor *out);
ct_status ct_transpose(ct_tensor t, int64_t dim0, int64_t dim1, ct_tensor *out);
ct_status ct_slice(ct_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, ct_tensor *out);
ct_status ct_select(ct_tensor t, int64_t dim, int64_t index, ct_tensor *out);
ct_status ct_narrow(ct_tensor t, int64_t dim, int64_t start, int64_t length, ct_tensor *out);
ct_status ct_index_select(ct_tensor t, int64_t dim, ct_tensor index, ct_tensor *out);
ct_status ct_gather(ct_tensor t, int64_t dim, ct_tensor index, ct_tensor *out);
ct_status ct_scatter(ct_tensor t, int64_t dim, ct_tensor index, ct_tensor src, ct_tensor *out);
ct_status ct_scatter_value(ct_tensor t, int64_t dim, ct_tensor index, ct_scalar value, ct_tensor *out);
ct_status ct_scatter_add(ct_tensor t, int64_t dim, ct_tensor index, ct_tensor src, ct_tensor *out);
ct_status ct_masked_fill(ct_tensor t, ct_tensor mask, ct_scalar value, ct_tensor *out);
ct_status ct_where(ct_tensor condition, ct_tensor a, ct_tensor b, ct_tensor *out);
ct_status ct_cat(const ct_tensor *ts, int64_t n, int64_t dim, ct_tensor *out);
ct_status ct_stack(const ct_tensor *ts, int64_t n, int64_t dim, ct_tensor *out);
ct_status ct_split(ct_tensor t, int64_t split_size, int64_t dim, ct_tensor_list *out);
ct_status ct_split_with_sizes(ct_tensor t, const int64_t *sizes, int64_t n, int64_t dim, ct_tensor_list *out);
ct_status ct_chunk(ct_tensor t, int64_t chunks, int64_t dim, ct_tensor_list *out);
ct_status ct_expand(ct_tensor t, const int64_t *shape, int64_t ndim, ct_tensor *out);
ct_status ct_unsqueeze(ct_tensor t, int64_t dim, ct_tensor *out);
ct_status ct_squeeze(ct_tensor t, ct_tensor *out);
ct_status ct_squeeze_dim(ct_tensor t, int64_t dim, ct_tensor *out);
ct_status ct_flatten(ct_tensor t, int64_t start_dim, int64_t end_dim, ct_tensor *out);
ct_status ct_unflatten(ct_tensor t, int64_t dim, const int64_t *sizes, int64_t n, ct_tensor *out);
ct_status ct_flip(ct_tensor t, const int64_t *dims, int64_t ndim, ct_tensor *out);
ct_status ct_roll(ct_tensor t, const int64_t *shifts, const int64_t *dims, int64_t n, ct_tensor *out);
ct_status ct_repeat(ct_tensor t, const int64_t *repeats, int64_t n, ct_tensor *out);
ct_status ct_tril(ct_tensor t, int64_t diagonal, ct_tensor *out);
ct_status ct_triu(ct_tensor t, int64_t diagonal, ct_tensor *out);
ct_status ct_diagonal(ct_tensor t, int64_t offset, int64_t dim1, int64_t dim2, ct_tensor *out);

// ---- elementwise ----------------------------------------------------------------------
// Binary ops with another tensor (broadcasting). ct_add/ct_sub compute a + alpha * b.
ct_status ct_add(ct_tensor a, ct_tensor b, ct_scalar alpha, ct_tensor *out);
ct_status ct_sub(ct_tensor a, ct_tensor b, ct_scalar alpha, ct_tensor *out);
ct_status ct_mul(ct_tensor a, ct_tensor b, ct_tensor *out);
ct_status ct_div(ct_tensor a, ct_tensor b, ct_tensor *out);
ct_status ct_pow(ct_tensor a, ct_tensor b, ct_tensor *out);
ct_status ct_maximum(ct_tensor a, ct_tensor b, ct_tensor *out);
ct_status ct_minimum(ct_tensor a, ct_tensor b, ct_tensor *out);
ct_status ct_atan2(ct_tensor a, ct_tensor b, ct_tensor *out);
ct_status ct_add_scalar(ct_tensor a, ct_scalar s, ct_tensor *out);
ct_status ct_sub_scalar(ct_tensor a, ct_scalar s, ct_tensor *out);
ct_status ct_rsub_scalar(ct_tensor a, ct_scalar s, ct_tensor *out);
ct_status ct_mul_scalar(ct_tensor a, ct_scalar s, ct_tensor *out);
ct_status ct_div_scalar(ct_tensor a, ct_scalar s, ct_tensor *out);
ct_status ct_pow_scalar(ct_tensor a, ct_scalar s, ct_tensor *out);
ct_status ct_rpow_scalar(ct_tensor a, ct_scalar s, ct_tensor *out);
ct_status ct_fmod_scalar(ct_tensor a, ct_scalar s, ct_tensor *out);
// Unary.
ct_status ct_neg(ct_tensor t, ct_tensor *out);
ct_status ct_exp(ct_tensor t, ct_tensor *out);
ct_status ct_log(ct_tensor t, ct_tensor *out);
ct_status ct_sqrt(ct_tensor t, ct_tensor *out);
ct_status ct_rsqrt(ct_tensor t, ct_tensor *out);
ct_status ct_abs(ct_tensor t, ct_tensor *out);
ct_status ct_tanh(ct_tensor t, ct_tensor *out);
ct_status ct_erf(ct_tensor t, ct_tensor *out);
ct_status ct_sigmoid(ct_tensor t, ct_tensor *out);
ct_status ct_relu(ct_tensor t, ct_tensor *out);
ct_status ct_sin(ct_tensor t, ct_tensor *out);
ct_status ct_cos(ct_tensor t, ct_tensor *out);
ct_status ct_floor(ct_tensor t, ct_tensor *out);
ct_status ct_ceil(ct_tensor t, ct_tensor *out);
ct_status ct_round(ct_tensor t, ct_tensor *out);
ct_status ct_sign(ct_tensor t, ct_tensor *out);
ct_status ct_reciprocal(ct_tensor t, ct_tensor *out);
ct_status ct_erfinv(ct_tensor t, ct_tensor *out);
ct_status ct_isnan(ct_tensor t, ct_tensor *out);
ct_status ct_isfinite(ct_tensor t, ct_tensor *out);
ct_status ct_logical_not(ct_tensor t, ct_tensor *out);
ct_status ct_logical_and(ct_tensor a, ct_tensor b, ct_tensor *out);
ct_status ct_logical_or(ct_tensor a, ct_tensor b, ct_tensor *out);
ct_status ct_logical_xor(ct_tensor a, ct_tensor b, ct_tensor *out);
/// NULL bounds are absent.
ct_status ct_clamp(ct_tensor t, const double *min, const double *max, ct_tensor *out);
ct_status ct_clamp_tensor(ct_tensor t, ct_tensor min, ct_tensor max, ct_tensor *out);
// Comparisons: op 0 eq, 1 ne, 2 lt, 3 le, 4 gt, 5 ge.
typedef enum { CT_EQ = 0, CT_NE = 1, CT_LT = 2, CT_LE = 3, CT_GT = 4, CT_GE = 5 } ct_comparison;
ct_status ct_compare(ct_tensor a, ct_tensor b, int32_t op, ct_tensor *out);
ct_status ct_compare_scalar(ct_tensor a, ct_scalar s, int32_t op, ct_tensor *out);
ct_status ct_equal(ct_tensor a, ct_tensor b, bool *out);
ct_status ct_allclose(ct_tensor a, ct_tensor b, double rtol, double atol, bool equal_nan, bool *out);

// ---- in-place (optimizers, initialisers) ------------------------------------------------
ct_status ct_add_(ct_tensor t, ct_tensor other, ct_scalar alpha);
ct_status ct_mul_(ct_tensor t, ct_tensor other);
ct_status ct_mul_scalar_(ct_tensor t, ct_scalar s);
ct_status ct_div_(ct_tensor t, ct_tensor other);
ct_status ct_add_scalar_(ct_tensor t, ct_scalar s);
ct_status ct_addcmul_(ct_tensor t, ct_tensor a, ct_tensor b, ct_scalar value);
ct_status ct_addcdiv_(ct_tensor t, ct_tensor a, ct_tensor b, ct_scalar value);
ct_status ct_lerp_(ct_tensor t, ct_tensor end, ct_scalar weight);
ct_status ct_sqrt_(ct_tensor t);
ct_status ct_clamp_(ct_tensor t, const double *min, const double *max);
ct_status ct_copy_(ct_tensor dst, ct_tensor src);
/// Points `t` at `data`'s storage, dtype and device, keeping t's identity and autograd flags
/// (what PyTorch's `param.data = ...` does; used to move or re-type parameters in place).
ct_status ct_set_data(ct_tensor t, ct_tensor data);
ct_status ct_zero_(ct_tensor t);
ct_status ct_fill_(ct_tensor t, ct_scalar value);

// ---- mixed precision: torch.amp.GradScaler's two kernels ----------------------------------
/// Multiplies every tensor of `ts` (one device and dtype) by `inv_scale` (float32, 0-dim) in
/// place, and sets `found_inf` (float32, 0-dim) to 1 when any element is inf or NaN.
ct_status ct_amp_foreach_non_finite_check_and_unscale_(const ct_tensor *ts, int64_t n, ct_tensor found_inf, ct_tensor inv_scale);
/// GradScaler.update on `scale` (float32, 0-dim) and `growth_tracker` (int32, 0-dim): back off
/// and reset when found_inf > 0, else count the step and grow every `growth_interval` steps.
ct_status ct_amp_update_scale_(ct_tensor scale, ct_tensor growth_tracker, ct_tensor found_inf, double growth_factor,
                               double backoff_factor, int64_t growth_interval);

// ---- optimizers: torch's fused steps and foreach kernels (optim.cpp) ----------------------
// Lists are arrays of handles; the lists of one call hold one tensor per parameter, in the
// same order. The CPU kernels read each tensor's memory as flat and check neither shapes nor
// strides against the parameter's: callers pass contiguous tensors of the parameter's shape.
/// torch._foreach_add_(ts, s): adds `s` to every tensor in place (optimizer step counts).
ct_status ct_foreach_add_scalar_(const ct_tensor *ts, int64_t n, ct_scalar s);
/// torch._foreach_mul_(ts, factor): multiplies every tensor by `factor` (0-dim) in place.
ct_status ct_foreach_mul_tensor_(const ct_tensor *ts, int64_t n, ct_tensor factor);
/// torch._foreach_norm(ts, p): each tensor's p-norm, as a list of 0-dim tensors.
ct_status ct_foreach_norm(const ct_tensor *ts, int64_t n, double p, ct_tensor_list *out);
/// torch._fused_adamw_: one AdamW step of `n` parameters. `state_steps` (float32, 0-dim, one
/// per parameter) are read, not incremented: torch adds 1 before the call. `max_exp_avg_sqs`
/// holds n tensors with amsgrad, none without. `grad_scale`, `found_inf`: NULL or float32 0-dim
/// (grads divided by the scale; the step skipped when found_inf is 1).
ct_status ct_fused_adamw_(const ct_tensor *params, const ct_tensor *grads, const ct_tensor *exp_avgs,
                          const ct_tensor *exp_avg_sqs, const ct_tensor *max_exp_avg_sqs, int64_t n_max,
                          const ct_tensor *state_steps, int64_t n, double lr, double beta1, double beta2,
                          double weight_decay, double eps, bool amsgrad, bool maximize, ct_tensor grad_scale,
                          ct_tensor found_inf);
/// torch._fused_sgd_: one SGD step of `n` parameters. `momentum_buffers` holds n tensors with
/// momentum, none without; with `is_first_step` they are overwritten with the gradient (after
/// weight decay) instead of updated, as torch's first step does.
ct_status ct_fused_sgd_(const ct_tensor *params, const ct_tensor *grads, const ct_tensor *momentum_buffers,
                        int64_t n_buffers, int64_t n, double weight_decay, double momentum, double lr,
                        double dampening, bool nesterov, bool maximize, bool is_first_step, ct_tensor grad_scale,
                        ct_tensor found_inf);

// ---- reductions -------------------------------------------------------------------------
// dims == NULL / ndim == 0 reduces over all elements. dtype < 0 keeps the default.
ct_status ct_sum(ct_tensor t, const int64_t *dims, int64_t ndim, bool keepdim, int32_t dtype, ct_tensor *out);
ct_status ct_mean(ct_tensor t, const int64_t *dims, int64_t ndim, bool keepdim, ct_tensor *out);
ct_status ct_prod(ct_tensor t, int64_t dim, bool keepdim, ct_tensor *out);
ct_status ct_cumsum(ct_tensor t, int64_t dim, ct_tensor *out);
ct_status ct_max_all(ct_tensor t, ct_tensor *out);
ct_status ct_min_all(ct_tensor t, ct_tensor *out);
ct_status ct_max_dim(ct_tensor t, int64_t dim, bool keepdim, ct_tensor *values, ct_tensor *indices);
ct_status ct_min_dim(ct_tensor t, int64_t dim, bool keepdim, ct_tensor *values, ct_tensor *indices);
/// dim == NULL: over the flattened tensor.
ct_status ct_argmax(ct_tensor t, const int64_t *dim, bool keepdim, ct_tensor *out);
ct_status ct_argmin(ct_tensor t, const int64_t *dim, bool keepdim, ct_tensor *out);
ct_status ct_norm(ct_tensor t, double p, const int64_t *dims, int64_t ndim, bool keepdim, ct_tensor *out);
ct_status ct_logsumexp(ct_tensor t, const int64_t *dims, int64_t ndim, bool keepdim, ct_tensor *out);
ct_status ct_var(ct_tensor t, const int64_t *dims, int64_t ndim, double correction, bool keepdim, ct_tensor *out);
ct_status ct_std(ct_tensor t, const int64_t *dims, int64_t ndim, double correction, bool keepdim, ct_tensor *out);
ct_status ct_topk(ct_tensor t, int64_t k, int64_t dim, bool largest, bool sorted, ct_tensor *values, ct_tensor *indices);
ct_status ct_sort(ct_tensor t, int64_t dim, bool descending, bool stable, ct_tensor *values, ct_tensor *indices);
ct_status ct_argsort(ct_tensor t, int64_t dim, bool descending, bool stable, ct_tensor *out);
ct_status ct_all(ct_tensor t, ct_tensor *out);
ct_status ct_any(ct_tensor t, ct_tensor *out);

// ---- linear algebra and neural-network functions ---------------------------------------
ct_status ct_matmul(ct_tensor a, ct_tensor b, ct_tensor *out);
ct_status ct_bmm(ct_tensor a, ct_tensor b, ct_tensor *out);
/// bias may be NULL.
ct_status ct_linear(ct_tensor input, ct_tensor weight, ct_tensor bias, ct_tensor *out);
ct_status ct_conv2d(ct_tensor input, ct_tensor weight, ct_tensor bias, const int64_t *stride, const int64_t *padding,
                    const int64_t *dilation, int64_t groups, ct_tensor *out);
ct_status ct_layer_norm(ct_tensor input, const int64_t *normalized_shape, int64_t ndim, ct_tensor weight,
                        ct_tensor bias, double eps, ct_tensor *out);
/// padding_idx < 0: none.
ct_status ct_embedding(ct_tensor weight, ct_tensor indices, int64_t padding_idx, ct_tensor *out);
ct_status ct_dropout(ct_tensor input, double p, bool train, ct_tensor *out);
ct_status ct_softmax(ct_tensor t, int64_t dim, int32_t dtype, ct_tensor *out);
ct_status ct_log_softmax(ct_tensor t, int64_t dim, int32_t dtype, ct_tensor *out);
/// approximate: "none" or "tanh".
ct_status ct_gelu(ct_tensor t, const char *approximate, ct_tensor *out);
/// mask may be NULL (bool: true = attend; float: added). scale NULL = 1/sqrt(head_dim).
ct_status ct_scaled_dot_product_attention(ct_tensor q, ct_tensor k, ct_tensor v, ct_tensor mask, double dropout_p,
                                          bool is_causal, const double *scale, ct_tensor *out);
/// target: class indices (int64) or probabilities. weight may be NULL.
ct_status ct_cross_entropy(ct_tensor input, ct_tensor target, ct_tensor weight, int32_t reduction,
                           int64_t ignore_index, double label_smoothing, ct_tensor *out);
ct_status ct_kl_div(ct_tensor input, ct_tensor target, int32_t reduction, bool log_target, ct_tensor *out);
ct_status ct_mse_loss(ct_tensor input, ct_tensor target, int32_t reduction, ct_tensor *out);
ct_status ct_binary_cross_entropy_with_logits(ct_tensor input, ct_tensor target, ct_tensor weight,
                                              ct_tensor pos_weight, int32_t reduction, ct_tensor *out);
ct_status ct_cosine_similarity(ct_tensor a, ct_tensor b, int64_t dim, double eps, ct_tensor *out);

// ---- image resampling ---------------------------------------------------------------------
/// mode: 0 bilinear, 1 bicubic; antialias applies when downsampling (libtorch's _aa kernels).
ct_status ct_interpolate(ct_tensor input, int64_t out_h, int64_t out_w, int32_t mode, bool align_corners,
                         bool antialias, ct_tensor *out);
ct_status ct_affine_grid(ct_tensor theta, const int64_t *size, int64_t ndim, bool align_corners, ct_tensor *out);
/// interpolation: 0 bilinear, 1 nearest, 2 bicubic; padding: 0 zeros, 1 border, 2 reflection.
ct_status ct_grid_sample(ct_tensor input, ct_tensor grid, int32_t interpolation, int32_t padding,
                         bool align_corners, ct_tensor *out);

// ---- autograd ----------------------------------------------------------------------------
ct_status ct_requires_grad(ct_tensor t, bool *out);
ct_status ct_set_requires_grad(ct_tensor t, bool requires_grad);
ct_status ct_is_leaf(ct_tensor t, bool *out);
ct_status ct_retain_grad(ct_tensor t);
/// gradient may be NULL (scalar outputs).
ct_status ct_backward(ct_tensor t, ct_tensor gradient, bool retain_graph, bool create_graph);
/// *out is NULL when the tensor has no gradient.
ct_status ct_grad(ct_tensor t, ct_tensor *out);
/// grad NULL clears the gradient.
ct_status ct_set_grad(ct_tensor t, ct_tensor grad);
ct_status ct_grad_mode_enabled(bool *out);
ct_status ct_set_grad_mode(bool enabled);
/// An inference-mode scope; free the guard on the same thread to leave it.
ct_status ct_inference_mode_enter(ct_guard *out);
void ct_guard_free(ct_guard g);
ct_status ct_autocast_enabled(ct_device_type device, bool *out);
ct_status ct_set_autocast_enabled(ct_device_type device, bool enabled);
ct_status ct_set_autocast_dtype(ct_device_type device, int32_t dtype);
ct_status ct_autocast_increment_nesting(int64_t *out);
ct_status ct_autocast_decrement_nesting(int64_t *out);
ct_status ct_autocast_clear_cache(void);

// ---- gradient checkpointing (checkpoint.cpp) -----------------------------------------------
/// A block that ct_checkpoint runs: `inputs` (new handles the block takes over and frees) → one
/// tensor written to *out as a new handle (the bridge takes it over). On failure it returns a
/// ct_error_kind and may set *message to a malloc'd string (the bridge frees it); the bridge turns
/// that into its own failure, so nothing unwinds through the block's frames.
typedef ct_status (*ct_checkpoint_block)(void *context, const ct_tensor *inputs, int64_t n, ct_tensor *out, char **message);
/// torch.utils.checkpoint (reentrant): runs `run` under no-grad keeping only `inputs` (with the
/// RNG and autocast states), and runs it again in backward to backpropagate through it. Pass the
/// block's trainable parameters as `parameters` (they receive .grad from the recomputation); the
/// block may read other tensors only as constants. `release(context)` runs exactly once, when the
/// result no longer needs the block (or at once when this call fails).
ct_status ct_checkpoint(ct_checkpoint_block run, void *context, void (*release)(void *context), const ct_tensor *inputs,
                        int64_t input_count, const ct_tensor *parameters, int64_t parameter_count, ct_tensor *out);

// ---- host allocator (host_allocator.cpp) --------------------------------------------------
/// Returns `bytes` bytes aligned to 64, or NULL when out of memory.
typedef void *(*ct_host_allocate)(size_t bytes);
/// Frees what `ct_host_allocate` returned.
typedef void (*ct_host_free)(void *pointer);
/// Every CPU tensor made from now on takes its memory from `allocate` and returns it to `free`
/// (which may run on any thread); tensors made before keep theirs. NULL and NULL set libtorch's
/// default back. One pair of callbacks per process.
ct_status ct_set_host_allocator(ct_host_allocate allocate, ct_host_free free);

#ifdef __cplusplus
}
#endif
#endif
