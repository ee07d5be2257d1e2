"""Kernel timing of desc-ops against eager PyTorch, torch.compile and the
original per-instance loop.

    python benchmarks/losses.py                 # every op, CPU and (if present) CUDA
    python benchmarks/losses.py --quick         # a run under a minute
    python benchmarks/losses.py --ops semantic_consistency_loss --device cuda --dtype bfloat16

Providers, side by side in one run: ``desc_ops`` (our kernels), ``reference``
(``desc_ops.reference``, eager PyTorch), ``compiled`` (``torch.compile`` of the
reference) and, for the instance operators, ``loop`` (the original DESC
implementation's Python loop over images and instances, benchmarks/loop_reference.py).
Modes: forward, backward, full (forward + backward); gradients are set to None
before each backward, as ``optimizer.zero_grad()`` does.

CUDA times come from CUDA events after warm-up (median, p20, p80); CPU times
from ``torch.utils.benchmark`` with the thread count stated, the providers of a
row timed in turns (blocks of about 10 ms each, round after round), so that a
slow phase of a shared machine falls on all of them. Bytes moved are
counted per op from the inputs a kernel must read and the outputs it must
write (the minimum any implementation moves), giving GB/s and the fraction of
a memory copy's bandwidth measured in the same run on that device: on CUDA a
256 MiB device-to-device copy; on the CPU, for the elementwise passes (every
op but the instance ones), ``dst.copy_(src)`` of a buffer half the op's byte
count (so that the copy, reading and writing, moves as many bytes as the op),
timed in the same turns as the providers.
Peak memory is measured per provider on CUDA. A table is printed and a JSON
record written; with matplotlib, a PNG of the scaling sweep.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch._functorch.config
import torch.utils.benchmark as tbench

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import desc_ops  # noqa: E402
from desc_ops import reference  # noqa: E402
from loop_reference import instance_prior_loss_loop, instance_stats_loop  # noqa: E402

# The backward mode replays one graph with retain_graph=True, which compiled
# backwards refuse while they donate their saved buffers.
torch._functorch.config.donated_buffer = False

OPS = ["confidence_map", "consistency_loss", "semantic_consistency_loss", "instance_stats",
       "instance_prior_loss", "smoothness_loss", "stereo_photometric_loss"]
ELEMENTWISE_OPS = {"confidence_map", "consistency_loss", "semantic_consistency_loss", "smoothness_loss",
                   "stereo_photometric_loss"}
GRAD_OPS = {"consistency_loss", "semantic_consistency_loss", "instance_prior_loss", "smoothness_loss",
            "stereo_photometric_loss"}
LOOP_OPS = {"instance_stats", "instance_prior_loss"}
MODES = ["forward", "backward", "full"]
PROVIDERS = ["desc_ops", "compiled", "reference", "loop"]
COPY = "copy"  # the memory copy timed beside the providers of an elementwise row (CPU)


@dataclass(frozen=True)
class Size:
    B: int
    H: int
    W: int
    C: int = 19
    K: int = 30
    sweep: bool = False  # part of the pixel-scaling sweep
    only: tuple = ()  # run these ops only (all if empty)

    def label(self, op: str) -> str:
        s = f"{self.B}x{self.H}x{self.W}"
        if op in ("confidence_map", "semantic_consistency_loss"):
            s += f" C={self.C}"
        if op in ("instance_stats", "instance_prior_loss"):
            s += f" K={self.K}"
        return s


def sizes(quick: bool, device: str) -> List[Size]:
    if quick:
        return [Size(2, 64, 160, C=19, K=8)]
    sweep = [Size(2, 96, 320, sweep=True), Size(2, 192, 640, sweep=True), Size(2, 384, 1280, sweep=True)]
    base = [Size(8, 192, 640), Size(8, 192, 640, C=133), Size(8, 192, 640, K=5), Size(8, 192, 640, K=60)]
    if device == "cpu":
        # 8x384x1280: the size of the copy-bandwidth target of the elementwise losses.
        return base[:1] + [Size(8, 384, 1280, only=("consistency_loss", "smoothness_loss", "stereo_photometric_loss"))] + sweep
    return base + [Size(16, 192, 640), Size(8, 384, 1280)] + sweep


# --------------------------------------------------------------------- inputs


def make_inputs(size: Size, dtype, device, seed=0) -> Dict[str, torch.Tensor]:
    g = torch.Generator(device="cpu").manual_seed(seed)
    B, H, W, C, K = size.B, size.H, size.W, size.C, size.K
    ids = torch.full((B, H, W), -1, dtype=torch.long)
    # K rectangular instances per image, of street-scene sizes.
    for b in range(B):
        for k in range(K):
            h = int(torch.randint(4, max(5, H // 4), (1,), generator=g))
            w = int(torch.randint(4, max(5, W // 8), (1,), generator=g))
            y = int(torch.randint(0, H - h + 1, (1,), generator=g))
            x = int(torch.randint(0, W - w + 1, (1,), generator=g))
            ids[b, y:y + h, x:x + w] = k
    x = dict(
        depth=torch.rand(B, 1, H, W, generator=g) * 60 + 1,
        depth_sem=torch.rand(B, 1, H, W, generator=g) * 60 + 1,
        weight=torch.rand(B, 1, H, W, generator=g),
        logits=torch.randn(B, C, H, W, generator=g) * 2,
        image=torch.rand(B, 3, H, W, generator=g),
        image_other=torch.rand(B, 3, H, W, generator=g),
        ids=ids,
        heights=torch.rand(B, K, generator=g) + 1,
        focal=torch.full((B,), 720.0),
        # KITTI's focal x baseline at this width: disparities of 0.5 to 40 pixels at 1 to 61 m.
        focal_baseline=torch.full((B,), 0.54 * 720.0 * W / 1242),
    )
    out = {}
    for k, v in x.items():
        if v.is_floating_point() and k not in ("focal", "focal_baseline"):
            v = v.to(dtype)
        out[k] = v.to(device)
    return out


def bytes_moved(op: str, mode: str, x: Dict[str, torch.Tensor]) -> int:
    """The bytes an implementation must read and write, at least."""
    d = x["depth"]
    n, e = d.numel(), d.element_size()
    C = x["logits"].shape[1]
    ids = x["ids"].numel() * x["ids"].element_size()
    fwd = {
        "confidence_map": (C + 3 + 1) * n * e,
        "consistency_loss": 3 * n * e,
        "semantic_consistency_loss": (2 + C + 3 + 1) * n * e,  # depth, depth_sem, logits, image; confidence out
        "instance_stats": ids + n * e,
        "instance_prior_loss": ids + n * e,
        "smoothness_loss": (1 + 3) * n * e,
        "stereo_photometric_loss": (1 + 3 + 3) * n * e,  # depth, both images
    }[op]
    bwd = {
        "consistency_loss": 5 * n * e,  # depth, depth_sem, weight in; two gradients out
        "semantic_consistency_loss": 5 * n * e,
        "instance_prior_loss": ids + 2 * n * e,
        "smoothness_loss": (1 + 3 + 1) * n * e,
        "stereo_photometric_loss": (1 + 3 + 3 + 1) * n * e,  # depth, both images in; the gradient out
    }.get(op, 0)
    return {"forward": fwd, "backward": bwd, "full": fwd + bwd}[mode]


# ------------------------------------------------------------------ providers


def op_function(op: str, provider: str) -> Optional[Callable]:
    """f(x, depth, depth_sem, heights) -> output, for one provider."""
    lib = {"desc_ops": desc_ops, "reference": reference, "compiled": reference}.get(provider)
    if provider == "loop":
        if op == "instance_stats":
            return lambda x, d, s, h: instance_stats_loop(x["ids"], x["heights"].shape[1], d)
        if op == "instance_prior_loss":
            return lambda x, d, s, h: instance_prior_loss_loop(d, x["ids"], h, x["focal"])
        return None
    fns = {
        "confidence_map": lambda x, d, s, h: lib.confidence_map(x["logits"], image=x["image"]),
        "consistency_loss": lambda x, d, s, h: lib.consistency_loss(d, s, x["weight"]),
        "semantic_consistency_loss": lambda x, d, s, h: lib.semantic_consistency_loss(d, s, x["logits"],
                                                                                     image=x["image"]),
        "instance_stats": lambda x, d, s, h: lib.instance_stats(x["ids"], x["heights"].shape[1], d,
                                                                validate=False),
        "instance_prior_loss": lambda x, d, s, h: lib.instance_prior_loss(d, x["ids"], h, x["focal"],
                                                                          validate=False),
        "smoothness_loss": lambda x, d, s, h: lib.smoothness_loss(d, x["image"]),
        "stereo_photometric_loss": lambda x, d, s, h: lib.stereo_photometric_loss(d, x["image"], x["image_other"],
                                                                                  x["focal_baseline"]),
    }
    fn = fns[op]
    if provider == "compiled":
        fn = torch.compile(fn)
    return fn


def runner(op: str, mode: str, fn: Callable, x) -> Callable[[], None]:
    """A no-argument callable that runs one `mode` of `fn`."""
    if mode == "forward":
        def run():
            with torch.no_grad():
                fn(x, x["depth"], x["depth_sem"], x["heights"])
        return run
    leaves = [x["depth"].clone().requires_grad_(), x["depth_sem"].clone().requires_grad_(),
              x["heights"].clone().requires_grad_()]

    # Gradients are set to None before each backward, as a training step's
    # optimizer.zero_grad() does: each provider's backward then writes fresh
    # gradients, with no accumulation into the previous ones (an add per
    # leaf that is no part of the op).
    def clear_grads():
        for leaf in leaves:
            leaf.grad = None
    if mode == "full":
        def run():
            clear_grads()
            out = fn(x, *leaves)
            out.backward()
        return run
    out = fn(x, *leaves)

    def run():
        clear_grads()
        out.backward(retain_graph=True)
    return run


# --------------------------------------------------------------------- timing


def quantiles(times_ms: List[float]):
    t = sorted(times_ms)

    def q(p):
        return t[min(len(t) - 1, max(0, int(round(p * (len(t) - 1)))))]
    return q(0.5), q(0.2), q(0.8)


def time_cuda(run, budget_s=0.3, max_reps=200):
    for _ in range(3):
        run()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    run()
    torch.cuda.synchronize()
    once = time.perf_counter() - t0
    reps = int(max(5, min(max_reps, budget_s / max(once, 1e-6))))
    # Flushing L2 between runs: a buffer larger than any current L2.
    flush = torch.empty(64 * 2**20, dtype=torch.int8, device="cuda")
    times = []
    for _ in range(reps):
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return quantiles(times)


def time_cpu(runs: Dict[str, Callable], budget_s=0.5, block_s=0.01, min_rounds=5):
    """Median, p20 and p80 ms of each of ``runs``, timed side by side: in rounds,
    each run one block of about ``block_s`` in turn, until each has had
    ``budget_s``. On a shared machine a slow phase then falls on every provider
    of a row (and on its copy), not on whichever happened to be running. Each
    block starts after one untimed call, so that no provider pays for what
    the one before it left in the caches (the copy's dirty lines, written back
    as the next run's reads evict them)."""
    timers, number, times = {}, {}, {}
    for name, run in runs.items():
        run()
        t0 = time.perf_counter()
        run()
        once = time.perf_counter() - t0
        timers[name] = tbench.Timer(stmt="run()", globals={"run": run}, num_threads=torch.get_num_threads())
        number[name] = max(1, int(block_s / max(once, 1e-9)))
        times[name] = []
    spent = dict.fromkeys(runs, 0.0)
    rounds = 0
    while rounds < min_rounds or min(spent.values()) < budget_s:
        for name, timer in timers.items():
            if rounds >= min_rounds and spent[name] >= budget_s:
                continue
            runs[name]()
            per_call = timer.timeit(number[name]).mean
            times[name].append(per_call * 1e3)
            spent[name] += per_call * number[name]
        rounds += 1
    return {name: quantiles(t) for name, t in times.items()}


def cpu_copy(nbytes: int) -> Callable[[], torch.Tensor]:
    """``dst.copy_(src)`` moving ``nbytes`` (``src`` half of them: 2 bytes moved
    per byte copied, as on CUDA), timed beside the providers of a row."""
    src = torch.ones(max(1, nbytes // 2), dtype=torch.uint8)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


def copy_bandwidth_gbs() -> float:
    src = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms, _, _ = time_cuda(lambda: dst.copy_(src))
    return 2 * src.numel() / (ms * 1e-3) / 1e9


def peak_memory_mb(run) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


# ----------------------------------------------------------------------- main


@dataclass
class Row:
    op: str
    mode: str
    device: str
    dtype: str
    size: str
    pixels: int
    sweep: bool
    provider: str
    median_ms: float
    p20_ms: float
    p80_ms: float
    bytes: int
    gbs: float
    copy_fraction: Optional[float] = None
    peak_mb: Optional[float] = None
    speedup_of_desc_ops: Optional[float] = None


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def run_benchmarks(args) -> Dict:
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    dtypes = [getattr(torch, d) for d in args.dtype.split(",")]
    ops = args.ops.split(",") if args.ops else OPS
    providers = args.providers.split(",") if args.providers else PROVIDERS
    modes = args.modes.split(",") if args.modes else MODES
    meta = dict(torch=torch.__version__, cuda=torch.version.cuda, git=git_revision(), threads=torch.get_num_threads(),
                python=platform.python_version(), cpu=platform.processor() or platform.machine(),
                gpu=torch.cuda.get_device_name() if "cuda" in devices else None, quick=args.quick)
    if "cuda" in devices:
        meta["copy_bandwidth_gbs"] = copy_bandwidth_gbs()
    rows: List[Row] = []
    for device in devices:
        for dtype in dtypes:
            for size in sizes(args.quick, device):
                x = make_inputs(size, dtype, device)
                for op in ops:
                    if size.sweep and op not in ("semantic_consistency_loss", "instance_stats",
                                                 "instance_prior_loss", "smoothness_loss",
                                                 "stereo_photometric_loss"):
                        continue
                    if size.only and op not in size.only:
                        continue
                    for mode in modes:
                        if mode != "forward" and op not in GRAD_OPS:
                            continue
                        if args.quick and not args.modes and op in GRAD_OPS and mode != "full":
                            continue  # quick: forward + backward together only
                        runs = {}
                        for provider in providers:
                            if provider == "loop" and (op not in LOOP_OPS or mode == "backward"):
                                continue
                            try:
                                runs[provider] = runner(op, mode, op_function(op, provider), x)
                                runs[provider]()
                            except Exception as err:  # report, do not hide: a provider that fails shows why
                                print(f"  {op} {mode} {provider}: failed: {type(err).__name__}: {err}",
                                      file=sys.stderr)
                                runs.pop(provider, None)
                        nbytes = bytes_moved(op, mode, x)
                        copied = device == "cpu" and op in ELEMENTWISE_OPS and bool(runs)
                        if device == "cuda":
                            times = {p: time_cuda(run, budget_s=0.05 if args.quick else 0.3) for p, run in runs.items()}
                        else:
                            with_copy = dict(runs, **({COPY: cpu_copy(nbytes)} if copied else {}))
                            times = time_cpu(with_copy, budget_s=0.05 if args.quick else 0.5)
                        if copied:
                            copy_gbs = nbytes / (times[COPY][0] * 1e-3) / 1e9
                            meta.setdefault("cpu_copy_bandwidth_gbs", []).append(
                                dict(op=op, mode=mode, dtype=str(dtype).replace("torch.", ""),
                                     size=size.label(op), bytes=nbytes, gbs=copy_gbs))
                        measured = {}
                        for provider, run in runs.items():
                            med, p20, p80 = times[provider]
                            gbs = nbytes / (med * 1e-3) / 1e9
                            fraction = (gbs / meta["copy_bandwidth_gbs"] if device == "cuda"
                                        else gbs / copy_gbs if copied else None)
                            row = Row(op, mode, device, str(dtype).replace("torch.", ""), size.label(op),
                                      size.B * size.H * size.W, size.sweep, provider, med, p20, p80, nbytes, gbs,
                                      fraction, peak_memory_mb(run) if device == "cuda" else None)
                            measured[provider] = row
                            rows.append(row)
                        if "desc_ops" in measured:
                            for r in measured.values():
                                r.speedup_of_desc_ops = r.median_ms / measured["desc_ops"].median_ms
                        print_rows(list(measured.values()))
    return {"meta": meta, "results": [r.__dict__ for r in rows]}


_printed_header = False


def print_rows(rows: List[Row]) -> None:
    global _printed_header
    if not _printed_header:
        print(f"{'op':27s} {'mode':8s} {'dev':4s} {'dtype':8s} {'size':22s} {'provider':9s} "
              f"{'median ms':>10s} {'p20':>9s} {'p80':>9s} {'GB/s':>8s} {'%copy':>6s} {'peak MB':>8s} {'x ours':>7s}")
        _printed_header = True
    for r in rows:
        copy = f"{100 * r.copy_fraction:5.1f}%" if r.copy_fraction is not None else "     -"
        peak = f"{r.peak_mb:8.1f}" if r.peak_mb is not None else "       -"
        sp = f"{r.speedup_of_desc_ops:6.1f}x" if r.speedup_of_desc_ops is not None else "      -"
        print(f"{r.op:27s} {r.mode:8s} {r.device:4s} {r.dtype:8s} {r.size:22s} {r.provider:9s} "
              f"{r.median_ms:10.3f} {r.p20_ms:9.3f} {r.p80_ms:9.3f} {r.gbs:8.1f} {copy} {peak} {sp}", flush=True)


def plot_sweep(record: Dict, path: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in record["results"] if r["sweep"] and r["mode"] in ("full", "forward")]
    keys = sorted({(r["op"], r["mode"], r["device"], r["dtype"]) for r in rows})
    keys = [k for k in keys if k[1] == ("full" if k[0] in GRAD_OPS else "forward")]
    if not keys:
        return False
    cols = min(4, len(keys))
    fig, axes = plt.subplots(math.ceil(len(keys) / cols), cols, figsize=(4 * cols, 3.3 * math.ceil(len(keys) / cols)),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for provider in PROVIDERS:
            pts = sorted((r["pixels"], r["median_ms"]) for r in rows
                         if (r["op"], r["mode"], r["device"], r["dtype"]) == key and r["provider"] == provider)
            if pts:
                ax.loglog(*zip(*pts), marker="o", label=provider)
        ax.set_title(f"{key[0]} {key[1]}\n{key[2]} {key[3]}", fontsize=9)
        ax.set_xlabel("pixels")
        ax.set_ylabel("ms")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="one small size, one mode per op (full, or forward where there is no gradient)")
    p.add_argument("--ops", default="", help=f"comma-separated subset of {','.join(OPS)}")
    p.add_argument("--device", default="all", choices=["all", "cpu", "cuda"])
    p.add_argument("--dtype", default="float32,bfloat16", help="comma-separated: float32,bfloat16,float16,float64")
    p.add_argument("--providers", default="", help=f"comma-separated subset of {','.join(PROVIDERS)}")
    p.add_argument("--modes", default="", help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument("--json", default="benchmark-results.json", help="where to write the record")
    p.add_argument("--plot", default="benchmark-scaling.png", help="PNG of the scaling sweep (needs matplotlib)")
    args = p.parse_args(argv)
    unknown = set(args.ops.split(",")) - set(OPS) - {""}
    if unknown:
        p.error(f"unknown ops: {sorted(unknown)}")
    if desc_ops.backend() != "extension":
        p.error("benchmarks need the compiled extension (unset DESC_OPS_BACKEND)")
    print(f"desc-ops benchmark: torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"), flush=True)
    record = run_benchmarks(args)
    if record["meta"].get("copy_bandwidth_gbs"):
        print(f"device-to-device copy bandwidth: {record['meta']['copy_bandwidth_gbs']:.1f} GB/s")
    with open(args.json, "w") as f:
        json.dump(record, f, indent=1)
    print(f"wrote {args.json}")
    if args.plot and plot_sweep(record, args.plot):
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
