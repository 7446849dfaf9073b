// ctorch_distributed: c10d (TCPStore, Gloo, NCCL) behind the same C ABI rules as ctorch.h:
// a status per call, ct_last_error() after a failure, caller-owned handles freed once.
//
// Every call that talks to other processes takes a timeout in milliseconds and fails (never
// blocks for good) when the peers have not answered by then.
#ifndef CTORCH_DISTRIBUTED_H
#define CTORCH_DISTRIBUTED_H

#include "ctorch.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_store_opaque *ct_store;
typedef struct ct_process_group_opaque *ct_process_group;

/// Reductions both backends support. (Gloo has no average: the Swift layer sums and divides.)
typedef enum { CT_REDUCE_SUM = 0, CT_REDUCE_MAX = 1, CT_REDUCE_MIN = 2 } ct_reduce_op;
typedef enum { CT_BACKEND_GLOO = 0, CT_BACKEND_NCCL = 1 } ct_backend;

/// Whether this bridge can make NCCL process groups (a CUDA build that found NCCL's headers).
bool ct_distributed_has_nccl(void);

/// A c10d::TCPStore at host:port. is_server: this process listens on the port (and waits up to
/// timeout_ms for world_size processes to connect); otherwise it connects, retrying up to
/// timeout_ms. Every key is put under `prefix` (may be empty).
ct_status ct_store_new(const char *host, int32_t port, bool is_server, int64_t world_size, int64_t timeout_ms,
                       const char *prefix, ct_store *out);
void ct_store_free(ct_store s);
ct_status ct_store_set(ct_store s, const char *key, const uint8_t *value, size_t nbytes);
/// Whether every key exists now (does not wait).
ct_status ct_store_check(ct_store s, const char *const *keys, int64_t n, bool *out);

/// A process group over the store. Gloo binds its sockets to `interface` (a network interface
/// name) when non-empty, else to the address `hostname` resolves to when non-empty, else to
/// the address of this machine's hostname (c10d's default). Waits up to timeout_ms for every
/// rank; later collectives use the same timeout.
ct_status ct_process_group_new(ct_store store, int32_t rank, int32_t world_size, int32_t backend,
                               const char *interface, const char *hostname, int64_t timeout_ms,
                               ct_process_group *out);
void ct_process_group_free(ct_process_group g);

// Collectives: blocking, each tensor handled on its own (not summed across the list).
/// In place, every tensor.
ct_status ct_all_reduce(ct_process_group g, const ct_tensor *ts, int64_t n, int32_t op, int64_t timeout_ms);
/// world_size tensors shaped like t, in rank order.
ct_status ct_all_gather(ct_process_group g, ct_tensor t, int64_t timeout_ms, ct_tensor_list *out);
/// In place, every tensor, from root.
ct_status ct_broadcast(ct_process_group g, const ct_tensor *ts, int64_t n, int32_t root, int64_t timeout_ms);
/// inputs: world_size tensors shaped like output; output = reduction over ranks of inputs[rank].
ct_status ct_reduce_scatter(ct_process_group g, const ct_tensor *inputs, int64_t n, ct_tensor output, int32_t op,
                            int64_t timeout_ms);
ct_status ct_barrier(ct_process_group g, int64_t timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
