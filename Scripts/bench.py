"""Side-by-side benchmarks (see Scripts/bench). Standard library only; the PyTorch side is
Benchmarks/model_reference.py run with the reference venv's python.

Each comparison alternates ours and theirs (one process each per round) for ROUNDS rounds after
a warm-up inside each process; a side's figure is the median over rounds of its per-process
median. Both sides use the same thread count. Results: bench/results.json
({"comparisons": [{name, ours, theirs, unit, ratio, goal, note}]}), bench/RESULTS.md and the
README's table between the bench markers.
"""
import argparse, json, os, re, shutil, socket, statistics, subprocess, sys, tempfile, threading, time, urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".build" / "release" / "bench"
DIST_WORKER = ROOT / ".build" / "release" / "dist-worker"
EXPORT = ROOT / ".build" / "release" / "export"
TRAIN = ROOT / ".build" / "release" / "train"
OUT = ROOT / "bench"
THREADS = "2"


def run_json(cmd, env=None):
    started = time.time()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{proc.stderr[-3000:]}")
    line = [l for l in proc.stdout.splitlines() if l.startswith("{")][-1]
    result = json.loads(line)
    result["_wall_s"] = time.time() - started
    return result


def run_ranks(cmd, world_size=2):
    """Runs `cmd` once per rank on 127.0.0.1 with torchrun's variables; returns rank 0's JSON line."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.time()
    procs = []
    for rank in range(world_size):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS=THREADS)
        procs.append(subprocess.Popen([str(c) for c in cmd], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        if p.returncode != 0:
            raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{err[-3000:]}")
    result = json.loads([l for l in outputs[0][0].splitlines() if l.startswith("{")][-1])
    result["_wall_s"] = time.time() - started
    return result


def run_torchrun(cmd, nproc=2, threads="1"):
    """`torchrun` (cmd[0]) starting cmd[1:] on `nproc` processes of `threads` intra-op threads on
    127.0.0.1 (Gloo on loopback); returns rank 0's JSON line."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS=threads, GLOO_SOCKET_IFNAME="lo")
    return run_json([cmd[0], "--nnodes", "1", "--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1",
                     "--master-port", str(port)] + list(cmd[1:]), env=env)


def alternate(*commands, rounds):
    """Runs the commands in turn, `rounds` times; returns each command's list of JSON results."""
    results = [[] for _ in commands]
    for r in range(rounds):
        for i, cmd in enumerate(commands):
            results[i].append(run_ranks(cmd[1:]) if cmd[0] == "ranks" else run_torchrun(cmd[1:]) if cmd[0] == "torchrun" else run_json(cmd))
        print(f"  round {r + 1}/{rounds}", file=sys.stderr)
    return results


def scraped_training(interval):
    """`train` on the default recipe for 40 steps, its /metrics scraped every `interval` seconds by
    a client thread (None: no endpoint). Returns the median step time over the log windows after
    the first two (warm-up), and each scrape's latency in ms."""
    out = Path(tempfile.mkdtemp(prefix="bench-scrape-"))
    recipe = ROOT / "Recipes" / "clip-finetune.json"
    cmd = [TRAIN, "--recipe", recipe, "--output-dir", out, "--set", "max_steps=40"]
    latencies, stop = [], threading.Event()
    if interval is not None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        cmd += ["--metrics-port", str(port)]

        def scrape():
            while not stop.wait(interval):
                started = time.perf_counter()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                        response.read()
                    latencies.append((time.perf_counter() - started) * 1e3)
                except OSError:
                    pass   # not listening yet, or already closed
        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
    try:
        subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        stop.set()
    records = [json.loads(line) for line in (out / "clip-finetune" / "metrics.jsonl").read_text().splitlines()]
    batch = json.loads(recipe.read_text())["data"]["batch_size"]
    steps = [batch / r["samples_per_second"] for r in records if r["kind"] == "train"][2:]
    shutil.rmtree(out, ignore_errors=True)
    if interval is not None and not latencies:
        sys.exit("bench: no scrape of /metrics succeeded during the run")
    return {"median_s": statistics.median(steps), "scrape_ms": latencies}


def med(results, key):
    return statistics.median(r[key] for r in results)


class Report:
    def __init__(self):
        self.rows = []
        path = OUT / "results.json"
        self.previous = json.loads(path.read_text())["comparisons"] if path.exists() else []

    def add(self, name, ours, theirs, unit, ratio, goal, note=""):
        self.rows = [r for r in self.rows if r["name"] != name]
        self.rows.append({"name": name, "ours": ours, "theirs": theirs, "unit": unit, "ratio": ratio, "goal": goal, "note": note})
        print(f"{name}: ours {ours:.4g} theirs {theirs:.4g} {unit} ratio {ratio:.3f} (goal {goal}) {note}", file=sys.stderr)
        self.write(quiet=True)   # an interrupted run keeps what it measured

    def met(self, row):
        goal = row["goal"]
        if goal in ("", "-", "—"):
            return None   # reported, no goal
        m = re.fullmatch(r"ours - theirs <= ([\d.]+) .*", goal)
        if m:
            return row["ours"] - row["theirs"] <= float(m.group(1))
        m = re.fullmatch(r"(<=|>=|<)\s*([\d.]+)", goal)
        op, value = m.group(1), float(m.group(2))
        return row["ratio"] <= value if op == "<=" else row["ratio"] >= value if op == ">=" else row["ratio"] < value

    def write(self, quiet=False):
        names = {r["name"] for r in self.rows}
        rows = self.rows + [r for r in self.previous if r["name"] not in names]   # keep comparisons not rerun
        OUT.mkdir(exist_ok=True)
        (OUT / "results.json").write_text(json.dumps({"comparisons": rows}, indent=2) + "\n")
        lines = ["| comparison | ours | theirs | unit | ratio | goal | met | note |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['name']} | {r['ours']:.4g} | {r['theirs']:.4g} | {r['unit']} | {r['ratio']:.3f} | {r['goal']} | "
                         f"{ {True: 'yes', False: '**no**', None: '—'}[self.met(r)] } | {r.get('note') or ''} |")
        table = "\n".join(lines)
        # Notes written under the table ("## Notes" onwards) stay when the table is rewritten.
        results = OUT / "RESULTS.md"
        old = results.read_text() if results.exists() else ""
        notes = old[old.index("\n## Notes"):] if "\n## Notes" in old else ""
        results.write_text(table + "\n" + notes)
        readme = ROOT / "README.md"
        text = readme.read_text()
        new = re.sub(r"(<!-- bench:start -->\n).*?(<!-- bench:end -->)", lambda m: m.group(1) + table + "\n" + m.group(2), text, flags=re.S)
        if new != text:
            readme.write_text(new)
        if not quiet:
            print(table)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--python", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--only", nargs="*", default=None, help="train, bf16, checkpointing, embed, onnx, tokenize, data, bridge, allreduce, ddp, scrape, wait")
    a = p.parse_args()
    ref = [a.python, ROOT / "Benchmarks" / "model_reference.py"]
    want = lambda k: a.only is None or k in a.only
    report = Report()
    models = OUT / "models"
    for preset in ["S", "T"] if any(want(k) for k in ["train", "bf16", "checkpointing", "embed", "onnx", "tokenize", "ddp"]) else []:
        if not (models / preset / "batch.safetensors").exists():
            run_json(ref + ["make-model", "--preset", preset, "--out", models / preset])

    peak = None
    if want("train") or want("bf16"):
        # n = 1024: on a CPU without native bf16 a 2048² bf16 matmul takes about a minute.
        ours, theirs = alternate([BENCH, "matmul-peak", "--n", "1024", "--reps", "3", "--threads", THREADS],
                                 ref + ["matmul-peak", "--n", "1024", "--reps", "3", "--budget-s", "5", "--threads", THREADS], rounds=2)
        peak = {"ours": med(ours, "fp32_gflops"), "theirs": med(theirs, "fp32_gflops"),
                "bf16_ours": med(ours, "bf16_gflops"), "bf16_theirs": med(theirs, "bf16_gflops")}
        report.add("matmul peak fp32 (1024², GFLOP/s)", peak["ours"], peak["theirs"], "GFLOP/s", peak["ours"] / peak["theirs"], ">=0.95",
                   f"bf16: {peak['bf16_ours']:.3g} vs {peak['bf16_theirs']:.3g} GFLOP/s")

    if want("train"):
        for preset, goal, steps in [("S", "<=0.95", 5), ("T", "<=0.8", 20)]:
            m = models / preset
            ours, theirs = alternate([BENCH, "train-step", "--model", m, "--warmup", "2", "--steps", steps, "--threads", THREADS],
                                     ref + ["train-step", "--model", m, "--warmup", "2", "--steps", str(steps), "--threads", THREADS], rounds=a.rounds)
            o, t = med(ours, "median_s"), med(theirs, "median_s")
            flops = theirs[0]["flops_per_step"]
            note = f"MFU {flops / o / 1e9 / peak['ours']:.0%} vs {flops / t / 1e9 / peak['theirs']:.0%} of the fp32 matmul peak" if peak else ""
            report.add(f"train step ({preset})", o * 1e3, t * 1e3, "ms/step", o / t, goal, note)
            ro, rt = max(r["peak_rss_mb"] for r in ours), max(r["peak_rss_mb"] for r in theirs)
            report.add(f"peak RSS, train step ({preset})", ro, rt, "MB", ro / rt, "<=1.0")

    if want("bf16"):
        # bf16 on (S) when the CPU has native bf16 matmul; emulated bf16 is ~100x slower, so T then.
        preset = "S" if peak and peak["bf16_ours"] > peak["ours"] else "T"
        m = models / preset
        cmd = lambda bf16: [BENCH, "train-step", "--model", m, "--warmup", "1", "--steps", "3", "--threads", THREADS] + (["--bf16"] if bf16 else [])
        theirs_cmd = ref + ["train-step", "--model", str(m), "--warmup", "1", "--steps", "3", "--threads", THREADS, "--bf16"]
        bf, fp, theirs = alternate(cmd(True), cmd(False), theirs_cmd, rounds=3)
        o, f, t = med(bf, "median_s"), med(fp, "median_s"), med(theirs, "median_s")
        note = "" if preset == "S" else f"run on (T): this CPU has no native bf16 matmul ({peak['bf16_ours']:.2g} vs {peak['ours']:.3g} GFLOP/s fp32)"
        report.add(f"bf16 step speed-up over fp32 ({preset})", f * 1e3, o * 1e3, "ms/step (fp32 vs bf16)", f / o, ">=2", note)
        report.add(f"bf16 step vs PyTorch autocast ({preset})", o * 1e3, t * 1e3, "ms/step", o / t, "<=0.95", note)

    if want("checkpointing"):
        # model.gradient_checkpointing on (S) at batch 256 (the fixed batch tiled): ours with vs ours
        # without, for the goal (half the memory for at most 1.35x the time); PyTorch's own
        # ratios (transformers' gradient_checkpointing_enable, reentrant) in the note.
        m = models / "S"
        args = ["--model", m, "--batch", "256", "--warmup", "1", "--steps", "3", "--threads", THREADS]
        on, off, t_on, t_off = alternate([BENCH, "train-step"] + args + ["--gradient-checkpointing"], [BENCH, "train-step"] + args,
                                         ref + ["train-step"] + args + ["--gradient-checkpointing"], ref + ["train-step"] + args,
                                         rounds=a.rounds)
        ro, rf = max(r["peak_rss_mb"] for r in on), max(r["peak_rss_mb"] for r in off)
        to, tf = med(on, "median_s"), med(off, "median_s")
        pr = max(r["peak_rss_mb"] for r in t_on) / max(r["peak_rss_mb"] for r in t_off)
        pt = med(t_on, "median_s") / med(t_off, "median_s")
        # The same with libtorch's default allocator (malloc: glibc keeps freed heap mapped, so
        # the peak grows beyond the live tensors), and the floor no step can shrink.
        plain = [BENCH, "train-step"] + args[:-4] + ["--steps", "2", "--threads", THREADS, "--malloc-allocator"]
        m_on, m_off = alternate(plain + ["--gradient-checkpointing"], plain, rounds=1)
        lo, lf = m_on[0]["peak_rss_mb"], m_off[0]["peak_rss_mb"]
        floor = on[0]["loaded_rss_mb"] + 3 * on[0]["parameters_mb"]
        loss = f"first loss {on[0]['loss_first']:.6f} vs {off[0]['loss_first']:.6f}"
        report.add("gradient checkpointing: peak RSS, train step (S, batch 256)", ro, rf, "MB (on vs off)", ro / rf, "<=0.5",
                   f"with malloc: {lo:.0f} vs {lf:.0f} MB ({lo / lf:.3f}); floor (loaded process + weights' grads and AdamW moments) "
                   f"{floor:.0f} MB; PyTorch: {pr:.3f}; {loss}")
        report.add("gradient checkpointing: step time (S, batch 256)", to * 1e3, tf * 1e3, "ms/step (on vs off)", to / tf, "<=1.35",
                   f"PyTorch: {pt:.3f}")

    if want("embed"):
        for tower in ["image", "text"]:
            ours, theirs = alternate([BENCH, "embed", "--model", models / "S", "--tower", tower, "--threads", THREADS],
                                     ref + ["embed", "--model", str(models / "S"), "--tower", tower, "--threads", THREADS], rounds=a.rounds)
            o, t = med(ours, "items_per_s"), med(theirs, "items_per_s")
            report.add(f"embedding throughput, {tower} tower (S, batch 64)", o, t, "items/s", o / t, ">=1.0")

    if want("onnx"):
        onnx_dir = OUT / "onnx"
        if not (models / "S" / "vocab.json").exists():   # make-model writes no tokenizer; export copies one
            run_json([BENCH, "clip-tokenizer", "--out", models / "S"])
        for name, flags in [("fp32", ["--precision", "fp32"]), ("int8", ["--precision", "int8"]),
                            ("int8-token", ["--precision", "int8", "--per-token-activations"])]:
            done = subprocess.run([EXPORT, "--checkpoint", models / "S", "--out", onnx_dir / f"ours-{name}", "--overwrite"] + flags,
                                  capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                raise SystemExit(done.stderr)
        run_json(ref + ["onnx-export", "--model", str(models / "S"), "--out", str(onnx_dir / "torch")])
        for tower, name in [("image", "pixel_values"), ("text", "input_ids")]:
            for batch in ["1", "32"]:
                lat = lambda d: ref + ["onnx-latency", "--onnx", str(onnx_dir / d / f"{tower}_encoder.onnx"), "--input-name", name, "--batch", batch, "--threads", THREADS]
                ours, theirs = alternate(lat("ours-fp32"), lat("torch"), rounds=a.rounds)
                o, t = med(ours, "median_ms"), med(theirs, "median_ms")
                report.add(f"ONNX {tower} encoder latency, batch {batch} (ours vs torch.onnx.export)", o, t, "ms", o / t, "<=1.0")
                q, f = alternate(lat("ours-int8"), lat("ours-fp32"), rounds=a.rounds)
                qi, fi = med(q, "median_ms"), med(f, "median_ms")
                report.add(f"ONNX {tower} encoder int8 speed-up, batch {batch}", qi, fi, "ms (int8 vs fp32)", fi / qi, ">=1.5")
            # Per-token activations trade speed for accuracy (README): how much, at batch 32.
            lat = lambda d: ref + ["onnx-latency", "--onnx", str(onnx_dir / d / f"{tower}_encoder.onnx"), "--input-name", name, "--batch", "32", "--threads", THREADS]
            q, f = alternate(lat("ours-int8-token"), lat("ours-fp32"), rounds=a.rounds)
            qi, fi = med(q, "median_ms"), med(f, "median_ms")
            report.add(f"ONNX {tower} encoder int8 per-token speed-up, batch 32", qi, fi, "ms (int8 vs fp32)", fi / qi, ">=1.0",
                       "more accurate int8 form; onnxruntime fuses only the per-tensor one")

    if want("tokenize"):
        # Single-threaded on both sides (transformers' batch call may use Rayon threads: pinned to 1).
        if not (models / "S" / "vocab.json").exists():
            run_json([BENCH, "clip-tokenizer", "--out", models / "S"])
        minilm = ROOT / ".deps" / "assets" / "all-MiniLM-L6-v2"
        for kind, folder in [("clip", models / "S"), ("wordpiece", minilm)]:
            args = ["tokenize", "--folder", str(folder), "--kind", kind, "--strings", str(ROOT / "Data" / "sentences" / "val.jsonl")]
            ours, theirs = alternate([BENCH] + args, ref + args, rounds=a.rounds)
            o, t = med(ours, "strings_per_s"), med(theirs, "strings_per_s")
            name = "CLIP BPE" if kind == "clip" else "WordPiece"
            report.add(f"tokenizer throughput, {name} (2,000 captions)", o, t, "strings/s", o / t, ">=1.0",
                       "ours: Swift, 1 thread; theirs: transformers' fast (Rust) tokenizer, 1 thread")

    if want("data"):
        subprocess.run([BENCH, "data", "--python", a.python, "--output", OUT / "results.json"], check=True, cwd=ROOT)
        report.previous = json.loads((OUT / "results.json").read_text())["comparisons"]
    if want("bridge"):
        subprocess.run([BENCH, "bridge", "--output", OUT / "results.json"], check=True, cwd=ROOT)
        report.previous = json.loads((OUT / "results.json").read_text())["comparisons"]

    if want("allreduce"):
        # 2 processes on this machine (loopback), 25 MB of float32, through our bridge and through
        # torch.distributed, both on libtorch's Gloo: the bridge should add nothing measurable.
        args = ["--megabytes", "25", "--iterations", "20", "--warmup", "3"]
        ours, theirs = alternate(["ranks", DIST_WORKER, "bench"] + args,
                                 ["ranks", a.python, ROOT / "Benchmarks" / "allreduce_reference.py"] + args, rounds=a.rounds)
        o, t = med(ours, "median_s"), med(theirs, "median_s")
        report.add("all-reduce, 2 processes, 25 MB float32 (Gloo, loopback)", o * 1e3, t * 1e3, "ms", o / t, "<=1.05",
                   f"{25 / o / 1e3:.2f} vs {25 / t / 1e3:.2f} GB/s; ours: dist-worker through the bridge, theirs: torch.distributed")

    if want("ddp"):
        # Data parallel on this machine: 2 processes × 1 intra-op thread, started by torchrun (Gloo,
        # loopback), rank r taking rows r·b..(r+1)·b of the fixed batch; ours is `train`'s step
        # (`bench dp-train-step`), theirs DistributedDataParallel with open_clip's gathered loss
        # (Benchmarks/ddp_reference.py). Ours also against 1 process × 2 threads on the whole batch.
        torchrun = Path(a.python).parent / "torchrun"
        for preset, steps in [("T", 20), ("S", 6)]:
            m = models / preset
            args = ["--model", m, "--warmup", "2", "--steps", str(steps), "--threads", "1"]
            dp, ddp, single = alternate(["torchrun", torchrun, "--no-python", BENCH, "dp-train-step"] + args,
                                        ["torchrun", torchrun, ROOT / "Benchmarks" / "ddp_reference.py"] + args,
                                        [BENCH, "train-step", "--model", m, "--warmup", "2", "--steps", str(steps), "--threads", THREADS],
                                        rounds=a.rounds)
            o, t, s = med(dp, "median_s"), med(ddp, "median_s"), med(single, "median_s")
            ph = lambda key: statistics.median(r["phases_s"][key] for r in dp) * 1e3
            loads = [r["loadavg_1m"] for r in dp + ddp]
            note = (f"ours: gather {ph('gather'):.3g} + loss all-reduce {ph('loss_allreduce'):.3g} + gradient all-reduce "
                    f"{ph('gradient_allreduce'):.3g} ms of collectives, one no-grad forward {ph('forward_nograd'):.3g} ms; "
                    f"loss 1st step {dp[0]['loss_first']:.5f} vs {ddp[0]['loss_first']:.5f}; load {min(loads):.2f}–{max(loads):.2f}")
            report.add(f"DDP step vs PyTorch DDP ({preset})", o * 1e3, t * 1e3, "ms/step", o / t, "<=0.95", note)
            report.add(f"ours: 2 processes × 1 thread vs 1 process × 2 threads ({preset})", o * 1e3, s * 1e3,
                       "ms/step (2×1 vs 1×2)", o / s, "—", f"same global batch ({dp[0]['batch_per_rank'] * 2}); ratio < 1: 2×1 faster")

    if want("scrape"):
        # The training step while Prometheus scrapes /metrics: `train` on the default recipe (40
        # steps) without an endpoint, with one scraped every second (Prometheus' usual interval is
        # 15-60 s), and scraped 10 times a second. Ours against ours: there is no reference.
        # The order rotates each round, so that drift on the machine does not favour one side.
        runs = {None: [], 1.0: [], 0.1: []}
        for r in range(a.rounds):
            order = list(runs)[r % 3:] + list(runs)[:r % 3]
            for interval in order:
                runs[interval].append(scraped_training(interval))
            print(f"  round {r + 1}/{a.rounds}: " + ", ".join(f"{k}: {runs[k][-1]['median_s'] * 1e3:.0f} ms" for k in order), file=sys.stderr)
        plain, every_second, ten_hertz = runs[None], runs[1.0], runs[0.1]
        p, s, t = med(plain, "median_s"), med(every_second, "median_s"), med(ten_hertz, "median_s")
        latency = statistics.median(x for r in every_second + ten_hertz for x in r["scrape_ms"])
        report.add("train step while /metrics is scraped every second (default recipe)", s * 1e3, p * 1e3,
                   "ms/step (scraped vs no endpoint)", s / p, "<=1.02",
                   f"scraped 10×/s: {t * 1e3:.4g} ms ({t / p:.3f}); a scrape answers in {latency:.2f} ms (median, "
                   f"{sum(len(r['scrape_ms']) for r in every_second + ten_hertz)} scrapes)")

    if want("wait"):
        metrics = ROOT / "Checkpoints" / "clip-finetune" / "metrics.jsonl"
        if metrics.exists():
            fractions = [r["data_wait_fraction"] for r in map(json.loads, metrics.read_text().splitlines()) if r.get("kind") == "train" and "data_wait_fraction" in r]
            wait = statistics.mean(fractions)
            report.add("data wait, default recipe (fraction of step time)", wait, 0.02, "fraction", wait, "<0.02",
                       "mean over the run's log windows; 'theirs' is the goal")
    report.write()


if __name__ == "__main__":
    main()
