"""The desc-train command line (also `python -m desc_train`)."""
from __future__ import annotations

import argparse
import sys
import time

from .config import PRESETS
from .errors import UserError


def _size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 96x320, got {text!r}") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return h, w


def _ints(text: str):
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _cap(text: str):
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"cap must look like 0.001,80 (min,max metres), got {text!r}") from None
    return lo, hi


def _override(cfg, item: str):
    from .config import load_config  # one coercion path for every override
    import dataclasses

    base = load_config(None, [item])
    key = item.split("=", 1)[0]
    return dataclasses.replace(cfg, **{key: getattr(base, key)})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="desc-train", description="DESC training on top of desc_ops")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="write the procedural two-domain street-scene benchmark")
    g.add_argument("--out", required=True, help="root folder of the dataset")
    g.add_argument("--source", type=int, default=2000, help="source_train frames")
    g.add_argument("--target", type=int, default=2000, help="target_train frames")
    g.add_argument("--test", type=int, default=200, help="target_test frames")
    g.add_argument("--size", type=_size, default=(96, 320), help="HxW, default 96x320")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--workers", type=int, default=None, help="processes (default: the CPU count)")
    g.add_argument("--sheet", default=None, help="also write a contact sheet PNG here")
    g.add_argument("--logits", action="store_true", help="also write the simulated segmenter's logits (target)")
    g.set_defaults(run=_generate)
    s = sub.add_parser("sheet", help="contact sheet (RGB | depth | labels | instances) of dataset splits")
    s.add_argument("splits", nargs="+", help="split folders (with meta.json)")
    s.add_argument("--out", required=True, help="PNG to write")
    s.add_argument("--rows", type=int, default=4, help="frames per split")
    s.set_defaults(run=_sheet)
    d = sub.add_parser("demo", help="generate the benchmark, train source-only and DESC (with ablations), "
                                    "evaluate on the target test split, write table and pictures")
    d.add_argument("--quick", action="store_true", help="a tiny run that shows the whole pipeline")
    d.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="comma-separated seeds (default 0,1,2)")
    d.add_argument("--config", default=None, help="TOML file of settings (desc_train/config.py)")
    d.add_argument("--workers", type=_positive, default=None,
                   help="stages trained at once, in processes (default: torch's thread count)")
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting (repeatable)")
    d.set_defaults(run=_demo)
    t = sub.add_parser("train", help="train the DESC stages (source-only, semantic + height, joint) on prepared "
                                     "splits, then evaluate on the test split")
    t.add_argument("--config", default=None, help="TOML file of settings (desc_train/config.py)")
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
                   help="min,max metres of evaluated ground truth (repeatable; default: the split's protocol, "
                        "else 0.001,80 and 1,50)")
    e.add_argument("--crop", default="auto", choices=["auto", "none", "garg", "cityscapes"],
                   help="auto: the split's protocol (garg for KITTI, cityscapes for Cityscapes)")
    e.add_argument("--json", default=None, help="also write the result (protocol and metrics) here")
    e.add_argument("--device", default="cpu")
    e.set_defaults(run=_evaluate)
    from .data.prepare import add_parser as add_prepare

    add_prepare(sub)
    args = p.parse_args(argv)
    try:
        return args.run(args)
    except (UserError, OSError) as err:  # the user's mistake: one line, no traceback
        print(f"desc-train {args.command}: error: {err}", file=sys.stderr)
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
    run_demo(cfg, seeds=args.seeds, workers=args.workers)
    return 0


def _evaluate(args) -> int:
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
                       workers=args.workers, logits=args.logits)
    print(f"generated in {time.time() - t:.1f} s under {args.out}")
    if args.sheet:
        print(f"wrote {contact_sheet(list(iter_splits(args.out)), args.sheet)}")
    return 0


def _sheet(args) -> int:
    from .data.sheet import contact_sheet

    print(f"wrote {contact_sheet(args.splits, args.out, per_split=args.rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
