"""The one-command demonstration: generate the benchmark, train source-only and
DESC (with ablations) on it, evaluate each on the target test split, and write
the table (JSON, Markdown) and pictures."""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from typing import Dict, List, Sequence

import cv2
import numpy as np
import torch

from .config import Config
from .data import DepthDataset, generate_benchmark
from .data.sheet import colorize_depth
from .evaluate import METRICS, depth_metrics
from .train import Trainer

VARIANTS = {  # row name -> (stage name, switches)
    "DESC": ("joint", {}),
    "consistency only": ("joint_consistency", {"instance": False}),
    "instance prior only": ("joint_instance", {"consistency": False}),
    "unweighted consistency": ("joint_unweighted", {"confidence": False}),
}


def quick_config(cfg: Config) -> Config:
    return dataclasses.replace(cfg, size=(32, 96), counts={"source_train": 24, "target_train": 24, "target_test": 8},
                               width=4, batch_size=4, iters_source=6, iters_sem=6, iters_joint=6, log_every=2,
                               checkpoint_every=3)


def ensure_data(cfg: Config, log=print) -> None:
    missing = {k: v for k, v in cfg.counts.items() if not os.path.exists(os.path.join(cfg.data, k, "meta.json"))}
    if missing:
        generate_benchmark(cfg.data, missing, seed=1234, size=cfg.size, log=log)


def evaluate(trainer: Trainer, split_dir: str) -> Dict[str, float]:
    ds = DepthDataset(split_dir)
    preds, gts = [], []
    for i in range(0, len(ds), 16):
        items = [ds[j] for j in range(i, min(len(ds), i + 16))]
        image = torch.stack([it["image"] for it in items])
        preds.append(trainer.predict(image).cpu())
        gts.append(torch.stack([it["depth"] for it in items]))
    pred, gt = torch.cat(preds), torch.cat(gts)
    out = {f"{k}": v for k, v in depth_metrics(pred, gt, cap=(1e-3, 80.0)).items()}
    out.update({f"{k}@1-50m": v for k, v in depth_metrics(pred, gt, cap=(1.0, 50.0)).items()})
    out.update({f"{k}@median": v for k, v in depth_metrics(pred, gt, median_scaling=True).items()})
    return out


def pictures(path: str, split_dir: str, trainers: Dict[str, Trainer], count: int = 4) -> None:
    ds = DepthDataset(split_dir)
    rows = []
    for i in range(min(count, len(ds))):
        it = ds[i]
        tiles = [(it["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8), colorize_depth(it["depth"][0].numpy())]
        for t in trainers.values():
            tiles.append(colorize_depth(t.predict(it["image"][None])[0, 0].cpu().numpy()))
        rows.append(np.concatenate([np.pad(t, ((1, 1), (1, 1), (0, 0)), constant_values=255) for t in tiles], axis=1))
    cv2.imwrite(path, cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


def run_demo(cfg: Config, seeds: Sequence[int] = (0, 1, 2), log=print) -> Dict:
    t0 = time.time()
    ensure_data(cfg, log)
    results: Dict[str, List[Dict[str, float]]] = {"source-only": [], **{k: [] for k in VARIANTS}}
    test_split = os.path.join(cfg.data, "target_test")
    for seed in seeds:
        run_dir = os.path.join(cfg.out, f"seed{seed}")
        c = dataclasses.replace(cfg, seed=seed)
        base = Trainer(c, run_dir, log=log)
        base.run_stage("source_only", c.iters_source)
        # The baseline gets as many G_rgb steps as the joint rows (stage a + stage c), so
        # that the rows differ by the DESC terms, not by training time.
        baseline = Trainer(c, run_dir, log=log)
        baseline.run_stage("source_only_long", c.iters_joint, start_from=base.checkpoint_path("source_only"),
                           kind="source_only")
        results["source-only"].append(evaluate(baseline, test_split))
        base.run_stage("semantic", c.iters_sem, start_from=base.checkpoint_path("source_only"))
        shown = {"source-only": baseline}
        for row, (stage, switches) in VARIANTS.items():
            t = Trainer(c, run_dir, log=log)
            t.run_stage(stage, c.iters_joint, switches, start_from=base.checkpoint_path("semantic"), kind="joint")
            results[row].append(evaluate(t, test_split))
            if row == "DESC":
                shown["DESC"] = t
        pictures(os.path.join(cfg.out, f"pictures_seed{seed}.png"), test_split, shown)
        log(f"seed {seed}: AbsRel source-only {results['source-only'][-1]['abs_rel']:.4f}, "
            f"DESC {results['DESC'][-1]['abs_rel']:.4f}")
    summary = {row: {k: (statistics.mean(r[k] for r in runs), statistics.pstdev(r[k] for r in runs))
                     for k in runs[0]} for row, runs in results.items()}
    record = dict(config=dataclasses.asdict(cfg), seeds=list(seeds), per_seed=results, summary=summary,
                  wall_time_s=round(time.time() - t0, 1))
    os.makedirs(cfg.out, exist_ok=True)
    with open(os.path.join(cfg.out, "results.json"), "w") as f:
        json.dump(record, f, indent=1)
    table = markdown_table(summary, len(seeds))
    with open(os.path.join(cfg.out, "results.md"), "w") as f:
        f.write(table + "\n")
    log(table)
    log(f"wall time {record['wall_time_s']} s; results in {cfg.out}")
    return record


def markdown_table(summary: Dict, n_seeds: int) -> str:
    cols = list(METRICS)
    lines = [f"Target test split, mean ± std over {n_seeds} seed(s), depth cap 80 m, no median scaling",
             "", "| method | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for row, metrics in summary.items():
        lines.append(f"| {row} | " + " | ".join(f"{metrics[c][0]:.4f} ± {metrics[c][1]:.4f}" for c in cols) + " |")
    return "\n".join(lines)
