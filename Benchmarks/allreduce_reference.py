"""PyTorch's side of `Scripts/bench --only allreduce`: one rank of torch.distributed's Gloo
all-reduce of one float32 tensor, timed exactly as `dist-worker bench` times ours (barrier, then
one all-reduce, per iteration; median). Started once per rank with RANK, WORLD_SIZE, MASTER_ADDR
and MASTER_PORT set; rank 0 prints one JSON line."""
import argparse, json, statistics, time

import torch
import torch.distributed as dist


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--megabytes", type=float, default=25.0)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    a = p.parse_args()
    dist.init_process_group("gloo", init_method="env://")
    tensor = torch.ones(int(a.megabytes * 1e6) // 4)
    for _ in range(a.warmup):
        dist.all_reduce(tensor)
    seconds = []
    for _ in range(a.iterations):
        dist.barrier()
        started = time.perf_counter()
        dist.all_reduce(tensor)
        seconds.append(time.perf_counter() - started)
    if dist.get_rank() == 0:
        median = sorted(seconds)[len(seconds) // 2]
        print(json.dumps({"median_s": median, "megabytes": a.megabytes, "world_size": dist.get_world_size(),
                          "iterations": a.iterations}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
