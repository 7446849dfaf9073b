"""Helpers of Scripts/gpu-check (read that first). Standard library only, except `prune-minilm`,
which needs `tokenizers` (it runs here, with .deps/python).

  prune-minilm  all-MiniLM-L6-v2 for the carry: word-embedding rows no caption of Data/shapes
                and no zero-shot prompt uses are zeroed (they compress to nothing)
  planes        a safetensors file's bytes regrouped for compression, or back (--inverse)
  compare       per-step `loss` of two metrics.jsonl files, within a relative tolerance
  bench         ours (`bench`) vs PyTorch (Benchmarks/model_reference.py) on one device: a table
"""
import argparse, glob, json, os, statistics, struct, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- prune-minilm

def shard_captions(pattern):
    """Every caption of every sample in the .tar.zst shards (tar --zstd streams the .json members)."""
    texts = []
    for shard in sorted(glob.glob(pattern)):
        raw = subprocess.run(["tar", "--zstd", "-xOf", shard, "--wildcards", "*.json"], capture_output=True, check=True).stdout.decode()
        decoder, i = json.JSONDecoder(), 0
        while i < len(raw):
            obj, i = decoder.raw_decode(raw, i)
            texts += obj["captions"]
    return texts


def cmd_prune_minilm(a):
    from tokenizers import Tokenizer   # .deps/python has it
    src, dst = Path(a.source), Path(a.dest)
    texts = shard_captions(a.data)
    classes = json.loads(Path(a.classes).read_text())
    texts += [t.format(c) for t in classes["templates"] for c in classes["classes"]]
    tokenizer = Tokenizer.from_file(str(src / "tokenizer.json"))
    tokenizer.no_truncation()   # the true lengths (its own truncation at 128 and padding aside)
    tokenizer.no_padding()
    keep = set(range(0, 1000))   # [PAD], [unused*], [UNK], [CLS], [SEP], [MASK]
    longest = 0
    for encoding in tokenizer.encode_batch(texts):
        keep.update(encoding.ids)
        longest = max(longest, len(encoding.ids))
    positions = max(128, longest)   # position rows a sequence of these texts can read

    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():   # everything but the weights, as is
        if item.name == "model.safetensors" or item.name.startswith("."):
            continue
        target = dst / item.name
        if item.is_dir():
            target.mkdir(exist_ok=True)
            for f in item.iterdir():
                (target / f.name).write_bytes(f.read_bytes())
        else:
            target.write_bytes(item.read_bytes())

    data = (src / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = bytearray(data)

    def zero_rows(name, kept):
        entry = header[name]
        assert entry["dtype"] == "F32", entry
        rows, width = entry["shape"]
        begin, end = entry["data_offsets"]
        base, row_bytes = 8 + n + begin, width * 4
        assert base + rows * row_bytes == 8 + n + end
        zero = bytes(row_bytes)
        for r in range(rows):
            if not kept(r):
                out[base + r * row_bytes: base + (r + 1) * row_bytes] = zero
        return rows

    rows = zero_rows("embeddings.word_embeddings.weight", lambda r: r in keep)
    position_rows = zero_rows("embeddings.position_embeddings.weight", lambda r: r < positions)
    (dst / "model.safetensors").write_bytes(bytes(out))
    (dst / "PRUNED.md").write_text(
        f"all-MiniLM-L6-v2 as Scripts/gpu-check carries it to a GPU machine: of the {rows} rows of\n"
        f"embeddings.word_embeddings.weight, the {len(keep)} that Data/shapes' {len(texts)} captions and zero-shot\n"
        "prompts can read (their WordPiece ids, and ids 0-999: [PAD], [unusedN], [UNK], [CLS], [SEP], [MASK]) are\n"
        f"kept and the rest are zero; so are the rows of embeddings.position_embeddings.weight from {positions} on\n"
        f"(of {position_rows}; the longest of those texts is {longest} tokens). Embeddings are locked in\n"
        "Recipes/clip-finetune.json and a lookup reads only its ids' and positions' rows, so the default recipe\n"
        "computes exactly what it computes with the full tables; a checkpoint trained from this copy has zero\n"
        "rows for every other word: do not use it on other text.\n")
    log(f"kept {len(keep)} of {rows} word-embedding rows and {positions} of {position_rows} position rows "
        f"({len(texts)} texts, the longest {longest} tokens); wrote {dst}")
    print(json.dumps({"kept_rows": len(keep), "rows": rows, "positions": positions, "longest": longest, "texts": len(texts)}))


# --------------------------------------------------------------------------- byte planes

def byte_planes(data: bytes, inverse: bool) -> bytes:
    """A safetensors file with its data's bytes regrouped by their place in each 4-byte word (all
    of the first bytes, then the second...): float32 exponents then sit together and compress
    about 8% better. `inverse` undoes it. Every tensor of the file must be a whole number of
    4-byte words (float32, int64...)."""
    (n,) = struct.unpack("<Q", data[:8])
    base = 8 + n
    body = data[base:]
    if len(body) % 4:
        raise SystemExit("the data is not a whole number of 4-byte words")
    if not inverse:
        return data[:base] + b"".join(body[k::4] for k in range(4))
    out, q = bytearray(len(body)), len(body) // 4
    for k in range(4):
        out[k::4] = body[k * q:(k + 1) * q]
    return data[:base] + bytes(out)


def cmd_planes(a):
    Path(a.output).write_bytes(byte_planes(Path(a.input).read_bytes(), a.inverse))


# --------------------------------------------------------------------------- compare

def train_losses(path):
    losses = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("kind") == "train" and "loss" in record:
            losses[int(record["step"])] = float(record["loss"])
    return losses


def cmd_compare(a):
    reference, candidate = train_losses(a.reference), train_losses(a.candidate)
    lines = [f"per-step loss, {a.reference_name} vs {a.candidate_name} (relative tolerance {a.rtol:g})",
             f"{'step':>4}  {a.reference_name:>14}  {a.candidate_name:>14}  {'relative diff':>13}"]
    worst, problems = (None, -1.0), []
    for step in range(1, a.steps + 1):
        r, c = reference.get(step), candidate.get(step)
        if r is None or c is None:
            problems.append(f"step {step} has no loss in {a.reference_name if r is None else a.candidate_name}")
            lines.append(f"{step:>4}  {'-' if r is None else f'{r:.8f}':>14}  {'-' if c is None else f'{c:.8f}':>14}  {'missing':>13}")
            continue
        rel = abs(c - r) / max(abs(r), 1e-12)
        if rel > worst[1]:
            worst = (step, rel)
        lines.append(f"{step:>4}  {r:14.8f}  {c:14.8f}  {rel:13.3e}{'  > tolerance' if rel > a.rtol else ''}")
    ok = not problems and 0 <= worst[1] <= a.rtol
    verdict = (f"{'PASS' if ok else 'FAIL'}: worst step {worst[0]}, relative difference {worst[1]:.3e} "
               f"({'within' if worst[1] <= a.rtol else 'above'} {a.rtol:g})" if worst[0] else "FAIL: no step to compare")
    lines += problems + [verdict]
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    sys.exit(0 if ok else 1)


# --------------------------------------------------------------------------- bench

class Runner:
    def __init__(self, a):
        self.a = a
        self.deadline = a.deadline or float("inf")
        self.ours_env = dict(os.environ)
        if a.ours_ld_library_path:
            self.ours_env["LD_LIBRARY_PATH"] = a.ours_ld_library_path + ":" + self.ours_env.get("LD_LIBRARY_PATH", "")
        self.theirs_env = dict(os.environ)
        if a.theirs_pythonpath:
            self.theirs_env["PYTHONPATH"] = a.theirs_pythonpath + ":" + self.theirs_env.get("PYTHONPATH", "")
        self.reference = [a.python, str(ROOT / "Benchmarks" / "model_reference.py")]

    def left(self):
        return self.deadline - time.time()

    def run_json(self, cmd, env, timeout):
        started = time.time()
        try:
            proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=ROOT, env=env,
                                  timeout=max(5, min(timeout, self.left())))
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"timed out after {time.time() - started:.0f} s: {' '.join(map(str, cmd))}")
        if proc.returncode != 0:
            raise RuntimeError(f"exit {proc.returncode}: {' '.join(map(str, cmd))}\n{proc.stderr[-2000:]}")
        lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
        if not lines:
            raise RuntimeError(f"no JSON line from {' '.join(map(str, cmd))}\n{proc.stdout[-1000:]}{proc.stderr[-1000:]}")
        result = json.loads(lines[-1])
        result["_wall_s"] = time.time() - started
        log(f"    {result['_wall_s']:5.1f} s  {' '.join(map(str, cmd[:3]))} ... {' '.join(map(str, cmd[-6:]))}")
        return result


def cmd_bench(a):
    r = Runner(a)
    models = Path(a.models)
    rows, failures = [], []
    reference_ok = a.reference_problem is None
    common = ["--device", a.device, "--threads", str(a.threads)]

    def add(name, ours, theirs, unit, ratio, note=""):
        rows.append({"name": name, "ours": ours, "theirs": theirs, "unit": unit, "ratio": ratio, "note": note})
        fmt = lambda v: "-" if v is None else f"{v:.4g}"
        log(f"  {name}: ours {fmt(ours)} theirs {fmt(theirs)} {unit} ratio {fmt(ratio)} {note}")

    def made(preset):
        folder = models / preset
        if not (folder / "batch.safetensors").exists():
            if not reference_ok:
                raise RuntimeError(f"no model for preset {preset}: make-model needs the reference python ({a.reference_problem})")
            r.run_json(r.reference + ["make-model", "--preset", preset, "--out", folder], r.theirs_env, 300)
        return folder

    def measure(label, ours_cmd, theirs_cmd, key, need_s):
        """Alternates ours and theirs for --rounds rounds; medians of `key` (None where a side did
        not run). A failure of the PyTorch side is recorded and leaves ours measured."""
        ours, theirs = [], []
        for i in range(a.rounds):
            if i > 0 and r.left() < need_s:
                log(f"    round {i + 1} left out: {r.left():.0f} s of the budget left")
                break
            ours.append(r.run_json(ours_cmd, r.ours_env, a.step_timeout))
            if theirs_cmd is not None:
                try:
                    theirs.append(r.run_json(theirs_cmd, r.theirs_env, a.step_timeout))
                except RuntimeError as e:
                    failures.append(f"{label}, PyTorch side: {e}")
                    log(f"  FAILED {label}, PyTorch side: {e}")
                    theirs_cmd = None
        med = lambda rs: statistics.median(x[key] for x in rs) if rs else None
        return med(ours), med(theirs), ours, theirs

    def train_cmds(preset, flags):
        m = made(preset)
        steps = ["--warmup", str(a.warmup), "--steps", str(a.steps)]
        ours = [a.ours, "train-step", "--model", m] + steps + common + flags
        theirs = r.reference + ["train-step", "--model", m] + steps + common + flags if reference_ok else None
        return ours, theirs

    def guarded(label, need_s, body):
        if r.left() < need_s:
            failures.append(f"{label}: not run, {max(0, r.left()):.0f} s of the time budget left (needs about {need_s} s)")
            log("  " + failures[-1])
            return
        try:
            body()
        except Exception as e:  # noqa: BLE001  one failed row must not stop the others
            failures.append(f"{label}: {e}")
            log(f"  FAILED {label}: {e}")

    step_ms = {}

    def train_row(preset, precision):
        flags = {"fp32": [], "bf16": ["--bf16"], "fp16": ["--fp16"]}[precision]
        ours_cmd, theirs_cmd = train_cmds(preset, flags)
        o, t, ours, theirs = measure(f"train step ({preset}, {precision})", ours_cmd, theirs_cmd, "median_s", a.need_s)
        step_ms[(preset, precision)] = (o * 1e3, t * 1e3 if t else None)
        notes = []
        if theirs:
            lo, lt = ours[0]["loss_first"], theirs[0]["loss_first"]
            notes.append(f"first loss {lo:.6g} vs {lt:.6g}")
        peaks = [x.get("peak_device_memory_mb") for x in (ours[:1] + theirs[:1])]
        if peaks and peaks[0] is not None:
            notes.append("peak device memory " + " vs ".join(f"{p:.0f}" for p in peaks if p is not None) + " MB")
        if precision == "fp16":
            notes.append("loss scale " + " vs ".join(f"{x.get('loss_scale', float('nan')):g}" for x in (ours[:1] + theirs[:1])))
        add(f"train step ({preset}, {precision})", o * 1e3, t * 1e3 if t else None, "ms/step", o / t if t else None, "; ".join(notes))

    def embed_row(preset, tower):
        m = made(preset)
        args = ["embed", "--model", m, "--tower", tower, "--batch", str(a.embed_batch)] + common
        o, t, _, _ = measure(f"embedding throughput, {tower} tower ({preset})", [a.ours] + args,
                             r.reference + args if reference_ok else None, "items_per_s", a.need_s)
        add(f"embedding throughput, {tower} tower ({preset}, batch {a.embed_batch})", o, t, "items/s", o / t if t else None)

    presets = a.presets.split(",")
    big = presets[-1]
    for preset in presets[:-1]:
        guarded(f"train step ({preset}, fp32)", a.need_s, lambda: train_row(preset, "fp32"))
    for precision in ["fp32", "bf16", "fp16"]:
        guarded(f"train step ({big}, {precision})", a.need_s, lambda: train_row(big, precision))
    for precision in ["bf16", "fp16"]:
        if (big, "fp32") in step_ms and (big, precision) in step_ms:
            (of, tf), (ox, tx) = step_ms[(big, "fp32")], step_ms[(big, precision)]
            add(f"{precision} speed-up over fp32 ({big})", of / ox, tf / tx if tf and tx else None, "× (fp32 ms / " + precision + " ms)",
                (of / ox) / (tf / tx) if tf and tx else None, f"ours {of:.4g} → {ox:.4g} ms, theirs " + (f"{tf:.4g} → {tx:.4g} ms" if tf and tx else "-"))
    for tower in ["image", "text"]:
        guarded(f"embedding throughput, {tower} tower ({big})", a.need_s, lambda: embed_row(big, tower))

    fmt = lambda v: "-" if v is None else f"{v:.4g}"
    header = (f"ours vs PyTorch on {a.device} ({a.device_name or a.device}); {a.rounds} round(s) of one process per side, "
              f"medians; train steps: {a.warmup} warm-up + {a.steps} timed; ratio = ours / theirs "
              "(ms: lower is better; items/s and speed-ups: higher is better)")
    if a.reference_problem:
        header += f"\nPyTorch side not run: {a.reference_problem}"
    table = ["| comparison | ours | theirs | unit | ratio | note |", "|---|---|---|---|---|---|"]
    table += [f"| {x['name']} | {fmt(x['ours'])} | {fmt(x['theirs'])} | {x['unit']} | {fmt(x['ratio'])} | {x['note']} |" for x in rows]
    text = header + "\n\n" + "\n".join(table) + ("\n\nnot measured:\n" + "\n".join("- " + f for f in failures) if failures else "") + "\n"
    print(text)
    if a.out_md:
        Path(a.out_md).write_text(text)
    if a.out_json:
        Path(a.out_json).write_text(json.dumps({"device": a.device, "device_name": a.device_name, "rows": rows, "not_measured": failures,
                                                "reference_problem": a.reference_problem}, indent=2) + "\n")
    sys.exit(1 if failures or a.reference_problem else 0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("prune-minilm")
    s.add_argument("--source", required=True)
    s.add_argument("--dest", required=True)
    s.add_argument("--data", default=str(ROOT / "Data" / "shapes" / "*.tar.zst"))
    s.add_argument("--classes", default=str(ROOT / "Data" / "shapes" / "classes.json"))
    s.set_defaults(fn=cmd_prune_minilm)

    s = sub.add_parser("planes", help="regroup a safetensors file's bytes for compression (--inverse undoes it)")
    s.add_argument("input")
    s.add_argument("output")
    s.add_argument("--inverse", action="store_true")
    s.set_defaults(fn=cmd_planes)

    s = sub.add_parser("compare")
    s.add_argument("--reference", required=True, help="metrics.jsonl of the reference run (the CPU)")
    s.add_argument("--candidate", required=True, help="metrics.jsonl of the run checked against it (the GPU)")
    s.add_argument("--reference-name", default="cpu")
    s.add_argument("--candidate-name", default="cuda")
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--rtol", type=float, default=1e-4)
    s.add_argument("--out")
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("bench")
    s.add_argument("--ours", required=True, help="our bench executable")
    s.add_argument("--python", required=True, help="python with torch and transformers")
    s.add_argument("--ours-ld-library-path")
    s.add_argument("--theirs-pythonpath")
    s.add_argument("--reference-problem", help="why the PyTorch side cannot run (then ours alone)")
    s.add_argument("--models", required=True, help="folder for make-model's presets")
    s.add_argument("--presets", default="S,B32", help="comma-separated; the last one also gets bf16/fp16 and embedding rows")
    s.add_argument("--device", default="cuda")
    s.add_argument("--device-name")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--rounds", type=int, default=2)
    s.add_argument("--warmup", type=int, default=5)
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--embed-batch", type=int, default=256)
    s.add_argument("--deadline", type=float, help="Unix time after which nothing new starts")
    s.add_argument("--need-s", type=int, default=40, help="seconds a measurement needs at least (else it is left out)")
    s.add_argument("--step-timeout", type=int, default=180, help="seconds one process may take")
    s.add_argument("--out-md")
    s.add_argument("--out-json")
    s.set_defaults(fn=cmd_bench)

    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
