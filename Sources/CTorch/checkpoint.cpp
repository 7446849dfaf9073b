// Gradient checkpointing: a custom autograd function that runs a caller's block without keeping
// its activations and runs it again in backward. libtorch's C++ API has no torch.utils.checkpoint,
// so this is PyTorch's CheckpointFunction (use_reentrant=True) in C++:
//  * forward: the block runs under no-grad (Function::apply's own guard); only the inputs are
//    saved, with the CPU RNG state (and that of each CUDA device an input lives on) and the
//    autocast state, so that the recomputation draws the same dropout masks in the same dtypes;
//  * backward: under the forward's RNG state (the surrounding one is restored afterwards) and
//    autocast state, with grad on, the block runs on detached inputs that require grad as the
//    originals did, and the incoming gradients are backpropagated through it with a nested
//    backward, which accumulates the parameters' .grad and the detached inputs' .grad (returned).
// Unlike PyTorch's, the trainable parameters are passed in too (their gradient slots stay empty):
// a reentrant checkpoint whose inputs need no gradient never runs its backward, so the first
// trainable layer after a locked (LiT) prefix would get no gradient at all.
#include "bridge.h"
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/engine.h>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

/// One device type's autocast settings, captured in forward and re-entered in backward
/// (torch.amp.autocast's __enter__/__exit__).
struct AutocastSettings {
  at::DeviceType device;
  bool enabled;
  at::ScalarType dtype;
  bool cache_enabled;
  static AutocastSettings current(at::DeviceType device) {
    return {device, at::autocast::is_autocast_enabled(device), at::autocast::get_autocast_dtype(device),
            at::autocast::is_autocast_cache_enabled()};
  }
};

class AutocastScope {
 public:
  explicit AutocastScope(const AutocastSettings &s) : previous_(AutocastSettings::current(s.device)) {
    at::autocast::set_autocast_enabled(s.device, s.enabled);
    at::autocast::set_autocast_dtype(s.device, s.dtype);
    at::autocast::increment_nesting();
    at::autocast::set_autocast_cache_enabled(s.cache_enabled);
  }
  ~AutocastScope() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(previous_.device, previous_.enabled);
    at::autocast::set_autocast_dtype(previous_.device, previous_.dtype);
    at::autocast::set_autocast_cache_enabled(previous_.cache_enabled);
  }
  AutocastScope(const AutocastScope &) = delete;
  AutocastScope &operator=(const AutocastScope &) = delete;

 private:
  AutocastSettings previous_;
};

/// The default generators the block may draw from: the CPU's and each CUDA device of an input.
std::vector<at::Generator> generators_of(const variable_list &inputs) {
  std::vector<at::Generator> gens{at::detail::getDefaultCPUGenerator()};
  std::vector<c10::DeviceIndex> seen;
  for (const auto &t : inputs) {
    if (!t.defined() || !t.is_cuda()) continue;
    auto index = t.device().index();
    if (std::find(seen.begin(), seen.end(), index) != seen.end()) continue;
    seen.push_back(index);
    gens.push_back(at::globalContext().defaultGenerator(t.device()));
  }
  return gens;
}

std::vector<at::Tensor> states_of(std::vector<at::Generator> &gens) {
  std::vector<at::Tensor> states;
  for (auto &g : gens) {
    std::lock_guard<std::mutex> lock(g.mutex());
    states.push_back(g.get_state());
  }
  return states;
}

void set_states(std::vector<at::Generator> &gens, const std::vector<at::Tensor> &states) {
  for (size_t i = 0; i < gens.size(); i++) {
    std::lock_guard<std::mutex> lock(gens[i].mutex());
    gens[i].set_state(states[i]);
  }
}

/// torch.random.fork_rng: the generators' states now are theirs again when the scope ends.
class ForkRNG {
 public:
  explicit ForkRNG(std::vector<at::Generator> &gens) : gens_(gens), saved_(states_of(gens)) {}
  ~ForkRNG() {
    try {
      set_states(gens_, saved_);
    } catch (...) {  // a destructor must not throw; the states were valid when read
    }
  }
  ForkRNG(const ForkRNG &) = delete;
  ForkRNG &operator=(const ForkRNG &) = delete;

 private:
  std::vector<at::Generator> &gens_;
  std::vector<at::Tensor> saved_;
};

/// The caller's block and what the recomputation must see again. Owns the caller's context:
/// `release` runs once, when the autograd node (or a failed forward) lets go of it.
struct Block : torch::CustomClassHolder {
  ct_checkpoint_block run;
  void *context;
  void (*release)(void *);
  std::vector<at::Generator> generators;
  std::vector<at::Tensor> forward_rng;
  AutocastSettings cpu_autocast = AutocastSettings::current(at::kCPU);
  AutocastSettings cuda_autocast = AutocastSettings::current(at::kCUDA);

  Block(ct_checkpoint_block run, void *context, void (*release)(void *)) : run(run), context(context), release(release) {}
  ~Block() override {
    if (release) release(context);
  }

  /// Runs the caller's block; its failure (a status and a message) becomes a C++ exception here,
  /// on this side of the boundary.
  at::Tensor operator()(const variable_list &inputs) const {
    std::vector<ct_tensor> handles;
    handles.reserve(inputs.size());
    for (const auto &t : inputs) handles.push_back(wrap(t));   // the block takes them over
    ct_tensor out = nullptr;
    char *message = nullptr;
    ct_status status = run(context, handles.data(), static_cast<int64_t>(handles.size()), &out, &message);
    std::unique_ptr<at::Tensor> result(reinterpret_cast<at::Tensor *>(out));
    if (status != 0) {
      std::string text = message ? message : "the checkpointed block failed";
      free(message);
      if (status == CT_ERROR_OUT_OF_MEMORY) throw c10::OutOfMemoryError({__func__, __FILE__, __LINE__}, text);
      throw std::runtime_error(text);
    }
    free(message);
    if (!result || !result->defined()) throw std::runtime_error("the checkpointed block returned no tensor");
    return std::move(*result);
  }
};

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  // `all` is the block's inputs followed by its trainable parameters.
  static at::Tensor forward(AutogradContext *ctx, c10::intrusive_ptr<Block> block, int64_t input_count, at::TensorList all) {
    variable_list inputs(all.begin(), all.begin() + input_count);
    block->generators = generators_of(inputs);
    block->forward_rng = states_of(block->generators);
    ctx->save_for_backward(variable_list(all.begin(), all.end()));
    ctx->saved_data["input_count"] = input_count;
    ctx->saved_data["block"] = c10::IValue::make_capsule(block);
    return (*block)(inputs);
  }

  static variable_list backward(AutogradContext *ctx, variable_list grad_outputs) {
    // As PyTorch's: a nested backward fills .grad, which autograd.grad(...) or backward(inputs=...)
    // would not expect.
    TORCH_CHECK(torch::autograd::Engine::get_default_engine().is_checkpoint_valid(),
                "gradient checkpointing is incompatible with autograd.grad() and with backward(inputs: ...); "
                "call backward() on the loss");
    auto block = c10::static_intrusive_pointer_cast<Block>(ctx->saved_data["block"].toCapsule());
    auto input_count = ctx->saved_data["input_count"].toInt();
    auto saved = ctx->get_saved_variables();
    variable_list detached;
    for (int64_t i = 0; i < input_count; i++) {
      detached.push_back(saved[i].detach());
      detached.back().requires_grad_(saved[i].requires_grad());
    }
    at::Tensor output;
    {
      ForkRNG fork(block->generators);
      set_states(block->generators, block->forward_rng);
      at::AutoGradMode grad(true);
      AutocastScope cuda(block->cuda_autocast), cpu(block->cpu_autocast);
      output = (*block)(detached);
    }
    TORCH_CHECK(output.requires_grad(), "none of the checkpointed block's outputs requires grad: nothing to recompute for");
    torch::autograd::backward({output}, {grad_outputs[0]});
    variable_list grads(2 + saved.size());   // none for the block and the count; none for parameters
    for (int64_t i = 0; i < input_count; i++) grads[2 + i] = detached[i].grad();
    return grads;
  }
};

}  // namespace

extern "C" {

ct_status ct_checkpoint(ct_checkpoint_block run, void *context, void (*release)(void *context), const ct_tensor *inputs,
                        int64_t input_count, const ct_tensor *parameters, int64_t parameter_count, ct_tensor *out) {
  CT_TRY(
    // Owns the context from here on, whatever happens next.
    auto block = c10::make_intrusive<Block>(run, context, release);
    std::vector<at::Tensor> all;
    for (int64_t i = 0; i < input_count; i++) all.push_back(T(inputs[i]));
    for (int64_t i = 0; i < parameter_count; i++) all.push_back(T(parameters[i]));
    *out = wrap(CheckpointFunction::apply(std::move(block), input_count, at::TensorList(all))))
}

}  // extern "C"
