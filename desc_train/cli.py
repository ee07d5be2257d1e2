"""The desc-train command line (also `python -m desc_train`).

Its contract: a user's mistake, the argument parser's included, ends the command
with exit status 1 and one line on stderr, ``desc-train <cmd>: error: <message>``
(``<cmd>`` is ``prepare vkitti`` and so on for the converters), never a traceback;
``--help`` exits with 0."""
from __future__ import annotations

import argparse
import math
import sys
import time

from .config import MAX_DEPTH, MAX_SEED, MAX_SIDE, MAX_TARGET_TRAIN, PRESETS, device_name
from .errors import WORKERS, Bounds, UserError, argument, parse_hxw, shown


class CommandLineError(UserError):
    """A mistake the argument parser found; `prog` is the command it belongs to."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes end the command like any other (main prints one
    line, status 1) instead of argparse's usage block and status 2."""

    def error(self, message: str):
        raise CommandLineError(self.prog, message)


def _size(text: str):
    try:
        h, w = parse_hxw(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 96x320, got {shown(text)}") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {shown(text)}")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"size must be at most {MAX_SIDE}x{MAX_SIDE}, got {shown(text)}")
    return h, w


def _ints(text: str):
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {shown(text)}") from None


SEED = Bounds(0, MAX_SEED)
_positive = argument(Bounds(1))
_count = argument(Bounds(0))
_workers = argument(WORKERS)
_seed = argument(SEED)
_target_count = argument(Bounds(0, MAX_TARGET_TRAIN, why=" (more would repeat target_test's scenes)"))


def _seeds(text: str):
    """Comma-separated seeds, each once (a seed twice would train its runs twice, into one folder)."""
    seeds = _ints(text)
    if not all(seed in SEED for seed in seeds):
        raise argparse.ArgumentTypeError(f"expected seeds from 0 to {MAX_SEED}, got {shown(text)}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected each seed once, got {shown(text)}")
    return seeds


def _cap(text: str):
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"cap must look like 0.001,{MAX_DEPTH:g} (min,max metres), "
                                         f"got {shown(text)}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
        raise argparse.ArgumentTypeError(f"cap must be finite metres with 0 <= min < max, got {shown(text)}")
    return lo, hi


def _device(text: str) -> str:
    if not device_name(text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {shown(text)}")
    return text


def _path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, got {shown(text)}")
    return text


def usable_device(name: str, given: str) -> str:
    """`name` if this machine has that device; else UserError naming it as the user
    gave it (`given`: '--device ' or 'setting device=')."""
    if name == "cpu":
        return name
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(name.split(":")[1]) if ":" in name else 0
    if index >= count:
        have = f"{count} CUDA devices, cuda:0 to cuda:{count - 1}" if count else "no CUDA device"
        raise UserError(f"{given}{name}: device {name!r} is not available here (this machine has {have}); "
                        f"use cpu{' or one of those' if count else ''}")
    return name


def _override(cfg, item: str):
    from .config import load_config  # one coercion path for every override
    import dataclasses

    base = load_config(None, [item])
    key = item.split("=", 1)[0]
    return dataclasses.replace(cfg, **{key: getattr(base, key)})


def build_parser() -> Parser:
    p = Parser(prog="desc-train", description="DESC training on top of desc_ops",
               epilog="A mistake exits with status 1 and one line: desc-train <cmd>: error: <message>.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    g = sub.add_parser("generate", help="write the procedural two-domain street-scene benchmark")
    g.add_argument("--out", required=True, type=_path, help="root folder of the dataset")
    g.add_argument("--source", type=_count, default=2000, help="source_train frames (0: none)")
    g.add_argument("--target", type=_target_count, default=2000,
                   help=f"target_train frames (0: none; at most {MAX_TARGET_TRAIN:,})")
    g.add_argument("--test", type=_count, default=200, help="target_test frames (0: none)")
    g.add_argument("--size", type=_size, default=(96, 320), help="HxW, default 96x320")
    g.add_argument("--seed", type=_seed, default=0, help=f"0 to {MAX_SEED}")
    g.add_argument("--workers", type=_workers, default=None, help="processes (default: the CPU count)")
    g.add_argument("--sheet", type=_path, default=None, help="also write a contact sheet PNG here")
    g.add_argument("--logits", action="store_true", help="also write the simulated segmenter's logits (target)")
    g.add_argument("--stereo", action="store_true",
                   help="also write the right view of every target_train frame (rgb_right/; 0.54 m baseline)")
    g.set_defaults(run=_generate)
    s = sub.add_parser("sheet", help="contact sheet (RGB | depth | labels | instances) of dataset splits")
    s.add_argument("splits", nargs="+", help="split folders (with meta.json)")
    s.add_argument("--out", required=True, type=_path, help="PNG to write")
    s.add_argument("--rows", type=_positive, default=4, help="frames per split")
    s.set_defaults(run=_sheet)
    d = sub.add_parser("demo", help="generate the benchmark, train source-only and DESC (with ablations), "
                                    "evaluate on the target test split, write table and pictures")
    d.add_argument("--quick", action="store_true", help="a tiny run that shows the whole pipeline")
    d.add_argument("--seeds", type=_seeds, default=[0, 1, 2],
                   help=f"comma-separated seeds, each 0 to {MAX_SEED} (default 0,1,2)")
    d.add_argument("--config", default=None, type=_path, help="TOML file of settings (desc_train/config.py)")
    d.add_argument("--workers", type=_workers, default=None,
                   help="stages trained at once, in processes (default: torch's thread count)")
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting (repeatable)")
    d.set_defaults(run=_demo)
    st = sub.add_parser("study", help="experiments that decide a default (README, \"Does the confidence map help?\")")
    studies = st.add_subparsers(dest="study", required=True, parser_class=Parser)
    c = studies.add_parser("confidence", help="plain mean vs the confidence map (labels, logits, sharper) over "
                                              "seeds, choices on target_val, AbsRel on all/instance/boundary pixels")
    c.add_argument("--seeds", type=_seeds, default=[0, 1, 2, 3, 4, 5],
                   help=f"comma-separated seeds, each 0 to {MAX_SEED} (default 0,1,2,3,4,5)")
    c.add_argument("--out", type=_path, default=None,
                   help="run folder, resumable (default runs/study-confidence, with --quick ...-quick)")
    c.add_argument("--data", type=_path, default=None, help="benchmark folder, generated with target logits and "
                   "target_val if missing (default runs/bench-logits, with --quick ...-quick)")
    c.add_argument("--quick", action="store_true", help="a tiny run that shows the whole pipeline")
    c.add_argument("--workers", type=_workers, default=None,
                   help="stages trained at once, in processes (default: torch's thread count)")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting (repeatable), e.g. iters_joint=100")
    c.set_defaults(run=_study_confidence)
    t = sub.add_parser("train", help="train the DESC stages (source-only, semantic + height, joint) on prepared "
                                     "splits, then evaluate on the test split")
    t.add_argument("--config", default=None, type=_path, help="TOML file of settings (desc_train/config.py)")
    t.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="start from these settings (paper: the official implementation's, for a GPU)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting (repeatable)")
    t.set_defaults(run=_train)
    e = sub.add_parser("evaluate", help="evaluate a checkpoint's G_rgb on a split")
    e.add_argument("checkpoint")
    e.add_argument("split", help="split folder with ground truth (gt/ at native size, or depth/)")
    e.add_argument("--median-scaling", action="store_true", help="scale each prediction by median(gt)/median(pred)")
    e.add_argument("--cap", type=_cap, action="append", default=None,
                   help="min,max metres of evaluated ground truth, 0 <= min < max (repeatable; default: the "
                        f"split's protocol, else 0.001,{MAX_DEPTH:g} and 1,50)")
    e.add_argument("--crop", default="auto", choices=["auto", "none", "garg", "cityscapes"],
                   help="auto: the split's protocol (garg for KITTI, cityscapes for Cityscapes)")
    e.add_argument("--json", type=_path, default=None, help="also write the result (protocol and metrics) here")
    e.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    e.set_defaults(run=_evaluate)
    from .data.prepare import add_parser as add_prepare

    add_prepare(sub)
    return p


def command_name(args) -> str:
    """'desc-train generate', 'desc-train prepare vkitti', 'desc-train study confidence':
    the command of parsed `args`."""
    sub = {"prepare": getattr(args, "dataset", None), "study": getattr(args, "study", None)}.get(args.command)
    return " ".join(["desc-train", args.command] + ([sub] if sub else []))


def main(argv=None) -> int:
    """Runs the command of `argv` (default: sys.argv[1:]); its exit status (0, or 1
    after a one-line message on stderr for a user's mistake)."""
    prog = "desc-train"
    try:
        args, extra = build_parser().parse_known_args(argv)
        prog = command_name(args)
        if extra:  # argparse finds these at the top, after the command's own parser is done
            raise CommandLineError(prog, f"unrecognized arguments: {' '.join(extra)}")
        return args.run(args)
    except CommandLineError as err:
        print(f"{err.prog}: error: {err}", file=sys.stderr)
        return 1
    except (UserError, OSError) as err:  # the user's mistake: one line, no traceback
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1


def _demo(args) -> int:
    import dataclasses

    from .config import load_config
    from .demo import quick_config, run_demo

    cfg = load_config(args.config, [])
    if args.quick:
        cfg = quick_config(cfg)
        cfg = dataclasses.replace(cfg, data=cfg.data + "-quick", out=cfg.out + "-quick")
    for item in args.overrides:
        cfg = _override(cfg, item)
    usable_device(cfg.device, "setting device=")
    run_demo(cfg, seeds=args.seeds, workers=args.workers)
    return 0


def _study_confidence(args) -> int:
    import dataclasses

    from .confidence_study import run_study, study_config
    from .config import load_config

    tail = "-quick" if args.quick else ""
    cfg = dataclasses.replace(study_config(load_config(None, []), quick=args.quick),
                              data=args.data or "runs/bench-logits" + tail,
                              out=args.out or "runs/study-confidence" + tail)
    for item in args.overrides:
        cfg = _override(cfg, item)
    usable_device(cfg.device, "setting device=")
    run_study(cfg, seeds=args.seeds, workers=args.workers)
    return 0


def _evaluate(args) -> int:
    caps = [f"{lo:g},{hi:g}" for lo, hi in args.cap or []]
    twice = sorted({c for c in caps if caps.count(c) > 1})
    if twice:
        raise UserError(f"--cap {twice[0]} is given twice")
    usable_device(args.device, "--device ")  # before the checkpoint: a missing GPU is no fault of the file
    from .evaluate import evaluate_split, results_table
    from .train import load_g_rgb

    crop = None if args.crop == "none" else args.crop
    result = evaluate_split(load_g_rgb(args.checkpoint, args.device), args.split,
                            median_scaling=args.median_scaling, caps=args.cap, crop=crop)
    print(results_table(result))
    if args.json:
        from .train import _write_json

        _write_json(args.json, result)
    return 0


def _train(args) -> int:
    from .config import load_config
    from .train import train_desc

    cfg = load_config(args.config, args.overrides, preset=args.preset)
    usable_device(cfg.device, "setting device=")
    result = train_desc(cfg)
    if result is not None:
        from .evaluate import results_table

        for r in result.values():
            print(results_table(r))
    return 0


def _generate(args) -> int:
    from .data.generate import generate_benchmark, iter_splits
    from .data.sheet import contact_sheet

    t = time.time()
    counts = {"source_train": args.source, "target_train": args.target, "target_test": args.test}
    generate_benchmark(args.out, {k: v for k, v in counts.items() if v > 0}, seed=args.seed, size=args.size,
                       workers=args.workers, logits=args.logits, stereo=args.stereo)
    print(f"generated in {time.time() - t:.1f} s under {args.out}")
    if args.sheet:
        print(f"wrote {contact_sheet(list(iter_splits(args.out)), args.sheet)}")
    return 0


def _sheet(args) -> int:
    from .data.sheet import contact_sheet

    try:
        print(f"wrote {contact_sheet(args.splits, args.out, per_split=args.rows)}")
    except ValueError as err:  # splits that list no frames
        raise UserError(str(err)) from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
