#!/usr/bin/env python
"""PyTorch-eager reference side of the CLIP benchmark suite.

Every subcommand prints exactly ONE JSON line on stdout; all logging goes to
stderr. Run with the reference venv, e.g.

    ~/.cache/cliptune/reference-venv/bin/python reference.py make-model --preset T --out /tmp/clipT
    ~/.cache/cliptune/reference-venv/bin/python reference.py train-step --model /tmp/clipT

Subcommands: make-model, train-step, matmul-peak, embed, onnx-export, onnx-latency.
train-step and embed take --device (cpu, cuda, cuda:N); train-step takes --bf16 (autocast
bfloat16) or --fp16 (autocast float16 with torch.amp.GradScaler), --batch (the fixed batch
tiled) and --gradient-checkpointing, as `bench train-step` does.
Presets: S and T (both towers the same size, 64 px) and B32 (ViT-B/32-sized, for GPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
import warnings

# Keep stdout clean for the single JSON line: library chatter goes to stderr.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

BOS_ID = 49406
EOS_ID = 49407
PAD_ID = 0  # padding id written after EOS in the fixed batch (attention_mask = 0 there)

# Model/batch presets. In S and T both towers share the same width/depth; B32 is OpenAI's
# ViT-B/32 CLIP (image tower 768 x 12 at 224 px, patch 32; text tower 512 x 12, 77 tokens;
# projections to 512), random weights, for GPUs (Scripts/gpu-check).
PRESETS = {
    "S": dict(hidden=256, layers=4, heads=4, intermediate=1024, projection=256, batch=64, seq=32),
    "T": dict(hidden=64, layers=2, heads=2, intermediate=256, projection=64, batch=32, seq=32),
    "B32": dict(vision=dict(hidden=768, layers=12, heads=12, intermediate=3072),
                text=dict(hidden=512, layers=12, heads=8, intermediate=2048),
                projection=512, batch=128, seq=77, image_size=224, patch_size=32),
}
IMAGE_SIZE = 64  # S and T
PATCH_SIZE = 8


def tower_sizes(p: dict, tower: str) -> dict:
    """A preset's sizes for one tower ("vision" or "text")."""
    t = p.get(tower, p)
    return dict(hidden_size=t["hidden"], num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
                intermediate_size=t["intermediate"])


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def emit(obj):
    """The one JSON line on stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def set_threads(n: int):
    # interop must be set before any inter-op parallel work has started.
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError as e:  # already set / pool already started
        log(f"set_num_interop_threads(1) ignored: {e}")
    torch.set_num_threads(n)


def peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, warmup: int, reps: int):
    """Run fn warmup times untimed, then reps times timed; return list of seconds."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# --------------------------------------------------------------------------- model


def build_config(preset: str):
    from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

    p = PRESETS[preset]
    common = dict(
        hidden_act="quick_gelu",
        dropout=0.0,
        attention_dropout=0.0,
        projection_dim=p["projection"],
    )
    vision = CLIPVisionConfig(image_size=p.get("image_size", IMAGE_SIZE), patch_size=p.get("patch_size", PATCH_SIZE), num_channels=3,
                              **tower_sizes(p, "vision"), **common)
    # transformers' CLIPTextConfig defaults are pad=1, bos=49406, eos=49407; set them
    # explicitly. eos != 2 => pooling picks the FIRST position whose id == eos_token_id.
    text = CLIPTextConfig(
        vocab_size=49408,
        max_position_embeddings=p["seq"],
        pad_token_id=1,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        **tower_sizes(p, "text"),
        **common,
    )
    return CLIPConfig(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        projection_dim=p["projection"],
    )


def make_batch(B: int, L: int, gen: torch.Generator, image_size: int = IMAGE_SIZE):
    """Fixed synthetic batch: images ~ N(0,1); token rows = BOS, random ids, EOS at p, then PAD."""
    pixel_values = torch.randn(B, 3, image_size, image_size, generator=gen, dtype=torch.float32)
    input_ids = torch.randint(1, EOS_ID, (B, L), generator=gen, dtype=torch.int64)  # ids in [1, 49406]
    input_ids[:, 0] = BOS_ID
    eos_pos = torch.randint(4, L, (B,), generator=gen)  # p in [4, L-1]
    pos = torch.arange(L).unsqueeze(0)
    input_ids[pos == eos_pos[:, None]] = EOS_ID
    input_ids[pos > eos_pos[:, None]] = PAD_ID
    attention_mask = (pos <= eos_pos[:, None]).to(torch.int64)
    return dict(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask)


def load_model(model_dir: str, attn: str = "sdpa"):
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(model_dir, attn_implementation=attn, dtype=torch.float32)
    return model


def load_batch(model_dir: str, device: str = "cpu"):
    from safetensors.torch import load_file

    return {k: v.to(device) for k, v in load_file(os.path.join(model_dir, "batch.safetensors")).items()}


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_dtype(a):
    return torch.bfloat16 if a.bf16 else torch.float16 if getattr(a, "fp16", False) else None


def l2n(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(p=2, dim=-1, keepdim=True)


def image_embeds(model, pixel_values):
    return model.get_image_features(pixel_values=pixel_values).pooler_output


def text_embeds(model, input_ids, attention_mask=None):
    return model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output


def clip_loss(model, batch):
    img = l2n(image_embeds(model, batch["pixel_values"]))
    txt = l2n(text_embeds(model, batch["input_ids"], batch["attention_mask"]))
    logits = model.logit_scale.exp() * img @ txt.T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


# --------------------------------------------------------------------------- FLOPs


def clip_flops(cfg, B: int, L: int) -> dict:
    """Analytic matmul FLOPs of one CLIP training step (the Swift side mirrors this).

    Only matmul-like ops are counted, 2*m*n*k each (a multiply-add = 2 FLOPs);
    layer norms, softmax, activations, biases, embeddings lookups and the loss
    are ignored. Per transformer tower with B sequences of N tokens, width d,
    MLP width f, n_layers layers (heads do not change the count):

        per layer  = 8*B*N*d^2        # q, k, v, out projections (4 Linear d->d)
                   + 4*B*N*d*f        # fc1 d->f and fc2 f->d
                   + 4*B*N^2*d        # Q@K^T and P@V over all heads (full N x N,
                                      #   the causal text mask is not exploited)
        tower      = n_layers * per layer + 2*B*d*P   # pooled token -> projection P

    Vision: N = (image/patch)^2 + 1 (CLS), plus the patch conv as a matmul:
        2*B*(image/patch)^2*(3*patch^2)*d.
    Text:   N = L (sequence length of the batch).
    Similarity logits: 2*B*B*P (img @ txt.T).

    forward = vision + text + logits;  train step = 3 * forward
    (backward ~= 2x forward: grad wrt inputs + grad wrt weights).
    """
    v, t, P = cfg.vision_config, cfg.text_config, cfg.projection_dim

    def tower(N, d, f, n_layers):
        per_layer = 8 * B * N * d * d + 4 * B * N * d * f + 4 * B * N * N * d
        return n_layers * per_layer + 2 * B * d * P

    grid = v.image_size // v.patch_size
    n_patches = grid * grid
    vision = tower(n_patches + 1, v.hidden_size, v.intermediate_size, v.num_hidden_layers)
    vision += 2 * B * n_patches * (v.num_channels * v.patch_size**2) * v.hidden_size
    text = tower(L, t.hidden_size, t.intermediate_size, t.num_hidden_layers)
    logits = 2 * B * B * P
    fwd = vision + text + logits
    return dict(vision_fwd=vision, text_fwd=text, logits_fwd=logits, forward=fwd, train_step=3 * fwd)


# --------------------------------------------------------------------------- subcommands


def cmd_make_model(a):
    from safetensors.torch import save_file
    from transformers import CLIPModel

    torch.manual_seed(a.seed)
    cfg = build_config(a.preset)
    model = CLIPModel(cfg).eval()
    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(a.out, safe_serialization=True)

    p = PRESETS[a.preset]
    gen = torch.Generator().manual_seed(a.seed + 1)
    batch = make_batch(p["batch"], p["seq"], gen, p.get("image_size", IMAGE_SIZE))
    save_file({k: v.contiguous() for k, v in batch.items()}, os.path.join(a.out, "batch.safetensors"))
    n = sum(x.numel() for x in model.parameters())
    log(f"saved preset {a.preset} ({n} params) + batch B={p['batch']} L={p['seq']} to {a.out}")
    emit({"preset": a.preset, "parameters": n, "out": a.out})


def param_groups(model, weight_decay=0.1):
    # open_clip's rule (open_clip/training/main.py).
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    no_decay = [p for n, p in named if exclude(n, p)]
    decay = [p for n, p in named if not exclude(n, p)]
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def cmd_train_step(a):
    if a.bf16 and a.fp16:
        raise SystemExit("--bf16 and --fp16 exclude each other")
    set_threads(a.threads)
    torch.manual_seed(0)
    device = torch.device(a.device)
    model = load_model(a.model, a.attn).to(device)
    model.train()  # dropout is 0 in the config, so train == eval numerically
    if a.gradient_checkpointing:  # torch.utils.checkpoint per encoder layer, reentrant as ours
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    batch = load_batch(a.model, device)
    if a.batch is not None:  # the fixed batch tiled, as `bench train-step --batch`
        batch = {k: tile_rows(v, a.batch) for k, v in batch.items()}
    B, L = batch["input_ids"].shape
    opt = torch.optim.AdamW(param_groups(model), lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    dtype = autocast_dtype(a)
    # fp16: torch.amp's dynamic loss scaling with its defaults (scale 2^16, growth every 2000 steps).
    scaler = torch.amp.GradScaler(device.type) if a.fp16 else None
    losses = []
    skipped = [0]

    def step():
        opt.zero_grad(set_to_none=True)
        if dtype is not None:
            with torch.autocast(device.type, dtype=dtype):
                loss = clip_loss(model, batch)
        else:
            loss = clip_loss(model, batch)
        if scaler is not None:
            scale = scaler.get_scale()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            skipped[0] += scaler.get_scale() < scale  # torch lowers the scale exactly when it skips
        else:
            loss.backward()
            opt.step()
        losses.append(loss.item())  # reads the value back: waits for the device

    load = os.getloadavg()[0]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps = timed(step, a.warmup, a.steps)
    flops = clip_flops(model.config, B, L)
    med = statistics.median(steps)
    log(f"train-step device={device} attn={model.config._attn_implementation} bf16={a.bf16} fp16={a.fp16} median={med*1e3:.1f} ms "
        f"-> {flops['train_step']/med/1e9:.1f} GFLOP/s")
    extra = {}
    if scaler is not None:
        extra.update(loss_scale=scaler.get_scale(), skipped_steps=skipped[0])
    if device.type == "cuda":
        extra["peak_device_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    emit({**extra,
        "device": str(device),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "fp16": a.fp16,
        "median_s": med,
        "min_s": min(steps),
        "steps_s": steps,
        "loss_first": losses[0],  # first warm-up step (loss at the initial weights)
        "loss_last": losses[-1],
        "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
        "attn": model.config._attn_implementation,
        "bf16": a.bf16,
        "gradient_checkpointing": a.gradient_checkpointing,
        "batch": B,
        "seq": L,
        "flops_per_step": flops["train_step"],
        "achieved_gflops": flops["train_step"] / med / 1e9,
        "loadavg_1m": load,
    })


def cmd_matmul_peak(a):
    set_threads(a.threads)
    load = os.getloadavg()[0]
    res = {}
    flop = 2 * a.n**3
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x = torch.randn(a.n, a.n).to(dt)
        y = torch.randn(a.n, a.n).to(dt)
        out = torch.empty(a.n, a.n, dtype=dt)
        mm = lambda: torch.mm(x, y, out=out)  # noqa: E731
        # Two warm-up calls; the second sizes the run so a slow dtype (bf16 on CPUs
        # without native bf16 dot products) stays within --budget-s seconds.
        mm()
        t = timed(mm, 0, 1)[0]
        reps = max(3, min(a.reps, int(a.budget_s / max(t, 1e-9))))
        ts = timed(mm, 0, reps)
        res[f"{name}_gflops"] = flop / statistics.median(ts) / 1e9
        res[f"{name}_reps"] = reps
        log(f"{name}: {res[f'{name}_gflops']:.1f} GFLOP/s ({reps} reps)")
    res.update(n=a.n, threads=torch.get_num_threads(), loadavg_1m=load)
    emit(res)


def tile_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """Repeat/tile along dim 0 to exactly n rows."""
    reps = -(-n // x.shape[0])
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:n].contiguous()


def cmd_embed(a):
    set_threads(a.threads)
    device = torch.device(a.device)
    model = load_model(a.model, a.attn).to(device).eval()
    batch = load_batch(a.model, device)
    if a.tower == "image":
        pv = tile_rows(batch["pixel_values"], a.batch)
        fn = lambda: l2n(image_embeds(model, pv))  # noqa: E731
    else:
        ids = tile_rows(batch["input_ids"], a.batch)
        am = tile_rows(batch["attention_mask"], a.batch)
        fn = lambda: l2n(text_embeds(model, ids, am))  # noqa: E731
    load = os.getloadavg()[0]

    def run():
        out = fn()
        synchronize(device)  # as ours, which reads a value back
        return out

    with torch.inference_mode():
        ts = timed(run, a.warmup, a.reps)
    med = statistics.median(ts)
    emit({"median_s": med, "items_per_s": a.batch / med, "tower": a.tower, "batch": a.batch, "device": str(device),
          "attn": model.config._attn_implementation, "threads": torch.get_num_threads(), "loadavg_1m": load})


class ImageEncoder(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, pixel_values):
        return l2n(image_embeds(self.m, pixel_values))


class TextEncoder(torch.nn.Module):
    # input_ids only: with the causal mask the EOS-pooled token never attends to
    # positions after EOS, so the padding mask does not change the embedding.
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids):
        return l2n(text_embeds(self.m, input_ids))


def _export(module, example, path, in_name, opset, exporter="auto"):
    """Export with the classic TorchScript exporter (dynamo=False) and/or the dynamo one.

    "auto" tries TorchScript first, then dynamo (which needs the onnxscript package,
    absent from the reference venv). Returns (exporter that worked, errors of the others).
    """
    order = {"auto": (False, True), "torchscript": (False,), "dynamo": (True,)}[exporter]
    errors = {}
    for dynamo in order:
        try:
            kw = dict(input_names=[in_name], output_names=["embeds"], opset_version=opset)
            if dynamo:
                kw["dynamic_shapes"] = {in_name: {0: torch.export.Dim("batch", min=1, max=4096)}}
            else:
                kw["dynamic_axes"] = {in_name: {0: "batch"}, "embeds": {0: "batch"}}
            torch.onnx.export(module, (example,), path, dynamo=dynamo, **kw)
            return "dynamo" if dynamo else "torchscript", errors
        except Exception as e:  # noqa: BLE001
            errors["dynamo" if dynamo else "torchscript"] = f"{type(e).__name__}: {e}"[:300]
            log(f"export dynamo={dynamo} failed: {errors['dynamo' if dynamo else 'torchscript']}")
    raise RuntimeError(f"both exporters failed for {path}: {errors}")


def cmd_onnx_export(a):
    import onnx
    import onnxruntime as ort

    # eager attention exports to plain MatMul/Softmax; sdpa also traces, but eager is the safe choice.
    model = load_model(a.model, a.attn).eval()
    batch = load_batch(a.model)
    os.makedirs(a.out, exist_ok=True)
    res = {}
    jobs = [
        ("image", ImageEncoder(model).eval(), batch["pixel_values"][:2], "pixel_values"),
        ("text", TextEncoder(model).eval(), batch["input_ids"][:2], "input_ids"),
    ]
    for tower, mod, ex, name in jobs:
        path = os.path.join(a.out, f"{tower}_encoder.onnx")
        with torch.no_grad():
            exporter, errs = _export(mod, ex, path, name, a.opset, a.exporter)
        onnx.checker.check_model(path)
        # Verify against eager at a different batch size (checks the dynamic batch axis).
        full = batch[name]
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = sess.run(None, {name: full.numpy()})[0]
        with torch.no_grad():
            ref = mod(full).numpy()
        err = float(np.abs(got - ref).max())
        log(f"{tower}: exporter={exporter} max|ort-torch|={err:.2e} batch={full.shape[0]}")
        res[f"{tower}_encoder"] = path
        res[f"{tower}_exporter"] = exporter
        res[f"{tower}_max_abs_err"] = err
        if errs:
            res[f"{tower}_export_errors"] = errs
    res["opset"] = a.opset
    emit(res)


def cmd_onnx_latency(a):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(a.onnx, so, providers=["CPUExecutionProvider"])
    inp = {i.name: i for i in sess.get_inputs()}
    if a.input_name not in inp:
        raise SystemExit(f"input {a.input_name!r} not in model inputs {list(inp)}")
    meta = inp[a.input_name]

    # Shape: --shape overrides; otherwise dim 0 = --batch and the rest from defaults.
    if a.shape:
        shape = [int(s) for s in a.shape.replace("x", ",").split(",")]
    elif "int" in meta.type:
        shape = [a.batch, a.seq]
    else:
        shape = [a.batch, 3, IMAGE_SIZE, IMAGE_SIZE]

    rng = np.random.default_rng(0)
    if "int" in meta.type:
        x = rng.integers(1, EOS_ID, size=shape, dtype=np.int64)  # ids in [1, 49406]
        x[..., -1] = EOS_ID  # EOS at the last position
        x[..., 0] = BOS_ID
    else:
        x = rng.standard_normal(shape, dtype=np.float32)
    feed = {a.input_name: x}
    load = os.getloadavg()[0]
    ts = timed(lambda: sess.run(None, feed), a.warmup, a.reps)
    med = statistics.median(ts)
    emit({"median_ms": med * 1e3, "min_ms": min(ts) * 1e3, "shape": shape, "threads": a.threads,
          "items_per_s": shape[0] / med, "loadavg_1m": load})


def cmd_tokenize(a):
    """transformers' fast (Rust) tokenizer over the same JSONL captions as `bench tokenize`."""
    import json
    os.environ["TOKENIZERS_PARALLELISM"] = "false"   # one thread, as ours
    from transformers import BertTokenizerFast, CLIPTokenizerFast
    captions = [json.loads(line)["caption"] for line in open(a.strings) if line.strip()]
    tok = (CLIPTokenizerFast if a.kind == "clip" else BertTokenizerFast).from_pretrained(a.folder)
    ts = timed(lambda: tok(captions, truncation=True), a.warmup, a.reps)
    med = statistics.median(ts)
    emit({"median_s": med, "strings_per_s": len(captions) / med, "strings": len(captions), "kind": a.kind,
          "tokenizer": type(tok).__name__})


# --------------------------------------------------------------------------- CLI


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("make-model", help="build a random CLIPModel + fixed batch")
    s.add_argument("--preset", choices=sorted(PRESETS), required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_make_model)

    s = sub.add_parser("train-step", help="time full AdamW training steps")
    s.add_argument("--model", required=True)
    s.add_argument("--warmup", type=int, default=3)
    s.add_argument("--steps", type=int, default=10)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    s.add_argument("--bf16", action="store_true", help="forward+loss under autocast bfloat16")
    s.add_argument("--fp16", action="store_true", help="forward+loss under autocast float16, with torch.amp.GradScaler")
    s.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    s.add_argument("--batch", type=int, default=None, help="samples per step: the fixed batch tiled (default: as stored)")
    s.add_argument("--gradient-checkpointing", action="store_true", help="recompute each encoder layer in backward")
    s.set_defaults(fn=cmd_train_step)

    s = sub.add_parser("matmul-peak", help="torch.mm GFLOP/s, fp32 and bf16")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--n", type=int, default=2048)
    s.add_argument("--reps", type=int, default=10)
    s.add_argument("--budget-s", type=float, default=30.0, help="cap on timed seconds per dtype (min 3 reps)")
    s.set_defaults(fn=cmd_matmul_peak)

    s = sub.add_parser("embed", help="inference throughput of one tower")
    s.add_argument("--model", required=True)
    s.add_argument("--tower", choices=["image", "text"], required=True)
    s.add_argument("--batch", type=int, default=64)
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--reps", type=int, default=10)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    s.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    s.set_defaults(fn=cmd_embed)

    s = sub.add_parser("onnx-export", help="export image/text encoders to ONNX")
    s.add_argument("--model", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--opset", type=int, default=17)
    s.add_argument("--attn", choices=["sdpa", "eager"], default="eager")
    s.add_argument("--exporter", choices=["auto", "torchscript", "dynamo"], default="auto")
    s.set_defaults(fn=cmd_onnx_export)

    s = sub.add_parser("onnx-latency", help="onnxruntime CPU latency")
    s.add_argument("--onnx", required=True)
    s.add_argument("--input-name", required=True)
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--seq", type=int, default=32, help="sequence length for int64 (input_ids) inputs")
    s.add_argument("--shape", default=None, help="explicit input shape, e.g. 8,3,64,64 (overrides --batch)")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--warmup", type=int, default=3)
    s.add_argument("--reps", type=int, default=20)
    s.set_defaults(fn=cmd_onnx_latency)

    s = sub.add_parser("tokenize", help="fast-tokenizer throughput on a JSONL caption file")
    s.add_argument("--folder", required=True)
    s.add_argument("--kind", choices=["clip", "wordpiece"], required=True)
    s.add_argument("--strings", default="Data/sentences/val.jsonl")
    s.add_argument("--warmup", type=int, default=1)
    s.add_argument("--reps", type=int, default=5)
    s.set_defaults(fn=cmd_tokenize)

    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
