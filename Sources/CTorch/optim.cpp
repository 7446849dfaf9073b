// Optimizer kernels: torch's fused AdamW / SGD steps and the foreach ops around them (step
// counts, gradient clipping). One libtorch call each; list arguments are arrays of handles.
#include "bridge.h"

using namespace ctorch;

extern "C" {

ct_status ct_foreach_add_scalar_(const ct_tensor *ts, int64_t n, ct_scalar s) {
  CT_TRY(at::_foreach_add_(tensors(ts, n), scalar(s)))
}
ct_status ct_foreach_mul_tensor_(const ct_tensor *ts, int64_t n, ct_tensor factor) {
  CT_TRY(at::_foreach_mul_(tensors(ts, n), T(factor)))
}
ct_status ct_foreach_norm(const ct_tensor *ts, int64_t n, double p, ct_tensor_list *out) {
  CT_TRY(*out = wrap_list(at::_foreach_norm(tensors(ts, n), p)))
}

ct_status ct_fused_adamw_(const ct_tensor *params, const ct_tensor *grads, const ct_tensor *exp_avgs,
                          const ct_tensor *exp_avg_sqs, const ct_tensor *max_exp_avg_sqs, int64_t n_max,
                          const ct_tensor *state_steps, int64_t n, double lr, double beta1, double beta2,
                          double weight_decay, double eps, bool amsgrad, bool maximize, ct_tensor grad_scale,
                          ct_tensor found_inf) {
  CT_TRY(at::_fused_adamw_(tensors(params, n), tensors(grads, n), tensors(exp_avgs, n), tensors(exp_avg_sqs, n),
                           tensors(max_exp_avg_sqs, n_max), tensors(state_steps, n), lr, beta1, beta2, weight_decay,
                           eps, amsgrad, maximize, opt(grad_scale), opt(found_inf)))
}

ct_status ct_fused_sgd_(const ct_tensor *params, const ct_tensor *grads, const ct_tensor *momentum_buffers,
                        int64_t n_buffers, int64_t n, double weight_decay, double momentum, double lr,
                        double dampening, bool nesterov, bool maximize, bool is_first_step, ct_tensor grad_scale,
                        ct_tensor found_inf) {
  CT_TRY(at::_fused_sgd_(tensors(params, n), tensors(grads, n), tensors(momentum_buffers, n_buffers), weight_decay,
                         momentum, lr, dampening, nesterov, maximize, is_first_step, opt(grad_scale), opt(found_inf)))
}

}  // extern "C"
