"""The DESC training stages on top of desc_ops.

(a) ``source_only``: G_rgb on source labels, plus edge-aware smoothness on target
    predictions;
(b) ``semantic``: G_sem (one-hot semantics + edges -> depth) and G_h (instance
    features -> metric height, labelled by instance_heights of the source ground
    truth) on the source;
(c) ``joint``: source supervision of G_rgb and G_sem, and on the target
    ``desc_ops.DESCLoss``: consistency between G_rgb and G_sem (at each output
    scale), weighted per pixel as ``confidence`` says (none: the plain mean;
    labels or logits: desc_ops' confidence map of the target's labels or of its
    segmenter's scores), the instance prior from G_h's heights,
    smoothness. A DESC term with weight 0 in the config is switched off.

The target-domain terms of (a) and (c) are one ``DESCLoss`` built from the
config (``target_objective``), the object desc_ops' tests check. Every stage
checkpoints atomically and resumes where it stopped; a non-finite loss stops
the run with the name of the term. A checkpoint records what made it (its stage,
the settings that shape it, the splits it read): one made otherwise is not
resumed or reused unless ``reuse_stages`` says so.

Under torchrun every stage trains the three networks in DistributedDataParallel
(``distributed.py``): each rank reads its DistributedSampler shard of both
domains, every mean is over the global batch, and rank 0 alone writes
checkpoints, logs, TensorBoard, results and the progress bar.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DistributedSampler, default_collate
from tqdm import tqdm

import desc_ops
from desc_ops.reference import _sobel_magnitude

from . import distributed
from .config import Config, as_dict
from .data import DepthDataset
from .data.layout import CERTAINTY, DataError, atomic_write, meta_path
from .errors import UserError
from .models import MAX_DEPTH, SCALES, DepthUNet, HeightNet, instance_features, semantic_input


def domain_classes(source: DepthDataset, target: DepthDataset):
    """The class names both splits label with (G_sem and G_h read one id space),
    after checking the splits can train: depth on the source, labels on both,
    frames whose sides are multiples of 16."""
    src, tgt = source.meta, target.meta
    if not src.has_depth:
        raise DataError(f"{source.split_dir}: the source split has no depth (meta.json has_depth false)")
    for ds in (source, target):
        H, W = ds.meta.image_size
        if H % 16 or W % 16:
            raise DataError(f"{ds.split_dir}: frames of {H}x{W}; the networks take multiples of 16: prepare the "
                            f"split with --size HxW (e.g. 192x640)")
        if not ds.meta.has_labels:
            raise DataError(f"{ds.split_dir}: no semantic and instance maps yet; add them with "
                            f"desc-train prepare segment or prepare panoptic (or --labels gt where the dataset has labels)")
    if list(src.classes) != list(tgt.classes):
        raise DataError(f"{source.split_dir} and {target.split_dir} label different classes "
                        f"({len(src.classes)} vs {len(tgt.classes)}): prepare both with the same label source")
    return list(src.classes)


def scores_needed(cfg: Config, target: DepthDataset) -> bool:
    """Whether the target's segmenter scores are read: with confidence=logits the confidence
    map reads them, and the split must have them (DataError naming it); otherwise they are not read."""
    if cfg.confidence != "logits":
        return False
    if not any(os.path.isdir(os.path.join(target.split_dir, folder)) for folder in ("logits", CERTAINTY)):
        raise DataError(f"{target.split_dir}: confidence=logits reads the segmenter's scores, and the target split "
                        f"has none (no logits/ or {CERTAINTY}/): write them with desc-train generate --logits or "
                        f"prepare segment --logits, or set confidence=labels or none")
    return True


def edge_map(image: Tensor) -> Tensor:
    """G_sem's edge channel: Sobel magnitude of the luminance, squashed to [0, 1)."""
    y = 0.299 * image[:, 0:1] + 0.587 * image[:, 1:2] + 0.114 * image[:, 2:3]
    return torch.tanh(2.0 * _sobel_magnitude(y))


def tensorboard_writer(log_dir: str):
    """A TensorBoard SummaryWriter when tensorboard is installed, else None
    (log.jsonl holds the same scalars)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir)


def supervised_loss(preds, depth: Tensor, weight: float) -> Tensor:
    """Sum over scales of weight * mean |pred - gt| on pixels with ground truth
    (predictions upsampled to full resolution); the mean is over the pixels of
    every rank (``distributed.global_mean``)."""
    valid = depth > 0
    divisor = distributed.mean_divisor(valid.sum()).to(depth.dtype)
    total = depth.new_zeros(())
    for p in preds:
        p = F.interpolate(p, size=depth.shape[-2:], mode="bilinear", align_corners=False)
        total = total + weight * ((p - depth).abs()[valid].sum() / divisor)
    return total


def sampled_frames(n: int, batch_size: int, seed: int, step: int, rank: int = 0,
                   world: int = 1) -> List[Tuple[int, int]]:
    """(epoch, index) of the `batch_size` frames of a rank's batch at `step` from
    a split of `n` frames: positions ``step * batch_size`` onwards of the rank's
    stream, its DistributedSampler shard of each epoch's permutation (seeded by
    `seed`, reshuffled every epoch) in turn. A function of its arguments alone,
    so that a resumed run sees the batches of an uninterrupted one. Where
    `world` divides `n`, the ranks' batches of a step are together the batch of
    one process with ``world * batch_size`` frames."""
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    per_epoch = len(sampler)
    frames: List[Tuple[int, int]] = []
    position = step * batch_size
    while len(frames) < batch_size:
        epoch, offset = divmod(position, per_epoch)
        sampler.set_epoch(epoch)
        take = list(sampler)[offset:offset + batch_size - len(frames)]
        frames += [(epoch, i) for i in take]
        position += len(take)
    return frames


def target_objective(cfg: Config, kind: str) -> desc_ops.DESCLoss:
    """The target-domain terms of a stage kind: in ``joint``, DESC's, with the
    consistency at the ``consistency_scales`` finest output scales; in
    ``source_only``, the smoothness alone; at every output scale ``i`` the
    smoothness weight is ``smoothness_weight / 2**i``, as the official code."""
    joint = kind == "joint"
    return desc_ops.DESCLoss(
        consistency_weight=[cfg.consistency_weight] * cfg.consistency_scales if joint else 0.0,
        instance_weight=cfg.instance_weight if joint else 0.0,
        smoothness_weight=[cfg.smoothness_weight / 2 ** i for i in range(SCALES)],
        confidence=cfg.confidence != "none", edge_weight=cfg.edge_weight, boundary_weight=cfg.boundary_weight,
        max_depth=MAX_DEPTH,
        validate=False)  # relabel_instances made the ids: valid, and no host read per step on CUDA


@contextlib.contextmanager
def frozen_running_stats(net: torch.nn.Module, enabled: bool = True):
    """BatchNorm layers of `net` normalise with the batch as usual but leave
    their running statistics alone (momentum 0) inside the block: G_rgb's
    source batches then do not enter the statistics it uses on the target at
    test time (as the official code does)."""
    layers = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)] if enabled else []
    saved = [m.momentum for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(layers, saved):
            m.momentum = momentum


# What shapes a stage, recorded in its checkpoint and compared on resume: the settings of every
# stage (the networks, the batches, the optimiser) and those of each kind's losses. Logging and
# checkpoint intervals, the device, the paths (the data is recorded by content) shape nothing.
SHARED_SETTINGS = ("seed", "width", "batch_size", "lr", "betas", "supervised_weight", "sync_bn")
KIND_SETTINGS = {
    "source_only": ("smoothness_weight", "target_bn_stats"),
    "semantic": ("max_instances", "min_instance_rows"),
    "joint": ("consistency_weight", "consistency_scales", "instance_weight", "smoothness_weight", "confidence",
              "edge_weight", "boundary_weight", "target_bn_stats", "max_instances", "min_instance_rows"),
}
REUSE = "set reuse_stages=true to reuse it anyway, or move it away (or set another out=) to train the stage again"


def split_fingerprint(ds: DepthDataset) -> Dict:
    """What a stage read of a split: its folder (for the messages), its frame count
    and the sha256 of its meta.json, which lists every frame and how it was made."""
    with open(meta_path(ds.split_dir), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return dict(folder=os.path.abspath(ds.split_dir), frames=len(ds), meta_sha256=digest)


def _shown(value) -> str:
    return json.dumps(value)  # as a TOML file or --set writes it: true, 0.001, [0.95, 0.999]


def _described(split: Dict) -> str:
    digest = str(split.get("meta_sha256"))[:12]
    return f"{split.get('folder')} ({split.get('frames')} frames, meta.json sha256 {digest})"


# A joint checkpoint from before confidence= took none/labels/logits recorded it as true or false,
# and no edge_weight or boundary_weight: it was made with DESCLoss's defaults of these.
LEGACY_SETTINGS = {"edge_weight": 1.0, "boundary_weight": 0.5}


def legacy_settings(settings: Dict) -> Dict:
    """A checkpoint's recorded settings as this version names them (LEGACY_SETTINGS)."""
    from .config import CONFIDENCE_ALIASES

    if not isinstance(settings.get("confidence"), bool):
        return settings
    return {**LEGACY_SETTINGS, **settings, "confidence": CONFIDENCE_ALIASES[settings["confidence"]]}


def provenance_difference(made: Dict, now: Dict) -> Optional[str]:
    """The first difference between what made a checkpoint and this run, as the
    clause of a message; None when the two agree. The splits compare by content:
    the same files in another folder are the same data. A checkpoint made before
    confidence= took a name reads as it meant (LEGACY_SETTINGS)."""
    if made.get("kind") != now["kind"]:
        return f"it was trained as a {made.get('kind')} stage, this run trains {now['kind']}"
    old, new = legacy_settings(made.get("settings", {})), now["settings"]
    for key in sorted(set(old) | set(new)):
        if key not in old:
            return f"it records no {key}, this run has {key}={_shown(new[key])}"
        if old[key] != new.get(key):
            return f"it was made with {key}={_shown(old[key])}, this run has {key}={_shown(new.get(key))}"
    for domain, split in now["data"].items():
        then = made.get("data", {}).get(domain, {})
        if (then.get("frames"), then.get("meta_sha256")) != (split["frames"], split["meta_sha256"]):
            return f"it was made from the {domain} split {_described(then)}, this run reads {_described(split)}"
    return None


class Trainer:
    def __init__(self, cfg: Config, run_dir: str, log=print,
                 on_step: Optional[Callable[[str, int, float], None]] = None):
        """`on_step(stage, step, loss)`, when given, is called after every step in
        place of the trainer's own progress bar (the demo shows one bar for all
        its worker processes)."""
        self.cfg = cfg
        self.run_dir = run_dir
        self.main = distributed.is_main()
        self.log = log if self.main else (lambda *_: None)
        self.on_step = on_step
        os.makedirs(run_dir, exist_ok=True)
        self.device = distributed.device(cfg.device)
        self.source = DepthDataset(os.path.join(cfg.data, cfg.source_split), seed=cfg.seed)
        self.target = DepthDataset(os.path.join(cfg.data, cfg.target_split), seed=cfg.seed + 1)
        self.data = {"source": split_fingerprint(self.source), "target": split_fingerprint(self.target)}
        self._made: Dict[str, Dict] = {}  # stage -> the provenance its checkpoints record (run_stage)
        self.classes = domain_classes(self.source, self.target)
        self.source.scores, self.target.scores = False, scores_needed(cfg, self.target)
        self.num_classes = len(self.classes)
        # Enough instance slots for the most crowded frame of either split.
        self.K = max([cfg.max_instances] + [ds.meta.max_instances or 0 for ds in (self.source, self.target)])
        for ds in (self.source, self.target):
            ds.max_instances = self.K
        # Depth beyond what G_rgb can output is supervised at its maximum (sky included), as the
        # official code: a converted split states the depth it clamped to.
        self.max_source_depth = min(MAX_DEPTH, self.source.meta.max_depth or float("inf"))
        torch.manual_seed(cfg.seed)
        nets = [DepthUNet(3, cfg.width), DepthUNet(self.num_classes + 1, cfg.width), HeightNet(self.num_classes + 7)]
        if cfg.sync_bn:
            nets = [distributed.sync_batchnorm(net, self.device) for net in nets]
        self.g_rgb, self.g_sem, self.g_h = (net.to(self.device) for net in nets)
        params = list(self.g_rgb.parameters()) + list(self.g_sem.parameters()) + list(self.g_h.parameters())
        self.opt = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)
        # The forward passes go through these: under torchrun, DistributedDataParallel wrappers
        # (whose backward averages the gradients over the ranks); else the networks themselves.
        self._rgb, self._sem, self._h = (distributed.data_parallel(net, self.device)
                                         for net in (self.g_rgb, self.g_sem, self.g_h))
        self.objectives = {kind: distributed.global_objective(target_objective(cfg, kind))
                           for kind in ("source_only", "joint")}

    # ------------------------------------------------------------ data
    def frames(self, ds: DepthDataset, salt: int, step: int, rank: Optional[int] = None,
               world: Optional[int] = None) -> List[Tuple[int, int]]:
        """(epoch, index) of the frames of `ds` in this rank's batch of a step
        (``sampled_frames``; `salt` tells the domains apart); `rank` and `world`
        default to this process's."""
        rank = distributed.rank() if rank is None else rank
        world = distributed.world_size() if world is None else world
        # DistributedSampler seeds epoch e with seed + e: the domains' seeds lie 1,000,003 apart, so
        # they share no permutation for a million epochs.
        seed = (self.cfg.seed * 7919 + salt) * 1_000_003
        return sampled_frames(len(ds), self.cfg.batch_size, seed, step, rank, world)

    def batch(self, ds: DepthDataset, salt: int, step: int) -> Dict[str, Tensor]:
        """This rank's batch of `ds` at a step, each frame augmented as in its epoch."""
        items = []
        for epoch, index in self.frames(ds, salt, step):
            ds.set_epoch(epoch)
            items.append(ds[index])
        return self._to(default_collate(items))

    def _to(self, batch):
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    # ------------------------------------------------------------ terms
    def _source_height_labels(self, src):
        """The metric height of every instance slot of a source batch from its
        ground-truth depth (G_h's labels), and which slots have one."""
        st = desc_ops.instance_stats(src["instance_ids"], self.K, src["depth"])
        h = desc_ops.instance_heights(st, src["focal"])
        ok = torch.isfinite(h) & (st.pixel_height >= self.cfg.min_instance_rows) & (src["instance_class"] >= 0)
        # An instance at the far plane (clamped depth) has no measurable height, as the official code skips it.
        ok &= st.depth_median < self.max_source_depth
        return st, h, ok

    def _predict_heights(self, b, st) -> Tensor:
        H, W = b["semantic"].shape[-2:]
        return self._h(instance_features(st, b["instance_class"], self.num_classes, H, W))

    def _depth(self, src) -> Tensor:
        return src["depth"].clamp(max=self.max_source_depth)

    def _sem_input(self, b):
        return semantic_input(b["semantic"], self.num_classes, edge_map(b["image"]))

    def terms(self, stage: str, src, tgt) -> Dict[str, Tensor]:
        """The weighted loss terms of one step of a stage kind, by name: the loss is their sum."""
        cfg = self.cfg
        t: Dict[str, Tensor] = {}
        if stage in ("source_only", "joint"):
            with frozen_running_stats(self.g_rgb, cfg.target_bn_stats):
                preds_s = self._rgb(src["image"])
            t["supervised_rgb"] = supervised_loss(preds_s, self._depth(src), cfg.supervised_weight)
        if stage in ("semantic", "joint"):
            t["supervised_sem"] = supervised_loss(self._sem(self._sem_input(src)), self._depth(src),
                                                  cfg.supervised_weight)
            st, h, ok = self._source_height_labels(src)
            pred = self._predict_heights(src, st)
            # Over the labelled slots of every rank; with none, 0 and G_h still in the graph (DDP).
            t["height"] = distributed.global_mean((pred - h)[ok].abs().sum(), ok.sum())
        if stage in ("source_only", "joint"):
            t.update(self._target_terms(stage, tgt))
        return t

    def _target_terms(self, stage: str, tgt) -> Dict[str, Tensor]:
        """The weighted terms of the stage's target objective (``target_objective``),
        running G_sem and G_h only for the terms that are on."""
        cfg = self.cfg
        inputs = {}
        if stage == "joint" and cfg.consistency_weight:
            inputs.update(depth_sem=self._sem(self._sem_input(tgt)),
                          semantic=tgt["logits"] if cfg.confidence == "logits" else tgt["semantic"])
        if stage == "joint" and cfg.instance_weight:
            st = desc_ops.instance_stats(tgt["instance_ids"], self.K)
            heights = self._predict_heights(tgt, st)
            # No prior from instances too short for G_h to have learnt their height.
            heights = heights.masked_fill(st.pixel_height < cfg.min_instance_rows, float("nan"))
            inputs.update(instance_ids=tgt["instance_ids"], heights=heights, focal=tgt["focal"])
        return self.objectives[stage](self._rgb(tgt["image"]), image=tgt["image"], **inputs).weighted

    # ------------------------------------------------------------ loop
    def checkpoint_path(self, stage: str) -> str:
        return os.path.join(self.run_dir, f"{stage}.pt")

    def provenance(self, stage: str, kind: Optional[str]) -> Dict:
        """What makes stage `stage` of kind `kind` in this run: the record its
        checkpoints keep (plain JSON values: a tuple reads back as a list)."""
        names = SHARED_SETTINGS + KIND_SETTINGS.get(kind, ())
        settings = {name: getattr(self.cfg, name) for name in names}
        settings["amp"] = self.cfg.amp and self.device.type == "cuda"  # autocast runs on CUDA only
        settings["processes"] = distributed.world_size()  # the global batch is batch_size times this
        return json.loads(json.dumps(dict(stage=stage, kind=kind, settings=settings, data=self.data)))

    def save(self, stage: str, step: int, done: bool) -> None:
        """Rank 0 writes the checkpoint of `stage` at `step`; every rank waits for it."""
        if self.main:
            path = self.checkpoint_path(stage)
            made = self._made.get(stage) or self.provenance(stage, None)
            state = dict(stage=stage, step=step, done=done, g_rgb=self.g_rgb.state_dict(),
                         g_sem=self.g_sem.state_dict(), g_h=self.g_h.state_dict(), opt=self.opt.state_dict(),
                         rng=torch.get_rng_state(), config=as_dict(self.cfg), made=made)
            # Atomic: a failed or killed write leaves the previous checkpoint (a full disk: one line).
            atomic_write(path, lambda f: torch.save(state, f), binary=True, sync=True)
        distributed.barrier()  # the next stage, on any rank, starts from this file

    def check_made(self, path: str, state: Dict, stage: str, kind: str, steps: int) -> None:
        """Raises CheckpointError, one line naming `path` and the difference, unless
        the checkpoint found for `stage` was made by a run like this one: the same
        stage, settings and data, and no more steps than this run asks for (a
        finished stage, exactly as many). With reuse_stages, a difference other
        than the stage is logged, and the checkpoint taken as it is."""
        made = state.get("made")
        recorded = made.get("stage") if isinstance(made, dict) else state.get("stage")
        if recorded != stage:
            raise CheckpointError(f"{path}: a checkpoint of stage {_shown(recorded)}, not of {stage} (copied or "
                                  f"renamed?): move it away to train {stage} here")
        if not isinstance(made, dict):
            difference = "it records nothing of what made it (written before desc_train recorded its settings and data)"
        else:
            difference = provenance_difference(made, self.provenance(stage, kind))
        if difference is None:
            step, iters = state.get("step", 0), dict((s, it) for s, _, it, _ in STAGES).get(stage, "steps")
            if state.get("done") and step != steps:
                difference = f"it finished with {iters}={step}, this run has {iters}={steps}"
            elif step > steps:
                difference = f"it stopped at step {step}, past this run's {iters}={steps}"
        if difference is None:
            return
        if not self.cfg.reuse_stages:
            raise CheckpointError(f"{path}: {difference}: {REUSE}")
        self.log(f"{stage}: {path}: {difference}; reused as it is (reuse_stages=true)")

    def load(self, path: str, optimizer: bool = True) -> Dict:
        return self._apply(read_checkpoint(path, self.device), path, optimizer)

    def _apply(self, state: Dict, path: str, optimizer: bool = True) -> Dict:
        for name in ("g_rgb", "g_sem", "g_h"):
            _load_weights(getattr(self, name), state, name, path)
        if optimizer:
            self.opt.load_state_dict(state["opt"])
            torch.set_rng_state(state["rng"].cpu())  # map_location moved it to the training device
        return state

    def gradients(self, kind: str, step: int) -> Dict[str, float]:
        """Step `step` of stage kind `kind` up to the optimizer: this rank's
        batches, the loss terms, their gradients in the networks (averaged over
        the ranks). Returns each term's value over the global batch."""
        src, tgt = self.batch(self.source, 1, step), self.batch(self.target, 2, step)
        amp = self.cfg.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            terms = self.terms(kind, src, tgt)
        values = distributed.mean_over_ranks(torch.stack([v.detach().float() for v in terms.values()]))
        self.opt.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        return dict(zip(terms, values.tolist()))

    def run_stage(self, stage: str, steps: int, start_from: Optional[str] = None, kind: Optional[str] = None) -> int:
        """Runs `steps` iterations of stage `kind` (source_only, semantic, joint;
        default: the name) under the name `stage`, resuming from its own
        checkpoint, or else starting from the weights in `start_from`. Returns
        the number of steps it trained (0 when the stage was done already)."""
        kind = kind or stage
        path = self.checkpoint_path(stage)
        self._made[stage] = self.provenance(stage, kind)
        if self.main and os.path.exists(path + ".tmp"):
            os.remove(path + ".tmp")  # a write a kill cut short: never a checkpoint
        first, done = 0, False
        if os.path.exists(path):
            state = read_checkpoint(path, self.device)
            self.check_made(path, state, stage, kind, steps)  # before anything of it is taken
            self._apply(state, path)
            first, done = state["step"], bool(state.get("done"))
        elif start_from:
            self.load(start_from, optimizer=False)
        # Ranks that found different checkpoints (a run folder local to each node) would train
        # diverging replicas, or wait for each other forever.
        distributed.check_same(-1 if done else first, f"where {stage} starts ({path})")
        if done:
            self.log(f"{stage}: done already ({path})")
            return 0
        if first:
            self.log(f"{stage}: resuming at step {first}")
        for m in (self.g_rgb, self.g_sem, self.g_h):
            m.train()
        bar = tqdm(total=steps, initial=first, desc=stage, leave=False) if self.main and not self.on_step else None
        log_path = os.path.join(self.run_dir, "log.jsonl")
        tb = tensorboard_writer(os.path.join(self.run_dir, "tensorboard")) if self.main else None
        t0 = time.time()
        for step in range(first, steps):
            terms = self.gradients(kind, step)
            for name, value in terms.items():  # the same global values on every rank: all stop together
                if not math.isfinite(value):
                    raise FloatingPointError(f"{stage} step {step}: loss term '{name}' is {value}")
            self.opt.step()
            loss = sum(terms.values())
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
            elif self.on_step and self.main:
                self.on_step(stage, step + 1, loss)
            if self.main and ((step + 1) % self.cfg.log_every == 0 or step + 1 == steps):
                rec = dict(stage=stage, step=step + 1, loss=loss, time=round(time.time() - t0, 2),
                           **{k: round(v, 5) for k, v in terms.items()})
                with open(log_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                if tb is not None:
                    for k, v in rec.items():
                        if k not in ("stage", "step", "time"):
                            tb.add_scalar(f"{stage}/{k}", v, step + 1)
            if (step + 1) % self.cfg.checkpoint_every == 0 and step + 1 < steps:
                self.save(stage, step + 1, done=False)
        if bar:
            bar.close()
        if tb is not None:
            tb.close()
        self.save(stage, steps, done=True)
        return steps - first


# desc-train train: (stage name, kind, the setting of its steps, the stage it starts from).
STAGES = (("source_only", "source_only", "iters_source", None),
          ("semantic", "semantic", "iters_sem", "source_only"),
          ("joint", "joint", "iters_joint", "semantic"))


def train_desc(cfg: Config, log=print) -> Optional[Dict[str, Dict]]:
    """``desc-train train``: the three stages of DESC on the splits the config
    names, into ``cfg.out`` (resuming whatever is there), then G_rgb evaluated on
    the test split, when there is one, without and with per-image median scaling
    (written to ``results.json``). Returns those results, or None without a test split.
    Under torchrun every rank trains; rank 0 alone writes, evaluates (once the others
    have left) and returns the results, the other ranks None."""
    from .evaluate import evaluate_split

    for split in (cfg.source_split, cfg.target_split):
        if not os.path.exists(os.path.join(cfg.data, split, "meta.json")):
            raise DataError(f"{os.path.join(cfg.data, split)}: no prepared split (no meta.json); write it with "
                            f"desc-train prepare (README, Real data) or desc-train generate, or set data= and "
                            f"{'source' if split == cfg.source_split else 'target'}_split=")
    with distributed.process_group(cfg.device):
        trainer = Trainer(cfg, cfg.out, log=log)
        if trainer.main:
            _write_json(os.path.join(cfg.out, "config.json"), as_dict(cfg))
        for stage, kind, iters, after in STAGES:
            trainer.run_stage(stage, getattr(cfg, iters),
                              start_from=trainer.checkpoint_path(after) if after else None, kind=kind)
    if not trainer.main:
        return None
    test = os.path.join(cfg.data, cfg.test_split)
    if not os.path.exists(os.path.join(test, "meta.json")):
        log(f"no test split at {test}: trained, not evaluated")
        return None
    net = trainer.g_rgb.eval()
    results = {f"median_scaling_{'on' if on else 'off'}": evaluate_split(net, test, median_scaling=on)
               for on in (False, True)}
    _write_json(os.path.join(cfg.out, "results.json"), results)
    return results


def _write_json(path: str, obj) -> None:
    atomic_write(path, lambda f: json.dump(obj, f, indent=1))


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable or not one of desc_train's; the message names the file."""


def read_checkpoint(path: str, device="cpu") -> Dict:
    """The state a Trainer saved at `path`. Tensors and plain values only
    (``weights_only``): a foreign file cannot run code when it is read."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception:  # truncated, not a torch file, or pickled objects: torch's messages vary
        raise CheckpointError(f"{path}: not a readable desc_train checkpoint") from None
    if not isinstance(state, dict) or not {"g_rgb", "g_sem", "g_h"} <= state.keys():
        raise CheckpointError(f"{path}: not a desc_train checkpoint (no g_rgb, g_sem and g_h weights)")
    return state


def _load_weights(net: torch.nn.Module, state: Dict, name: str, path: str) -> None:
    try:
        net.load_state_dict(state[name])
    except RuntimeError:  # torch lists every mismatched tensor, over many lines
        raise CheckpointError(f"{path}: its {name} weights do not fit the network (another width?)") from None


def load_g_rgb(checkpoint: str, device="cpu") -> DepthUNet:
    """G_rgb of a desc_train checkpoint, in eval mode, with the width it was trained at."""
    state = read_checkpoint(checkpoint, device)
    net = DepthUNet(3, state.get("config", {}).get("width", Config.width))
    _load_weights(net, state, "g_rgb", checkpoint)
    return net.to(device).eval()
