"""The desc-train command line (also `python -m desc_train`)."""
from __future__ import annotations

import argparse
import os
import sys
import time


def _size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 96x320, got {text!r}") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return h, w


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
    s = sub.add_parser("sheet", help="contact sheet (RGB | depth | labels | instances) of dataset splits")
    s.add_argument("splits", nargs="+", help="split folders (with meta.json)")
    s.add_argument("--out", required=True, help="PNG to write")
    s.add_argument("--rows", type=int, default=4, help="frames per split")
    d = sub.add_parser("demo", help="generate the benchmark, train source-only and DESC (with ablations), "
                                    "evaluate on the target test split, write table and pictures")
    d.add_argument("--quick", action="store_true", help="a tiny run (under two minutes) that shows the pipeline")
    d.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    d.add_argument("--config", default=None, help="TOML file of settings (desc_train/config.py)")
    d.add_argument("--workers", type=int, default=None,
                   help="stages trained at once, in processes (default: torch's thread count)")
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting (repeatable)")
    e = sub.add_parser("evaluate", help="evaluate a checkpoint's G_rgb on a split")
    e.add_argument("checkpoint")
    e.add_argument("split", help="split folder with ground-truth depth")
    e.add_argument("--median-scaling", action="store_true")
    e.add_argument("--cap", default="0.001,80", help="min,max metres of evaluated ground truth")
    e.add_argument("--crop", default=None, choices=[None, "garg"])
    args = p.parse_args(argv)

    if args.command == "demo":
        import dataclasses

        from .config import load_config
        from .demo import quick_config, run_demo

        cfg = load_config(args.config, [])
        if args.quick:
            cfg = quick_config(cfg)
            cfg = dataclasses.replace(cfg, data=cfg.data + "-quick", out=cfg.out + "-quick")
        for item in args.overrides:
            cfg = _override(cfg, item)
        run_demo(cfg, seeds=[int(s) for s in args.seeds.split(",")], workers=args.workers)
        return 0
    if args.command == "evaluate":
        from .evaluate import depth_metrics, predict_split
        from .train import load_g_rgb

        pred, gt, _ = predict_split(load_g_rgb(args.checkpoint), args.split)
        lo, hi = (float(v) for v in args.cap.split(","))
        for k, v in depth_metrics(pred, gt, cap=(lo, hi), median_scaling=args.median_scaling, crop=args.crop).items():
            print(f"{k:9s} {v:.4f}")
        return 0

    if args.command == "generate":
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
    if args.command == "sheet":
        from .data.sheet import contact_sheet

        print(f"wrote {contact_sheet(args.splits, args.out, per_split=args.rows)}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
