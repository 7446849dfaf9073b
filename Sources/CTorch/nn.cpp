// Linear algebra, neural-network functions, losses and image resampling: one libtorch call each.
#include "bridge.h"

using namespace ctorch;

extern "C" {

ct_status ct_matmul(ct_tensor a, ct_tensor b, ct_tensor *out) { CT_TRY(*out = wrap(at::matmul(T(a), T(b)))) }
ct_status ct_bmm(ct_tensor a, ct_tensor b, ct_tensor *out) { CT_TRY(*out = wrap(at::bmm(T(a), T(b)))) }
ct_status ct_linear(ct_tensor x, ct_tensor w, ct_tensor b, ct_tensor *out) { CT_TRY(*out = wrap(at::linear(T(x), T(w), opt(b)))) }
ct_status ct_conv2d(ct_tensor x, ct_tensor w, ct_tensor b, const int64_t *stride, const int64_t *padding,
                    const int64_t *dilation, int64_t groups, ct_tensor *out) {
  CT_TRY(*out = wrap(at::conv2d(T(x), T(w), opt(b), ints(stride, 2), ints(padding, 2), ints(dilation, 2), groups)))
}
ct_status ct_layer_norm(ct_tensor x, const int64_t *shape, int64_t n, ct_tensor w, ct_tensor b, double eps, ct_tensor *out) {
  CT_TRY(*out = wrap(at::layer_norm(T(x), ints(shape, n), opt(w), opt(b), eps)))
}
ct_status ct_embedding(ct_tensor w, ct_tensor idx, int64_t padding_idx, ct_tensor *out) {
  CT_TRY(*out = wrap(at::embedding(T(w), T(idx), padding_idx)))
}
ct_status ct_dropout(ct_tensor x, double p, bool train, ct_tensor *out) { CT_TRY(*out = wrap(at::dropout(T(x), p, train))) }
ct_status ct_softmax(ct_tensor t, int64_t dim, int32_t d, ct_tensor *out) {
  CT_TRY(*out = wrap(at::softmax(T(t), dim, d < 0 ? std::nullopt : std::optional<at::ScalarType>(dtype(d)))))
}
ct_status ct_log_softmax(ct_tensor t, int64_t dim, int32_t d, ct_tensor *out) {
  CT_TRY(*out = wrap(at::log_softmax(T(t), dim, d < 0 ? std::nullopt : std::optional<at::ScalarType>(dtype(d)))))
}
ct_status ct_gelu(ct_tensor t, const char *approximate, ct_tensor *out) { CT_TRY(*out = wrap(at::gelu(T(t), approximate))) }
ct_status ct_scaled_dot_product_attention(ct_tensor q, ct_tensor k, ct_tensor v, ct_tensor mask, double dropout_p,
                                          bool is_causal, const double *scale, ct_tensor *out) {
  CT_TRY(*out = wrap(at::scaled_dot_product_attention(T(q), T(k), T(v), opt(mask), dropout_p, is_causal,
                                                      scale ? std::optional<double>(*scale) : std::nullopt)))
}
ct_status ct_cross_entropy(ct_tensor x, ct_tensor target, ct_tensor weight, int32_t red, int64_t ignore_index,
                           double label_smoothing, ct_tensor *out) {
  CT_TRY(*out = wrap(at::cross_entropy_loss(T(x), T(target), opt(weight), reduction(red), ignore_index, label_smoothing)))
}
ct_status ct_kl_div(ct_tensor x, ct_tensor target, int32_t red, bool log_target, ct_tensor *out) {
  CT_TRY(*out = wrap(at::kl_div(T(x), T(target), reduction(red), log_target)))
}
ct_status ct_mse_loss(ct_tensor x, ct_tensor target, int32_t red, ct_tensor *out) {
  CT_TRY(*out = wrap(at::mse_loss(T(x), T(target), reduction(red))))
}
ct_status ct_binary_cross_entropy_with_logits(ct_tensor x, ct_tensor target, ct_tensor weight, ct_tensor pos_weight,
                                              int32_t red, ct_tensor *out) {
  CT_TRY(*out = wrap(at::binary_cross_entropy_with_logits(T(x), T(target), opt(weight), opt(pos_weight), reduction(red))))
}
ct_status ct_cosine_similarity(ct_tensor a, ct_tensor b, int64_t dim, double eps, ct_tensor *out) {
  CT_TRY(*out = wrap(at::cosine_similarity(T(a), T(b), dim, eps)))
}

ct_status ct_interpolate(ct_tensor x, int64_t h, int64_t w, int32_t mode, bool align_corners, bool antialias,
                         ct_tensor *out) {
  CT_TRY(
    std::vector<int64_t> size{h, w};
    if (mode == 0) {
      *out = wrap(antialias ? at::_upsample_bilinear2d_aa(T(x), size, align_corners)
                            : at::upsample_bilinear2d(T(x), size, align_corners));
    } else if (mode == 1) {
      *out = wrap(antialias ? at::_upsample_bicubic2d_aa(T(x), size, align_corners)
                            : at::upsample_bicubic2d(T(x), size, align_corners));
    } else {
      throw std::invalid_argument("unknown interpolation mode " + std::to_string(mode));
    })
}
ct_status ct_affine_grid(ct_tensor theta, const int64_t *size, int64_t n, bool align_corners, ct_tensor *out) {
  CT_TRY(*out = wrap(at::affine_grid_generator(T(theta), ints(size, n), align_corners)))
}
ct_status ct_grid_sample(ct_tensor x, ct_tensor grid, int32_t interpolation, int32_t padding, bool align_corners,
                         ct_tensor *out) {
  CT_TRY(*out = wrap(at::grid_sampler(T(x), T(grid), interpolation, padding, align_corners)))
}

}  // extern "C"
