"""PyTorch's side of `Scripts/bench --only ddp`: one rank of a DistributedDataParallel training
step, launched by torchrun (Gloo). transformers' CLIPModel from a `model_reference.py make-model`
folder, wrapped as open_clip's CLIP.forward (normalised features, exp(logit_scale)) in
torch.nn.parallel.DistributedDataParallel with its defaults (as open_clip's main.py); open_clip's
`gather_features(local_loss=True, gather_with_grad=True)` and `ClipLoss` (labels
arange(n) + n * rank); AdamW with open_clip's parameter groups; the logit-scale clamp after the
step (open_clip's train.py). Rank r takes rows r*b..(r+1)*b of the fixed batch. Rank 0 prints one
JSON line with the same keys as `bench dp-train-step`; the losses are averaged across ranks after
the timed steps (the global batch's loss, as ours logs it).

    torchrun --nproc-per-node 2 --master-addr 127.0.0.1 Benchmarks/ddp_reference.py --model bench/models/T
"""
import argparse
import math
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.distributed.nn
import torch.nn.functional as F

from model_reference import emit, image_embeds, l2n, load_batch, load_model, param_groups, peak_rss_mb, set_threads, text_embeds


class OpenCLIPForward(torch.nn.Module):
    """open_clip's CLIP.forward over a transformers CLIPModel."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, input_ids, attention_mask):
        image = l2n(image_embeds(self.model, pixel_values))
        text = l2n(text_embeds(self.model, input_ids, attention_mask))
        return image, text, self.model.logit_scale.exp()


def gather_features(image_features, text_features):
    """open_clip's gather_features with local_loss=True, gather_with_grad=True."""
    all_image_features = torch.cat(torch.distributed.nn.all_gather(image_features), dim=0)
    all_text_features = torch.cat(torch.distributed.nn.all_gather(text_features), dim=0)
    return all_image_features, all_text_features


def clip_loss(image_features, text_features, logit_scale, rank):
    """open_clip's ClipLoss(local_loss=True, gather_with_grad=True, world_size > 1)."""
    all_image_features, all_text_features = gather_features(image_features, text_features)
    logits_per_image = logit_scale * image_features @ all_text_features.T
    logits_per_text = logit_scale * text_features @ all_image_features.T
    labels = torch.arange(logits_per_image.shape[0], dtype=torch.long) + logits_per_image.shape[0] * rank
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    a = p.parse_args()
    set_threads(a.threads)
    dist.init_process_group("gloo", init_method="env://")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = load_model(a.model, a.attn)
    model.train()  # dropout is 0 in the config, so train == eval numerically
    ddp = torch.nn.parallel.DistributedDataParallel(OpenCLIPForward(model))
    batch = load_batch(a.model)
    total = batch["input_ids"].shape[0]
    assert total % world == 0, f"batch {total} does not split into {world} equal parts"
    b = total // world
    own = {k: v[rank * b:(rank + 1) * b].contiguous() for k, v in batch.items()}
    opt = torch.optim.AdamW(param_groups(model), lr=1e-4, betas=(0.9, 0.98), eps=1e-6)

    load = os.getloadavg()[0]
    losses, phases = [], []
    for step in range(a.warmup + a.steps):
        started = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        image, text, scale = ddp(own["pixel_values"], own["input_ids"], own["attention_mask"])
        loss = clip_loss(image, text, scale, rank)
        forward = time.perf_counter()
        loss.backward()   # DDP's bucketed all-reduce runs inside, overlapping the backward pass
        backward = time.perf_counter()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        done = time.perf_counter()
        losses.append(loss.detach())
        if step >= a.warmup:
            phases.append({"forward_loss": forward - started, "backward": backward - forward, "optimizer": done - backward, "step": done - started})
    # The global batch's loss per step (each rank's is its rows' mean): after the timed steps.
    losses = torch.stack(losses)
    dist.all_reduce(losses)
    losses = (losses / world).tolist()
    if rank == 0:
        steps = [ph["step"] for ph in phases]
        emit({"median_s": statistics.median(steps), "min_s": min(steps), "steps_s": steps,
              "phases_s": {k: statistics.median(ph[k] for ph in phases) for k in phases[0]},
              "loss_first": losses[0], "loss_last": losses[-1], "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads(),
              "world_size": world, "batch_per_rank": b, "loadavg_1m": load})
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
