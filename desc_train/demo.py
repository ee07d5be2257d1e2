"""The one-command demonstration: generate the benchmark, train source-only and
DESC (with ablations) on it, evaluate each on the target test split, and write
the table (JSON, Markdown) and pictures.

Per seed the work is a small graph of stages: (a) source-only G_rgb; from it the
source-only row (stage a trained on for as many steps as the joint stage) and
(b) G_sem + G_h; from (b) the four joint rows. The translation row has a stage
(a) of its own, which also trains the style translator S2T, and its joint stage
starts from that and (b). Independent stages run in parallel worker processes,
one or more torch threads each: the networks of the demo are too small for
torch's threads to keep the cores busy.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import statistics
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from tqdm import tqdm

from .config import Config
from .data import DepthDataset, generate_benchmark
from .data.generate import STEREO_SPLIT
from .data.generator import VERSION as GENERATOR_VERSION
from .data.layout import DataError, has_right_views, read_meta
from .data.sheet import colorize_depth
from .evaluate import CAP, METRICS, depth_metrics, predict_split
from .train import Trainer, load_g_rgb

VARIANTS = {  # row name -> (stage name, the settings of its ablation)
    "DESC": ("joint", {}),
    "consistency only": ("joint_consistency", {"instance_weight": 0.0}),
    "instance prior only": ("joint_instance", {"consistency_weight": 0.0}),
    # DESC + stereo: also the photometric error of target_train's stereo pairs (the benchmark
    # renders each target frame's right view too), at every output scale; the weight chosen on
    # seeds 0-3 from 50 (the official number) and 200 (docs/training.md).
    "DESC + stereo": ("joint_stereo", {"stereo_weight": 200.0}),
}
# DESC with the official stage 1's style translation (desc_train.translation): its own stage a,
# S2T trained with G_rgb, then frozen in its joint stage, which also takes stage b's G_sem and G_h.
TRANSLATION_ROW = "DESC + translation"
TRANSLATION = {"translation": True}
ROWS = ["source-only", *VARIANTS, TRANSLATION_ROW]


@dataclasses.dataclass(frozen=True)
class Job:
    """One stage of one seed: trains `steps` of `kind` into `<out>/seed<seed>/<stage>.pt`
    with the config's `settings` replaced, starting from the checkpoint of stage
    `after` (or of several: the first, then the networks each later one trained;
    ``Trainer.start_from``), and evaluates it when it is a `row`."""

    seed: int
    stage: str
    kind: str
    steps: int
    after: Union[None, str, Tuple[str, ...]] = None
    settings: Dict[str, Any] = dataclasses.field(default_factory=dict)
    row: Optional[str] = None

    @property
    def starts(self) -> Tuple[str, ...]:
        """The stages it starts from."""
        return () if self.after is None else (self.after,) if isinstance(self.after, str) else self.after


def plan(cfg: Config, seeds: Sequence[int]) -> List[Job]:
    """Every job of the demo, in the order to start them when several are ready:
    the stages that unlock others first."""
    jobs = [Job(s, "source_only", "source_only", cfg.iters_source) for s in seeds]
    jobs += [Job(s, "semantic", "semantic", cfg.iters_sem, after="source_only") for s in seeds]
    jobs += [Job(s, "source_only_translation", "source_only", cfg.iters_source, settings=TRANSLATION) for s in seeds]
    jobs += [Job(s, stage, "joint", cfg.iters_joint, "semantic", settings, row)
             for s in seeds for row, (stage, settings) in VARIANTS.items()]
    jobs += [Job(s, "joint_translation", "joint", cfg.iters_joint, ("source_only_translation", "semantic"),
                 TRANSLATION, TRANSLATION_ROW) for s in seeds]
    # The baseline gets as many G_rgb steps as the joint rows (stage a + stage c), so
    # that the rows differ by the DESC terms, not by training time.
    jobs += [Job(s, "source_only_long", "source_only", cfg.iters_joint, after="source_only", row="source-only")
             for s in seeds]
    return jobs


def quick_config(cfg: Config) -> Config:
    return dataclasses.replace(cfg, size=(32, 96), counts={"source_train": 24, "target_train": 24, "target_test": 8},
                               width=4, translation_width=4, batch_size=4, iters_source=6, iters_sem=6, iters_joint=6,
                               log_every=2, checkpoint_every=3)


def ensure_data(cfg: Config, log=print, logits: bool = False) -> None:
    """Generates the splits of `cfg.counts` that are missing under `cfg.data`, target_train
    with its stereo pairs (with `logits`, the target's with the segmenter's logits too); a
    split that exists must match the configured frame size and count. A target_train made
    before the pairs is made again (its left views come out the same: the generator draws
    the right view after them)."""
    missing = {}
    for split, count in cfg.counts.items():
        split_dir = os.path.join(cfg.data, split)
        if not os.path.exists(os.path.join(split_dir, "meta.json")):
            missing[split] = count
            continue
        meta = read_meta(split_dir)
        if tuple(meta.image_size) != tuple(cfg.size) or len(meta.frames) != count:
            raise DataError(f"{split_dir} holds {len(meta.frames)} frames of "
                             f"{meta.image_size[0]}x{meta.image_size[1]}, the config asks for {count} of "
                             f"{cfg.size[0]}x{cfg.size[1]}: delete the folder or set data= to another one")
        made = (meta.dataset or {}).get("version")
        if made != GENERATOR_VERSION:
            raise DataError(f"{split_dir} was made by {'version ' + str(made) if made else 'an earlier version'} "
                            f"of the generator, this one makes version {GENERATOR_VERSION} (other pictures): "
                            "delete it and the runs trained on it, or set data= and out= to other folders")
        if split == STEREO_SPLIT and not (has_right_views(split_dir) and meta.baseline):
            missing[split] = count
    if missing:
        generate_benchmark(cfg.data, missing, seed=1234, size=cfg.size, stereo=True, logits=logits, log=log)


def evaluate(net: torch.nn.Module, split_dir: str) -> Dict[str, float]:
    """The metrics of desc_train.evaluate for `net` on every frame of the split: caps
    80 m and 1-50 m without median scaling, 80 m with it, and 80 m on instance pixels only."""
    pred, gt, instances = predict_split(net, split_dir)
    out = dict(depth_metrics(pred, gt, cap=CAP))
    out.update({f"{k}@1-50m": v for k, v in depth_metrics(pred, gt, cap=(1.0, 50.0)).items()})
    out.update({f"{k}@median": v for k, v in depth_metrics(pred, gt, median_scaling=True).items()})
    # Where the instance prior acts: the pixels of segmented instances (cars, people).
    out.update({f"{k}@instances": v for k, v in depth_metrics(pred, gt, mask=instances).items()})
    return out


@torch.no_grad()
def pictures(path: str, split_dir: str, nets: Dict[str, torch.nn.Module], count: int = 4, zoom: int = 2) -> None:
    """Rows of RGB | ground truth | one prediction per net, colour-mapped alike, with a title bar."""
    ds = DepthDataset(split_dir)
    rows = []
    for i in range(min(count, len(ds))):
        it = ds[i]
        tiles = [(it["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8), colorize_depth(it["depth"][0].numpy())]
        tiles += [colorize_depth(net(it["image"][None])[0][0, 0].cpu().numpy()) for net in nets.values()]
        tiles = [np.pad(cv2.resize(t, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST),
                        ((1, 1), (1, 1), (0, 0)), constant_values=255) for t in tiles]
        rows.append(np.concatenate(tiles, axis=1))
    tile_w = rows[0].shape[1] // (2 + len(nets))
    bar = np.full((18, rows[0].shape[1], 3), 255, np.uint8)
    for j, title in enumerate(["RGB", "ground truth", *nets]):
        cv2.putText(bar, title, (j * tile_w + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(np.concatenate([bar, *rows], axis=0), cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not be written")


# ------------------------------------------------------------ running the jobs
_WORKER: Dict = {}  # set in each worker process by _init_worker


def _init_worker(threads: int, steps) -> None:
    torch.set_num_threads(threads)
    _WORKER["steps"] = steps


def run_job(cfg: Config, job: Job, log=None, on_step=None) -> Dict:
    """Trains (or finds done) one job and evaluates it if it is a table row.
    In a worker process, every step is reported on the queue of _init_worker."""
    t0 = time.time()
    if on_step is None and "steps" in _WORKER:
        queue = _WORKER["steps"]
        on_step = lambda stage, step, loss: queue.put((job.seed, stage, loss))  # noqa: E731
    trainer = Trainer(dataclasses.replace(cfg, seed=job.seed, **job.settings),
                      os.path.join(cfg.out, f"seed{job.seed}"), log=log or (lambda *_: None), on_step=on_step)
    start = [trainer.checkpoint_path(stage) for stage in job.starts] or None
    trained = trainer.run_stage(job.stage, job.steps, start_from=start, kind=job.kind)
    metrics = evaluate(trainer.depth_model(), os.path.join(cfg.data, "target_test")) if job.row else None
    return dict(job=job, trained=trained, seconds=time.time() - t0, metrics=metrics)


def _run_all(cfg: Config, jobs: List[Job], workers: int, report: Callable[[Dict], str]) -> None:
    """Runs `jobs` as their dependencies allow, at most `workers` at a time, with
    one progress bar (steps, speed, the latest loss) over all of them; the line
    `report` makes of each finished job is printed above the bar."""
    done = set()
    pending = list(jobs)
    bar = tqdm(total=sum(j.steps for j in jobs), desc="demo", unit="step", dynamic_ncols=True)

    def step(seed, stage, loss):
        bar.update(1)
        bar.set_postfix_str(f"seed {seed} {stage} loss {loss:.3f}", refresh=False)

    def finish(result):
        job = result["job"]
        done.add((job.seed, job.stage))
        if job.steps > result["trained"]:  # steps of an earlier run: not work of this one
            bar.total -= job.steps - result["trained"]
            bar.refresh()
        bar.write(report(result))

    def ready():
        return [j for j in pending if all((j.seed, stage) in done for stage in j.starts)]

    if workers <= 1:
        while pending:
            job = ready()[0]
            pending.remove(job)
            finish(run_job(cfg, job, log=bar.write, on_step=lambda stage, n, loss: step(job.seed, stage, loss)))
        bar.close()
        return
    threads = max(1, torch.get_num_threads() // workers)
    ctx = mp.get_context("spawn")  # fork after torch's thread pools have started is unsafe
    steps = ctx.Queue()
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads, steps)) as pool:
        running = {}
        while pending or running:
            for job in ready()[: workers - len(running)]:
                pending.remove(job)
                running[pool.submit(run_job, cfg, job)] = job
            finished, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            while not steps.empty():
                step(*steps.get())
            for future in finished:
                running.pop(future)
                finish(future.result())  # a failed stage stops the demo with its error
    bar.close()


def default_workers(n_jobs: int) -> int:
    return max(1, min(torch.get_num_threads(), n_jobs))


def run_demo(cfg: Config, seeds: Sequence[int] = (0, 1, 2), workers: Optional[int] = None, log=print) -> Dict:
    """Runs the whole demonstration and returns its record (also written to
    `<out>/results.json` and `<out>/results.md`, pictures to `<out>/pictures_seed<s>.png`)."""
    t0 = time.time()
    ensure_data(cfg, log)
    jobs = plan(cfg, seeds)
    workers = default_workers(len(jobs)) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    per_seed: Dict[str, Dict[int, Dict[str, float]]] = {row: {} for row in ROWS}
    log(f"{len(jobs)} stages for seeds {list(seeds)} on {workers} worker(s)")

    def report(result):
        job = result["job"]
        what = f"seed {job.seed} {job.stage}" + (f" ({job.row})" if job.row and job.row != "DESC" else "")
        how = f"{result['trained']} steps in {result['seconds']:.0f} s" if result["trained"] else "done already"
        if job.row:
            per_seed[job.row][job.seed] = result["metrics"]
            how += f"; target AbsRel {result['metrics']['abs_rel']:.4f}"
        return f"{what}: {how}"

    _run_all(cfg, jobs, workers, report)
    test_split = os.path.join(cfg.data, "target_test")
    for seed in seeds:
        run_dir = os.path.join(cfg.out, f"seed{seed}")
        nets = {"source-only": load_g_rgb(os.path.join(run_dir, "source_only_long.pt")),
                "DESC": load_g_rgb(os.path.join(run_dir, "joint.pt"))}
        pictures(os.path.join(cfg.out, f"pictures_seed{seed}.png"), test_split, nets)
    results = {row: [per_seed[row][s] for s in seeds] for row in ROWS}
    summary = {row: {k: (statistics.mean(r[k] for r in runs), statistics.pstdev(r[k] for r in runs))
                     for k in runs[0]} for row, runs in results.items()}
    ratio = [d["abs_rel"] / s["abs_rel"] for d, s in zip(results["DESC"], results["source-only"])]
    record = dict(config=dataclasses.asdict(cfg), seeds=list(seeds), workers=workers, per_seed=results,
                  summary=summary, desc_over_source_only_abs_rel=ratio, wall_time_s=round(time.time() - t0, 1))
    os.makedirs(cfg.out, exist_ok=True)
    with open(os.path.join(cfg.out, "results.json"), "w") as f:
        json.dump(record, f, indent=1)
    table = markdown_table(summary, len(seeds)) + "\n\nDESC / source-only AbsRel per seed: " + \
        ", ".join(f"{r:.2f}" for r in ratio)
    with open(os.path.join(cfg.out, "results.md"), "w") as f:
        f.write(table + "\n")
    log(table)
    note = smoke_test_note(cfg)
    if note:
        log(note)
    log(f"wall time {record['wall_time_s']} s; results in {cfg.out}")
    return record


def smoke_test_note(cfg: Config) -> Optional[str]:
    """One line for a run with fewer steps in some stage than the full demo (`desc-train
    demo --quick` trains 6 per stage): its table shows the pipeline runs, not what DESC
    does, so that nobody reads DESC against source-only there as a result. None otherwise."""
    stages = ("iters_source", "iters_sem", "iters_joint")
    steps, full = [getattr(cfg, k) for k in stages], [getattr(Config(), k) for k in stages]
    if all(s >= f for s, f in zip(steps, full)):
        return None
    return (f"note: {'/'.join(map(str, steps))} steps per stage (the full demo: {'/'.join(map(str, full))}): "
            "a smoke test of the pipeline, not a result; the rows cannot be compared at this length.")


def markdown_table(summary: Dict, n_seeds: int) -> str:
    cols = [*METRICS, "abs_rel@instances"]
    lines = [f"Target test split, mean ± std over {n_seeds} seed(s), depth cap {CAP[1]:g} m, no median scaling "
             "(abs_rel@instances: on the pixels of segmented instances only)",
             "", "| method | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for row, metrics in summary.items():
        lines.append(f"| {row} | " + " | ".join(f"{metrics[c][0]:.4f} ± {metrics[c][1]:.4f}" for c in cols) + " |")
    return "\n".join(lines)
