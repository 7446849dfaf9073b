// Conversion, views, indexing, elementwise arithmetic and reductions: one libtorch call each.
#include "bridge.h"

using namespace ctorch;

static std::optional<at::Scalar> opt_scalar(const double *p) {
  if (p == nullptr) return std::nullopt;
  return at::Scalar(*p);
}

// `Other` is at::Tensor or at::Scalar; every comparison has both overloads.
template <typename Other>
static at::Tensor compare(const at::Tensor &a, const Other &b, int32_t op) {
  switch (op) {
    case CT_EQ: return at::eq(a, b);
    case CT_NE: return at::ne(a, b);
    case CT_LT: return at::lt(a, b);
    case CT_LE: return at::le(a, b);
    case CT_GT: return at::gt(a, b);
    case CT_GE: return at::ge(a, b);
  }
  throw std::invalid_argument("unknown comparison " + std::to_string(op));
}

#define CT_UNARY(name, expr) \
  ct_status ct_##name(ct_tensor t, ct_tensor *out) { CT_TRY(*out = wrap(expr(T(t)))) }
#define CT_BINARY(name, expr) \
  ct_status ct_##name(ct_tensor a, ct_tensor b, ct_tensor *out) { CT_TRY(*out = wrap(expr(T(a), T(b)))) }
#define CT_WITH_SCALAR(name, expr) \
  ct_status ct_##name(ct_tensor a, ct_scalar s, ct_tensor *out) { CT_TRY(*out = wrap(expr)) }

extern "C" {

ct_status ct_to_dtype(ct_tensor t, int32_t d, ct_tensor *out) { CT_TRY(*out = wrap(T(t).to(dtype(d)))) }
ct_status ct_to_device(ct_tensor t, ct_device dev, bool non_blocking, ct_tensor *out) {
  CT_TRY(*out = wrap(T(t).to(device(dev), non_blocking)))
}
CT_UNARY(contiguous, [](const at::Tensor &x) { return x.contiguous(); })
CT_UNARY(clone, at::clone)
CT_UNARY(detach, at::detach)
ct_status ct_shallow_clone(ct_tensor t, ct_tensor *out) { CT_TRY(*out = wrap(T(t))) }

ct_status ct_reshape(ct_tensor t, const int64_t *s, int64_t n, ct_tensor *out) { CT_TRY(*out = wrap(T(t).reshape(ints(s, n)))) }
ct_status ct_view(ct_tensor t, const int64_t *s, int64_t n, ct_tensor *out) { CT_TRY(*out = wrap(T(t).view(ints(s, n)))) }
ct_status ct_permute(ct_tensor t, const int64_t *d, int64_t n, ct_tensor *out) { CT_TRY(*out = wrap(T(t).permute(ints(d, n)))) }
ct_status ct_transpose(ct_tensor t, int64_t d0, int64_t d1, ct_tensor *out) { CT_TRY(*out = wrap(T(t).transpose(d0, d1))) }
ct_status ct_slice(ct_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, ct_tensor *out) {
  CT_TRY(*out = wrap(T(t).slice(dim, start, end, step)))
}
ct_status ct_select(ct_tensor t, int64_t dim, int64_t i, ct_tensor *out) { CT_TRY(*out = wrap(T(t).select(dim, i))) }
ct_status ct_narrow(ct_tensor t, int64_t dim, int64_t start, int64_t len, ct_tensor *out) {
  CT_TRY(*out = wrap(T(t).narrow(dim, start, len)))
}
ct_status ct_index_select(ct_tensor t, int64_t dim, ct_tensor i, ct_tensor *out) { CT_TRY(*out = wrap(T(t).index_select(dim, T(i)))) }
ct_status ct_gather(ct_tensor t, int64_t dim, ct_tensor i, ct_tensor *out) { CT_TRY(*out = wrap(T(t).gather(dim, T(i)))) }
ct_status ct_scatter(ct_tensor t, int64_t dim, ct_tensor i, ct_tensor src, ct_tensor *out) {
  CT_TRY(*out = wrap(T(t).scatter(dim, T(i), T(src))))
}
ct_status ct_scatter_value(ct_tensor t, int64_t dim, ct_tensor i, ct_scalar v, ct_tensor *out) {
  CT_TRY(*out = wrap(T(t).scatter(dim, T(i), scalar(v))))
}
ct_status ct_scatter_add(ct_tensor t, int64_t dim, ct_tensor i, ct_tensor src, ct_tensor *out) {
  CT_TRY(*out = wrap(T(t).scatter_add(dim, T(i), T(src))))
}
ct_status ct_masked_fill(ct_tensor t, ct_tensor mask, ct_scalar v, ct_tensor *out) {
  CT_TRY(*out = wrap(T(t).masked_fill(T(mask), scalar(v))))
}
ct_status ct_where(ct_tensor c, ct_tensor a, ct_tensor b, ct_tensor *out) { CT_TRY(*out = wrap(at::where(T(c), T(a), T(b)))) }
ct_status ct_cat(const ct_tensor *ts, int64_t n, int64_t dim, ct_tensor *out) { CT_TRY(*out = wrap(at::cat(tensors(ts, n), dim))) }
ct_status ct_stack(const ct_tensor *ts, int64_t n, int64_t dim, ct_tensor *out) { CT_TRY(*out = wrap(at::stack(tensors(ts, n), dim))) }
ct_status ct_split(ct_tensor t, int64_t size, int64_t dim, ct_tensor_list *out) { CT_TRY(*out = wrap_list(T(t).split(size, dim))) }
ct_status ct_split_with_sizes(ct_tensor t, const int64_t *sizes, int64_t n, int64_t dim, ct_tensor_list *out) {
  CT_TRY(*out = wrap_list(T(t).split_with_sizes(ints(sizes, n), dim)))
}
ct_status ct_chunk(ct_tensor t, int64_t chunks, int64_t dim, ct_tensor_list *out) { CT_TRY(*out = wrap_list(T(t).chunk(chunks, dim))) }
ct_status ct_expand(ct_tensor t, const int64_t *s, int64_t n, ct_tensor *out) { CT_TRY(*out = wrap(T(t).expand(ints(s, n)))) }
ct_status ct_unsqueeze(ct_tensor t, int64_t dim, ct_tensor *out) { CT_TRY(*out = wrap(T(t).unsqueeze(dim))) }
ct_status ct_squeeze(ct_tensor t, ct_tensor *out) { CT_TRY(*out = wrap(T(t).squeeze())) }
ct_status ct_squeeze_dim(ct_tensor t, int64_t dim, ct_tensor *out) { CT_TRY(*out = wrap(T(t).squeeze(dim))) }
ct_status ct_flatten(ct_tensor t, int64_t s, int64_t e, ct_tensor *out) { CT_TRY(*out = wrap(T(t).flatten(s, e))) }
ct_status ct_unflatten(ct_tensor t, int64_t dim, const int64_t *sizes, int64_t n, ct_tensor *out) {
  CT_TRY(*out = wrap(T(t).unflatten(dim, ints(sizes, n))))
}
ct_status ct_flip(ct_tensor t, const int64_t *d, int64_t n, ct_tensor *out) { CT_TRY(*out = wrap(T(t).flip(ints(d, n)))) }
ct_status ct_roll(ct_tensor t, const int64_t *shifts, const int64_t *dims, int64_t n, ct_tensor *out) {
  CT_TRY(*out = wrap(T(t).roll(ints(shifts, n), ints(dims, n))))
}
ct_status ct_repeat(ct_tensor t, const int64_t *r, int64_t n, ct_tensor *out) { CT_TRY(*out = wrap(T(t).repeat(ints(r, n)))) }
ct_status ct_tril(ct_tensor t, int64_t d, ct_tensor *out) { CT_TRY(*out = wrap(T(t).tril(d))) }
ct_status ct_triu(ct_tensor t, int64_t d, ct_tensor *out) { CT_TRY(*out = wrap(T(t).triu(d))) }
ct_status ct_diagonal(ct_tensor t, int64_t o, int64_t d1, int64_t d2, ct_tensor *out) { CT_TRY(*out = wrap(T(t).diagonal(o, d1, d2))) }

ct_status ct_add(ct_tensor a, ct_tensor b, ct_scalar alpha, ct_tensor *out) { CT_TRY(*out = wrap(at::add(T(a), T(b), scalar(alpha)))) }
ct_status ct_sub(ct_tensor a, ct_tensor b, ct_scalar alpha, ct_tensor *out) { CT_TRY(*out = wrap(at::sub(T(a), T(b), scalar(alpha)))) }
CT_BINARY(mul, at::mul)
CT_BINARY(div, at::div)
CT_BINARY(pow, at::pow)
CT_BINARY(maximum, at::maximum)
CT_BINARY(minimum, at::minimum)
CT_BINARY(atan2, at::atan2)
CT_BINARY(logical_and, at::logical_and)
CT_BINARY(logical_or, at::logical_or)
CT_BINARY(logical_xor, at::logical_xor)
CT_WITH_SCALAR(add_scalar, at::add(T(a), scalar(s)))
CT_WITH_SCALAR(sub_scalar, at::sub(T(a), scalar(s)))
CT_WITH_SCALAR(rsub_scalar, at::rsub(T(a), scalar(s)))
CT_WITH_SCALAR(mul_scalar, at::mul(T(a), scalar(s)))
CT_WITH_SCALAR(div_scalar, at::div(T(a), scalar(s)))
CT_WITH_SCALAR(pow_scalar, at::pow(T(a), scalar(s)))
CT_WITH_SCALAR(rpow_scalar, at::pow(scalar(s), T(a)))
CT_WITH_SCALAR(fmod_scalar, at::fmod(T(a), scalar(s)))
CT_UNARY(neg, at::neg)
CT_UNARY(exp, at::exp)
CT_UNARY(log, at::log)
CT_UNARY(sqrt, at::sqrt)
CT_UNARY(rsqrt, at::rsqrt)
CT_UNARY(abs, at::abs)
CT_UNARY(tanh, at::tanh)
CT_UNARY(erf, at::erf)
CT_UNARY(sigmoid, at::sigmoid)
CT_UNARY(relu, at::relu)
CT_UNARY(sin, at::sin)
CT_UNARY(cos, at::cos)
CT_UNARY(floor, at::floor)
CT_UNARY(ceil, at::ceil)
CT_UNARY(round, [](const at::Tensor &x) { return at::round(x); })
CT_UNARY(sign, at::sign)
CT_UNARY(reciprocal, at::reciprocal)
CT_UNARY(erfinv, at::erfinv)
CT_UNARY(isnan, at::isnan)
CT_UNARY(isfinite, at::isfinite)
CT_UNARY(logical_not, at::logical_not)
ct_status ct_clamp(ct_tensor t, const double *lo, const double *hi, ct_tensor *out) {
  CT_TRY(*out = wrap(at::clamp(T(t), opt_scalar(lo), opt_scalar(hi))))
}
ct_status ct_clamp_tensor(ct_tensor t, ct_tensor lo, ct_tensor hi, ct_tensor *out) {
  CT_TRY(*out = wrap(at::clamp(T(t), opt(lo), opt(hi))))
}
ct_status ct_compare(ct_tensor a, ct_tensor b, int32_t op, ct_tensor *out) { CT_TRY(*out = wrap(compare(T(a), T(b), op))) }
ct_status ct_compare_scalar(ct_tensor a, ct_scalar s, int32_t op, ct_tensor *out) { CT_TRY(*out = wrap(compare(T(a), scalar(s), op))) }
ct_status ct_equal(ct_tensor a, ct_tensor b, bool *out) { CT_TRY(*out = at::equal(T(a), T(b))) }
ct_status ct_allclose(ct_tensor a, ct_tensor b, double rtol, double atol, bool equal_nan, bool *out) {
  CT_TRY(*out = at::allclose(T(a), T(b), rtol, atol, equal_nan))
}

ct_status ct_add_(ct_tensor t, ct_tensor o, ct_scalar alpha) { CT_TRY(T(t).add_(T(o), scalar(alpha))) }
ct_status ct_mul_(ct_tensor t, ct_tensor o) { CT_TRY(T(t).mul_(T(o))) }
ct_status ct_mul_scalar_(ct_tensor t, ct_scalar s) { CT_TRY(T(t).mul_(scalar(s))) }
ct_status ct_div_(ct_tensor t, ct_tensor o) { CT_TRY(T(t).div_(T(o))) }
ct_status ct_add_scalar_(ct_tensor t, ct_scalar s) { CT_TRY(T(t).add_(scalar(s))) }
ct_status ct_addcmul_(ct_tensor t, ct_tensor a, ct_tensor b, ct_scalar v) { CT_TRY(T(t).addcmul_(T(a), T(b), scalar(v))) }
ct_status ct_addcdiv_(ct_tensor t, ct_tensor a, ct_tensor b, ct_scalar v) { CT_TRY(T(t).addcdiv_(T(a), T(b), scalar(v))) }
ct_status ct_lerp_(ct_tensor t, ct_tensor end, ct_scalar w) { CT_TRY(T(t).lerp_(T(end), scalar(w))) }
ct_status ct_sqrt_(ct_tensor t) { CT_TRY(T(t).sqrt_()) }
ct_status ct_clamp_(ct_tensor t, const double *lo, const double *hi) { CT_TRY(T(t).clamp_(opt_scalar(lo), opt_scalar(hi))) }
ct_status ct_copy_(ct_tensor dst, ct_tensor src) { CT_TRY(T(dst).copy_(T(src))) }
ct_status ct_set_data(ct_tensor t, ct_tensor data) { CT_TRY(T(t).set_data(T(data))) }
ct_status ct_zero_(ct_tensor t) { CT_TRY(T(t).zero_()) }
ct_status ct_fill_(ct_tensor t, ct_scalar v) { CT_TRY(T(t).fill_(scalar(v))) }

ct_status ct_amp_foreach_non_finite_check_and_unscale_(const ct_tensor *ts, int64_t n, ct_tensor found_inf, ct_tensor inv_scale) {
  CT_TRY(at::_amp_foreach_non_finite_check_and_unscale_(tensors(ts, n), T(found_inf), T(inv_scale)))
}
ct_status ct_amp_update_scale_(ct_tensor scale, ct_tensor growth_tracker, ct_tensor found_inf, double growth_factor,
                               double backoff_factor, int64_t growth_interval) {
  CT_TRY(at::_amp_update_scale_(T(scale), T(growth_tracker), T(found_inf), growth_factor, backoff_factor, growth_interval))
}

ct_status ct_sum(ct_tensor t, const int64_t *dims, int64_t n, bool keepdim, int32_t d, ct_tensor *out) {
  CT_TRY(
    std::optional<at::ScalarType> st = d < 0 ? std::nullopt : std::optional<at::ScalarType>(dtype(d));
    *out = wrap(at::sum(T(t), opt_dims(dims, n), keepdim, st)))
}
ct_status ct_mean(ct_tensor t, const int64_t *dims, int64_t n, bool keepdim, ct_tensor *out) {
  CT_TRY(*out = wrap(at::mean(T(t), opt_dims(dims, n), keepdim)))
}
ct_status ct_prod(ct_tensor t, int64_t dim, bool keepdim, ct_tensor *out) { CT_TRY(*out = wrap(at::prod(T(t), dim, keepdim))) }
ct_status ct_cumsum(ct_tensor t, int64_t dim, ct_tensor *out) { CT_TRY(*out = wrap(at::cumsum(T(t), dim))) }
CT_UNARY(max_all, at::max)
CT_UNARY(min_all, at::min)
ct_status ct_max_dim(ct_tensor t, int64_t dim, bool keepdim, ct_tensor *values, ct_tensor *indices) {
  CT_TRY(auto r = at::max(T(t), dim, keepdim); *values = wrap(std::get<0>(r)); *indices = wrap(std::get<1>(r)))
}
ct_status ct_min_dim(ct_tensor t, int64_t dim, bool keepdim, ct_tensor *values, ct_tensor *indices) {
  CT_TRY(auto r = at::min(T(t), dim, keepdim); *values = wrap(std::get<0>(r)); *indices = wrap(std::get<1>(r)))
}
ct_status ct_argmax(ct_tensor t, const int64_t *dim, bool keepdim, ct_tensor *out) {
  CT_TRY(*out = wrap(at::argmax(T(t), dim ? std::optional<int64_t>(*dim) : std::nullopt, keepdim)))
}
ct_status ct_argmin(ct_tensor t, const int64_t *dim, bool keepdim, ct_tensor *out) {
  CT_TRY(*out = wrap(at::argmin(T(t), dim ? std::optional<int64_t>(*dim) : std::nullopt, keepdim)))
}
ct_status ct_norm(ct_tensor t, double p, const int64_t *dims, int64_t n, bool keepdim, ct_tensor *out) {
  CT_TRY(*out = wrap(n == 0 ? at::norm(T(t), p) : at::norm(T(t), p, ints(dims, n), keepdim)))
}
ct_status ct_logsumexp(ct_tensor t, const int64_t *dims, int64_t n, bool keepdim, ct_tensor *out) {
  CT_TRY(*out = wrap(at::logsumexp(T(t), ints(dims, n), keepdim)))
}
ct_status ct_var(ct_tensor t, const int64_t *dims, int64_t n, double correction, bool keepdim, ct_tensor *out) {
  CT_TRY(*out = wrap(at::var(T(t), opt_dims(dims, n), at::Scalar(correction), keepdim)))
}
ct_status ct_std(ct_tensor t, const int64_t *dims, int64_t n, double correction, bool keepdim, ct_tensor *out) {
  CT_TRY(*out = wrap(at::std(T(t), opt_dims(dims, n), at::Scalar(correction), keepdim)))
}
ct_status ct_topk(ct_tensor t, int64_t k, int64_t dim, bool largest, bool sorted, ct_tensor *values, ct_tensor *indices) {
  CT_TRY(auto r = at::topk(T(t), k, dim, largest, sorted); *values = wrap(std::get<0>(r)); *indices = wrap(std::get<1>(r)))
}
ct_status ct_sort(ct_tensor t, int64_t dim, bool descending, bool stable, ct_tensor *values, ct_tensor *indices) {
  CT_TRY(auto r = at::sort(T(t), stable, dim, descending); *values = wrap(std::get<0>(r)); *indices = wrap(std::get<1>(r)))
}
ct_status ct_argsort(ct_tensor t, int64_t dim, bool descending, bool stable, ct_tensor *out) {
  CT_TRY(*out = wrap(at::argsort(T(t), stable, dim, descending)))
}
CT_UNARY(all, at::all)
CT_UNARY(any, at::any)

}  // extern "C"
