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
    args = p.parse_args(argv)

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
