// Distributed: c10d's TCPStore and process groups (Gloo on the CPU, NCCL on CUDA builds).
//
// c10d's headers compile to nothing unless USE_DISTRIBUTED / USE_C10D_GLOO are set; libtorch_cpu
// was built with both, so defining them here only exposes what the library already exports.
// ProcessGroupGloo.hpp includes Gloo's own headers, which the wheel does not ship: the few it
// needs are vendored under vendor/gloo (see vendor/gloo/README.md for the commit).
#define USE_DISTRIBUTED 1
#define USE_C10D_GLOO 1
// NCCL lives in libtorch_cuda, and ProcessGroupNCCL.hpp needs nccl.h plus the cuBLAS, cuSOLVER
// and cuSPARSE headers (through ATen/cuda/CUDAContext.h). A CUDA build whose include path lacks
// them still builds; it refuses NCCL groups and says why. Not yet compiled or run on a GPU here.
#if defined(CTORCH_WITH_CUDA) && __has_include(<nccl.h>) && __has_include(<crt/host_config.h>) && \
    __has_include(<cublas_v2.h>) && __has_include(<cusolverDn.h>) && __has_include(<cusparse.h>)
#define CTORCH_WITH_NCCL 1
#define USE_C10D_NCCL 1
#elif defined(CTORCH_WITH_CUDA)
#pragma message("distributed.cpp: NCCL process groups left out: nccl.h or the CUDA/cuBLAS/cuSOLVER/cuSPARSE headers are not on the include path")
#endif

#include "bridge.h"
#include "ctorch_distributed.h"
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
// SwiftPM defines DEBUG=1 in debug builds, which Gloo's LogLevel enum has as a member name.
#pragma push_macro("DEBUG")
#undef DEBUG
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#pragma pop_macro("DEBUG")
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef CTORCH_WITH_NCCL
#include <cstdlib>
#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {
using Store = c10::intrusive_ptr<c10d::Store>;
using Backend = c10::intrusive_ptr<c10d::Backend>;
using Milliseconds = std::chrono::milliseconds;

Store &S(ct_store s) {
  if (s == nullptr) throw std::invalid_argument("null store handle");
  return *reinterpret_cast<Store *>(s);
}
Backend &G(ct_process_group g) {
  if (g == nullptr) throw std::invalid_argument("null process group handle");
  return *reinterpret_cast<Backend *>(g);
}

Milliseconds ms(int64_t timeout_ms) {
  if (timeout_ms <= 0) throw std::invalid_argument("the timeout must be positive, got " + std::to_string(timeout_ms) + " ms");
  return Milliseconds(timeout_ms);
}

c10d::ReduceOp reduce_op(int32_t op) {
  switch (op) {
    case CT_REDUCE_SUM: return c10d::ReduceOp::SUM;
    case CT_REDUCE_MAX: return c10d::ReduceOp::MAX;
    case CT_REDUCE_MIN: return c10d::ReduceOp::MIN;
  }
  throw std::invalid_argument("unknown reduce op " + std::to_string(op));
}

std::vector<at::Tensor> tensors(const ct_tensor *ts, int64_t n) {
  std::vector<at::Tensor> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) out.push_back(T(ts[i]));
  return out;
}

// The Work is waited on a little past the backend's own timeout, so that the backend's more
// specific message (which peer, which operation) wins; the margin only guards against a
// backend that never gives up.
void wait(const c10::intrusive_ptr<c10d::Work> &work, Milliseconds timeout) {
  work->wait(timeout + Milliseconds(2000));
}

// c10d's collectives take a list of tensors meaning "one per local device", all the same size.
// Ours are independent tensors (a model's gradients), so each gets its own collective; they are
// all queued before the first wait so that the backend's threads can overlap them.
template <typename Start>
void each(std::vector<at::Tensor> &ts, Milliseconds timeout, Start start) {
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  works.reserve(ts.size());
  for (auto &t : ts) {
    std::vector<at::Tensor> one{t};
    works.push_back(start(one));
  }
  for (auto &work : works) wait(work, timeout);
}

Backend new_gloo(const Store &store, int rank, int size, const char *interface, const char *hostname, Milliseconds timeout) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  if (interface != nullptr && *interface != '\0')
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
  else if (hostname != nullptr && *hostname != '\0')
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
  else
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
}

Backend new_nccl(const Store &store, int rank, int size, Milliseconds timeout) {
#ifdef CTORCH_WITH_NCCL
  // By default a stuck NCCL collective is ended by c10d's watchdog aborting the process; with
  // blocking waits it is an exception from Work::wait instead, which becomes our error.
  setenv("TORCH_NCCL_BLOCKING_WAIT", "1", /*overwrite=*/0);
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
#elif defined(CTORCH_WITH_CUDA)
  (void)store, (void)rank, (void)size, (void)timeout;
  throw std::runtime_error("this CUDA build was compiled without NCCL's headers (nccl.h from the nvidia-nccl wheel, and "
                           "the CUDA, cuBLAS, cuSOLVER and cuSPARSE headers): run Scripts/bootstrap --cuda and rebuild, "
                           "or use the CPU (Gloo)");
#else
  (void)store, (void)rank, (void)size, (void)timeout;
  throw std::runtime_error("NCCL process groups need CUDA, but this build does not link libtorch_cuda; "
                           "run Scripts/bootstrap --cuda and rebuild, or use the CPU (Gloo)");
#endif
}
}  // namespace

extern "C" {

bool ct_distributed_has_nccl(void) {
#ifdef CTORCH_WITH_NCCL
  return true;
#else
  return false;
#endif
}

// c10d logs every failed socket call as a warning with a C++ backtrace. Python's torch applies
// TORCH_CPP_LOG_LEVEL at import; a C++ program must ask: errors only, unless the user set it.
static void quiet_c10d_logging() {
  static bool done = [] {
    setenv("TORCH_CPP_LOG_LEVEL", "ERROR", /*overwrite=*/0);
    c10::initLogging();
    return true;
  }();
  (void)done;
}

ct_status ct_store_new(const char *host, int32_t port, bool is_server, int64_t world_size, int64_t timeout_ms,
                       const char *prefix, ct_store *out) {
  quiet_c10d_logging();
  CT_TRY(
    if (port <= 0 || port > 65535) throw std::invalid_argument("port " + std::to_string(port) + " is not in 1...65535");
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = is_server;
    options.numWorkers = static_cast<std::size_t>(world_size);
    options.waitWorkers = true;  // a client counts itself in; only the server waits
    options.timeout = ms(timeout_ms);
    Store store = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    if (prefix != nullptr && *prefix != '\0') store = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
    *out = reinterpret_cast<ct_store>(new Store(std::move(store))))
}

void ct_store_free(ct_store s) { delete reinterpret_cast<Store *>(s); }

ct_status ct_store_set(ct_store s, const char *key, const uint8_t *value, size_t nbytes) {
  CT_TRY(S(s)->set(key, std::vector<uint8_t>(value, value + nbytes)))
}

ct_status ct_store_check(ct_store s, const char *const *keys, int64_t n, bool *out) {
  CT_TRY(*out = S(s)->check(std::vector<std::string>(keys, keys + n)))
}

ct_status ct_process_group_new(ct_store store, int32_t rank, int32_t world_size, int32_t backend,
                               const char *interface, const char *hostname, int64_t timeout_ms,
                               ct_process_group *out) {
  CT_TRY(
    Backend group = backend == CT_BACKEND_NCCL ? new_nccl(S(store), rank, world_size, ms(timeout_ms))
                                               : new_gloo(S(store), rank, world_size, interface, hostname, ms(timeout_ms));
    *out = reinterpret_cast<ct_process_group>(new Backend(std::move(group))))
}

void ct_process_group_free(ct_process_group g) { delete reinterpret_cast<Backend *>(g); }

ct_status ct_all_reduce(ct_process_group g, const ct_tensor *ts, int64_t n, int32_t op, int64_t timeout_ms) {
  CT_TRY(
    auto list = tensors(ts, n);
    c10d::AllreduceOptions options;
    options.reduceOp = reduce_op(op);
    options.timeout = ms(timeout_ms);
    each(list, options.timeout, [&](std::vector<at::Tensor> &one) { return G(g)->allreduce(one, options); }))
}

ct_status ct_all_gather(ct_process_group g, ct_tensor t, int64_t timeout_ms, ct_tensor_list *out) {
  CT_TRY(
    std::vector<at::Tensor> inputs{T(t)};
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int i = 0; i < G(g)->getSize(); i++) outputs[0].push_back(at::empty_like(T(t)));
    c10d::AllgatherOptions options;
    options.timeout = ms(timeout_ms);
    wait(G(g)->allgather(outputs, inputs, options), options.timeout);
    *out = reinterpret_cast<ct_tensor_list>(new std::vector<at::Tensor>(std::move(outputs[0]))))
}

ct_status ct_broadcast(ct_process_group g, const ct_tensor *ts, int64_t n, int32_t root, int64_t timeout_ms) {
  CT_TRY(
    auto list = tensors(ts, n);
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.timeout = ms(timeout_ms);
    each(list, options.timeout, [&](std::vector<at::Tensor> &one) { return G(g)->broadcast(one, options); }))
}

ct_status ct_reduce_scatter(ct_process_group g, const ct_tensor *inputs, int64_t n, ct_tensor output, int32_t op,
                            int64_t timeout_ms) {
  CT_TRY(
    std::vector<std::vector<at::Tensor>> in{tensors(inputs, n)};
    std::vector<at::Tensor> outputs{T(output)};
    c10d::ReduceScatterOptions options;
    options.reduceOp = reduce_op(op);
    options.timeout = ms(timeout_ms);
    wait(G(g)->reduce_scatter(outputs, in, options), options.timeout))
}

ct_status ct_barrier(ct_process_group g, int64_t timeout_ms) {
  CT_TRY(
    c10d::BarrierOptions options;
    options.timeout = ms(timeout_ms);
    wait(G(g)->barrier(options), options.timeout))
}

}  // extern "C"
