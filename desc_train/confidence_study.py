"""``desc-train study confidence``: does the confidence map earn its place?

On the embedded benchmark, with the target's simulated segmenter logits, per seed:
stage (a) and (b) as in the demo (``demo.plan``), then joint stages that differ only
in what weights the consistency per pixel (``Config.confidence``, ``edge_weight``,
``boundary_weight``):

* the rows: the plain mean (``none``, the official code), the map from labels,
  the map from logits;
* the candidates: ways to make the map matter more (FAMILIES). Of each family the
  study reports one member, the one with the lowest mean AbsRel over the seeds on
  ``target_val`` (scenes of their own: generate.DEFAULT_SPLITS); ``target_test``
  takes no part in any choice.

Every row is evaluated on ``target_test`` (and ``target_val``) on three pixel sets:
all pixels with ground truth, the pixels of segmented instances, and the pixels
within BOUNDARY_PX pixels of a class boundary of the split's labels (where the map
from labels and from logits differs most from 1).

The verdict rule (``verdict``): a row improves on the plain mean when the mean over
seeds of its per-seed AbsRel ratio to the plain mean, plus one standard deviation of
those ratios, is at most 1 - MIN_GAIN: a gain of MIN_GAIN beyond the spread over seeds.

Its verdict (README, "Does the confidence map help?"; seeds 0-5): no map, from labels,
logits or sharper, passes that rule on any pixel set, so Config.confidence defaults to
the plain mean ("none") and the map is an option.

Training and resuming are the demo's (``demo._run_all``, ``demo.run_job``); each
stage's metrics are kept next to its checkpoint (``<stage>.metrics.json``), so a
rerun evaluates only what is new.
"""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from .config import Config
from .data import DepthDataset
from .data.layout import DataError, atomic_write
from .demo import Job, _run_all, default_workers, ensure_data, plan, quick_config
from .evaluate import depth_metrics, predict_split
from .train import load_g_rgb

SPLITS = {"source_train": 400, "target_train": 400, "target_test": 100, "target_val": 100}
BOUNDARY_PX = 2  # "near a boundary": within this many pixels (Chebyshev) of a change of label
MIN_GAIN = 0.05  # the improvement over the plain mean a row must show beyond the spread
PLAIN = "plain mean (official)"
ROWS = {  # row -> (joint stage, its settings)
    PLAIN: ("joint_none", {"confidence": "none"}),
    "map from labels": ("joint_labels", {"confidence": "labels"}),
    "map from logits": ("joint_logits", {"confidence": "logits"}),
}
# Ways to make the map matter more, without kernel changes (settings the operator already
# takes), as one family: edge_weight 4 raises the edge term exp(-m) to the 4th power (image
# edges weigh far less), and boundary_weight 1 gives label boundaries weight 0 instead of 0.5.
FAMILIES = {
    "sharper map from labels": {"joint_labels_edge4": {"confidence": "labels", "edge_weight": 4.0},
                                "joint_labels_boundary1": {"confidence": "labels", "boundary_weight": 1.0}},
}
# Half the demo's steps in each stage: the demo's 150/300/150 with five joint stages per seed
# would take about 80 minutes for six seeds on the loaded 2-core development machine.
STEPS = dict(iters_source=75, iters_sem=150, iters_joint=75)
SUBSETS = ("all", "instances", "boundary")


def study_config(cfg: Config, quick: bool = False) -> Config:
    """The demo's settings (its sizes; STEPS), on a benchmark with target_val."""
    if quick:
        cfg = quick_config(cfg)
        return dataclasses.replace(cfg, counts={**cfg.counts, "target_val": 8})
    return dataclasses.replace(cfg, counts=dict(SPLITS), **STEPS)


def stages() -> Dict[str, Dict]:
    """Every joint stage the study trains (rows and candidates), by name, with its settings."""
    out = {stage: settings for stage, settings in ROWS.values()}
    for members in FAMILIES.values():
        out.update(members)
    return out


def study_plan(cfg: Config, seeds: Sequence[int]) -> List[Job]:
    """Stage (a) and (b) of the demo's plan and every joint stage, seed after seed, so that
    seeds finish one by one (the demo's runner starts the first ready job of the list)."""
    shared = [j for j in plan(cfg, seeds) if j.stage in ("source_only", "semantic")]
    jobs = []
    for seed in seeds:
        jobs += [j for j in shared if j.seed == seed]
        jobs += [Job(seed, stage, "joint", cfg.iters_joint, "semantic", settings)
                 for stage, settings in stages().items()]
    return jobs


def boundary_mask(semantic: torch.Tensor, px: int = BOUNDARY_PX) -> torch.Tensor:
    """(N, H, W) bool: pixels within `px` pixels (Chebyshev) of a boundary pixel, one with
    a 4-neighbour of another label (both sides of a boundary are boundary pixels)."""
    edge = torch.zeros_like(semantic, dtype=torch.bool)
    across, down = semantic[:, :, 1:] != semantic[:, :, :-1], semantic[:, 1:, :] != semantic[:, :-1, :]
    edge[:, :, :-1] |= across
    edge[:, :, 1:] |= across
    edge[:, :-1, :] |= down
    edge[:, 1:, :] |= down
    grown = F.max_pool2d(edge[:, None].float(), 2 * px + 1, stride=1, padding=px)
    return grown[:, 0] > 0


def subset_metrics(net: torch.nn.Module, split_dir: str) -> Dict[str, Dict[str, float]]:
    """desc_train.evaluate's metrics (cap 80 m, no median scaling) of `net` on the split,
    on each of SUBSETS."""
    pred, gt, instances = predict_split(net, split_dir)
    ds = DepthDataset(split_dir, scores=False)
    semantic = torch.stack([ds[i]["semantic"] for i in range(len(ds))])
    masks = {"all": None, "instances": instances, "boundary": boundary_mask(semantic)}
    return {name: depth_metrics(pred, gt, mask=mask) for name, mask in masks.items()}


def stage_metrics(cfg: Config, seed: int, stage: str) -> Dict:
    """The metrics of a trained joint stage on target_val and target_test, read from
    `<stage>.metrics.json` when they were computed from this checkpoint before."""
    checkpoint = os.path.join(cfg.out, f"seed{seed}", f"{stage}.pt")
    path = checkpoint[:-3] + ".metrics.json"
    stamp = os.stat(checkpoint).st_mtime_ns
    if os.path.exists(path):
        with open(path) as f:
            kept = json.load(f)
        if kept.get("checkpoint_mtime_ns") == stamp:
            return kept["metrics"]
    net = load_g_rgb(checkpoint)
    metrics = {split: subset_metrics(net, os.path.join(cfg.data, split)) for split in ("target_val", "target_test")}
    atomic_write(path, lambda f: json.dump(dict(checkpoint_mtime_ns=stamp, metrics=metrics), f, indent=1))
    return metrics


def choose(per_stage: Dict[str, Dict[int, Dict]], seeds: Sequence[int]) -> Dict[str, str]:
    """Per family, the member with the lowest mean AbsRel on target_val (all pixels)."""
    def val(stage):
        return statistics.mean(per_stage[stage][s]["target_val"]["all"]["abs_rel"] for s in seeds)
    return {family: min(members, key=val) for family, members in FAMILIES.items()}


def ratios(per_stage, stage: str, seeds, split: str = "target_test") -> Dict[str, List[float]]:
    """Per subset, the per-seed AbsRel of `stage` over the plain mean's."""
    plain = ROWS[PLAIN][0]
    return {sub: [per_stage[stage][s][split][sub]["abs_rel"] / per_stage[plain][s][split][sub]["abs_rel"]
                  for s in seeds] for sub in SUBSETS}


def verdict(r: Sequence[float]) -> bool:
    """Whether per-seed ratios to the plain mean show a gain of MIN_GAIN beyond their spread."""
    spread = statistics.pstdev(r) if len(r) > 1 else 0.0
    return statistics.mean(r) + spread <= 1 - MIN_GAIN


def run_study(cfg: Config, seeds: Sequence[int], workers: Optional[int] = None, log=print) -> Dict:
    """Trains, evaluates and writes `<out>/results.json` and `<out>/results.md`; returns the record."""
    t0 = time.time()
    ensure_data(cfg, log, logits=True)
    target = os.path.join(cfg.data, cfg.target_split)
    if not os.path.isdir(os.path.join(target, "logits")):
        raise DataError(f"{target}: no logits/ for the map from logits: delete the benchmark folder {cfg.data} "
                        f"to have it generated with them, or set --data to another folder")
    jobs = study_plan(cfg, seeds)
    workers = default_workers(len(jobs)) if workers is None else workers
    log(f"{len(jobs)} stages for seeds {list(seeds)} on {workers} worker(s), data {cfg.data}, out {cfg.out}")
    per_stage: Dict[str, Dict[int, Dict]] = {stage: {} for stage in stages()}

    def report(result):
        job = result["job"]
        how = f"{result['trained']} steps in {result['seconds']:.0f} s" if result["trained"] else "done already"
        if job.kind == "joint":  # evaluated here, in the main process, while the workers train on
            per_stage[job.stage][job.seed] = stage_metrics(cfg, job.seed, job.stage)
            how += "; target_test AbsRel " + ", ".join(
                f"{sub} {per_stage[job.stage][job.seed]['target_test'][sub]['abs_rel']:.4f}" for sub in SUBSETS)
        return f"seed {job.seed} {job.stage}: {how}"

    _run_all(cfg, jobs, workers, report)
    chosen = choose(per_stage, seeds)
    rows = {**{row: stage for row, (stage, _) in ROWS.items()},
            **{f"{family}: {stage}": stage for family, stage in chosen.items()}}
    record = dict(config=dataclasses.asdict(cfg), seeds=list(seeds), workers=workers,
                  stages={stage: settings for stage, settings in stages().items()}, chosen_on_target_val=chosen,
                  per_stage={stage: {str(s): m for s, m in per.items()} for stage, per in per_stage.items()},
                  ratios_to_plain_mean={row: ratios(per_stage, stage, seeds) for row, stage in rows.items()},
                  verdict={row: {sub: verdict(r) for sub, r in ratios(per_stage, stage, seeds).items()}
                           for row, stage in rows.items() if stage != ROWS[PLAIN][0]},
                  wall_time_s=round(time.time() - t0, 1))
    os.makedirs(cfg.out, exist_ok=True)
    atomic_write(os.path.join(cfg.out, "results.json"), lambda f: json.dump(record, f, indent=1))
    table = markdown(record, per_stage, rows, seeds)
    atomic_write(os.path.join(cfg.out, "results.md"), lambda f: f.write(table + "\n"))
    log(table)
    log(f"wall time {record['wall_time_s']} s; results in {cfg.out}")
    return record


def markdown(record: Dict, per_stage, rows: Dict[str, str], seeds) -> str:
    lines = [f"target_test AbsRel (cap 80 m, no median scaling) per seed, and its ratio to the plain mean; "
             f"pixels: all, instances, within {BOUNDARY_PX} px of a label boundary. Candidates chosen on "
             f"target_val: {record['chosen_on_target_val']}", "",
             "| row | pixels | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ratio ± std | gain ≥ 5% |",
             "| --- | --- |" + " ---: |" * (len(seeds) + 2)]
    for row, stage in rows.items():
        for sub in SUBSETS:
            r = record["ratios_to_plain_mean"][row][sub]
            cells = [f"{per_stage[stage][s]['target_test'][sub]['abs_rel']:.4f} ({q:.3f})" for s, q in zip(seeds, r)]
            win = "-" if stage == ROWS[PLAIN][0] else ("yes" if record["verdict"][row][sub] else "no")
            lines.append(f"| {row} | {sub} | " + " | ".join(cells) +
                         f" | {statistics.mean(r):.3f} ± {statistics.pstdev(r):.3f} | {win} |")
    lines += ["", "target_val AbsRel (all pixels), mean over seeds, of every joint stage: " + ", ".join(
        f"{stage} {statistics.mean(per_stage[stage][s]['target_val']['all']['abs_rel'] for s in seeds):.4f}"
        for stage in per_stage)]
    return "\n".join(lines)
