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

With ``translation`` (the official stage 1, ``desc_train.translation``), stage
(a) also trains S2T, which gives source images the target's look, and its
discriminator, and G_rgb learns from the translated source; in (c) S2T is
frozen and still translates every source image before G_rgb. Images reach the
networks and the smoothness term in ``image_range`` ([-1, 1] in the official
code); with ``prior_scale=learned`` the instance prior has the official learned
scale (``models.PriorScale``).

The target-domain terms of (a) and (c) are one ``DESCLoss`` built from the
config (``target_objective``), the object desc_ops' tests check. Every stage
checkpoints atomically and resumes where it stopped; a non-finite loss stops
the run with the name of the term. A checkpoint records what made it (its stage,
the settings that shape it, the splits it read): one made otherwise is not
resumed or reused unless ``reuse_stages`` says so.

Under torchrun every stage trains the networks (S2T, its discriminator and the
prior scale included) in DistributedDataParallel (``distributed.py``): each rank
reads its DistributedSampler shard of both domains, every mean is over the
global batch (the pool of translations too: it holds the global batch's), and
rank 0 alone writes checkpoints, logs, TensorBoard, results and the progress bar.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DistributedSampler, default_collate
from tqdm import tqdm

import desc_ops

from . import distributed
from .config import Config, as_dict
from .data import DepthDataset
from .data.layout import CERTAINTY, DataError, atomic_write, meta_path
from .errors import UserError
from .models import (MAX_DEPTH, SCALES, DepthUNet, HeightNet, PriorScale, edge_map, instance_features, rgb_input,
                     semantic_input, to_image_range)
from .translation import Discriminator, ImagePool, Translator, discriminator_loss, generator_loss, identity_loss


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


def smoothness_weights(cfg: Config) -> List[float]:
    """The smoothness weight of each output scale, finest first:
    ``smoothness_weight / 2**i`` at the ``i``-th scale counted from
    ``smoothness_full_scale`` (the official code counts from the coarsest)."""
    weights = [cfg.smoothness_weight / 2 ** i for i in range(SCALES)]
    return weights if cfg.smoothness_full_scale == "finest" else weights[::-1]


def target_objective(cfg: Config, kind: str) -> desc_ops.DESCLoss:
    """The target-domain terms of a stage kind: in ``joint``, DESC's, with the
    consistency at the ``consistency_scales`` finest output scales; in
    ``source_only``, the smoothness alone (``smoothness_weights``), on images in
    ``image_range``. The instance prior's pseudo-depth is clamped at the
    networks' MAX_DEPTH; with the learned prior scale, PriorScale clamps it (at
    MAX_DEPTH times the scale) before the loss sees it."""
    joint = kind == "joint"
    return desc_ops.DESCLoss(
        consistency_weight=[cfg.consistency_weight] * cfg.consistency_scales if joint else 0.0,
        instance_weight=cfg.instance_weight if joint else 0.0,
        smoothness_weight=smoothness_weights(cfg),
        stereo_weight=cfg.stereo_weight if joint else 0.0,
        confidence=cfg.confidence != "none", edge_weight=cfg.edge_weight, boundary_weight=cfg.boundary_weight,
        max_depth=MAX_DEPTH if cfg.prior_scale == "fixed" else None,
        image_range=cfg.image_range,
        validate=False)  # relabel_instances made the ids: valid, and no host read per step on CUDA


@contextlib.contextmanager
def no_parameter_gradients(net: torch.nn.Module):
    """Inside the block, `net`'s parameters take no gradient (the gradient still flows
    through it to its input): the discriminator during S2T's step, as the official code."""
    params = [p for p in net.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


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
    "source_only": ("smoothness_weight", "smoothness_full_scale", "target_bn_stats", "image_range", "translation"),
    "semantic": ("max_instances", "min_instance_rows", "height_weight"),
    "joint": ("consistency_weight", "consistency_scales", "instance_weight", "smoothness_weight",
              "smoothness_full_scale", "confidence", "edge_weight", "boundary_weight", "target_bn_stats",
              "max_instances", "min_instance_rows", "height_weight", "prior_scale", "image_range", "translation",
              "stereo_weight"),
}
# ... and with translation=true, those of the translator.
TRANSLATION_SETTINGS = {
    "source_only": ("translation_width", "translation_lr", "translation_betas", "identity_weight", "gan_weight",
                    "pool_size"),
    "joint": ("translation_width",),
}
# Settings that checkpoints record since they exist: one made before records none of them, and
# was made at their defaults.
RECORDED_LATER = ("smoothness_full_scale", "height_weight", "prior_scale", "image_range", "translation",
                  "stereo_weight", *TRANSLATION_SETTINGS["source_only"])
# The networks a stage kind trains: what a checkpoint after the first of several that a stage
# starts from gives it (run_stage).
TRAINED = {"source_only": ("g_rgb", "s2t", "d_s2t"), "semantic": ("g_sem", "g_h"),
           "joint": ("g_rgb", "g_sem", "g_h", "prior_scale")}
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
    new = now["settings"]
    before = json.loads(json.dumps({k: getattr(Config, k) for k in RECORDED_LATER if k in new}))
    old = {**before, **legacy_settings(made.get("settings", {}))}
    # The run's settings first: with translation=false it has none of the translator's to report.
    for key in [*sorted(new), *sorted(set(old) - set(new))]:
        if key not in old:
            return f"it records no {key}, this run has {key}={_shown(new[key])}"
        if old[key] != new.get(key):
            return f"it was made with {key}={_shown(old[key])}, this run has {key}={_shown(new.get(key))}"
    for domain, split in now["data"].items():
        then = made.get("data", {}).get(domain, {})
        if (then.get("frames"), then.get("meta_sha256")) != (split["frames"], split["meta_sha256"]):
            return f"it was made from the {domain} split {_described(then)}, this run reads {_described(split)}"
    return None


class StageRecords:
    """The logging and checkpointing of one run of a stage, from step `first` to
    `steps`: ``step`` after each optimizer step moves the progress bar (or calls
    the trainer's on_step), appends to log.jsonl and TensorBoard every log_every
    steps and at the last, and checkpoints every checkpoint_every steps before the
    last (the last, done, is run_stage's); ``close`` when the stage has run."""

    def __init__(self, trainer: "Trainer", stage: str, steps: int, first: int):
        self.trainer, self.stage, self.steps = trainer, stage, steps
        main = trainer.main
        self.bar = tqdm(total=steps, initial=first, desc=stage, leave=False) if main and not trainer.on_step else None
        self.log_path = os.path.join(trainer.run_dir, "log.jsonl")
        self.tb = tensorboard_writer(os.path.join(trainer.run_dir, "tensorboard")) if main else None
        self.t0 = time.time()

    def step(self, step: int, loss: float, terms: Dict[str, float]) -> None:
        """Step `step` (0-based) is done, with this loss and these logged terms."""
        trainer, stage, steps, bar, tb = self.trainer, self.stage, self.steps, self.bar, self.tb
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
        elif trainer.on_step and trainer.main:
            trainer.on_step(stage, step + 1, loss)
        if trainer.main and ((step + 1) % trainer.cfg.log_every == 0 or step + 1 == steps):
            rec = dict(stage=stage, step=step + 1, loss=loss, time=round(time.time() - self.t0, 2),
                       **{k: round(v, 5) for k, v in terms.items()})
            with open(self.log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            if tb is not None:
                for k, v in rec.items():
                    if k not in ("stage", "step", "time"):
                        tb.add_scalar(f"{stage}/{k}", v, step + 1)
        if (step + 1) % trainer.cfg.checkpoint_every == 0 and step + 1 < steps:
            trainer.save(stage, step + 1, done=False)

    def close(self) -> None:
        if self.bar:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()


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
        # The right views are read only for the stereo term (and then must exist).
        self.target = DepthDataset(os.path.join(cfg.data, cfg.target_split), seed=cfg.seed + 1,
                                   stereo=bool(cfg.stereo_weight))
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
        nets = {"g_rgb": DepthUNet(3, cfg.width), "g_sem": DepthUNet(self.num_classes + 1, cfg.width),
                "g_h": HeightNet(self.num_classes + 7)}
        # Made after those three, whose initial weights are then those of a run without them.
        if cfg.translation:
            nets.update(s2t=Translator(cfg.translation_width, cfg.image_range),
                        d_s2t=Discriminator(cfg.translation_width))
        if cfg.prior_scale == "learned":
            nets.update(prior_scale=PriorScale(MAX_DEPTH))
        if cfg.sync_bn:
            nets = {name: distributed.sync_batchnorm(net, self.device) for name, net in nets.items()}
        # Every network and learned scale by its name in the checkpoints.
        self.networks: Dict[str, torch.nn.Module] = {name: net.to(self.device) for name, net in nets.items()}
        self.g_rgb, self.g_sem, self.g_h = nets["g_rgb"], nets["g_sem"], nets["g_h"]
        self.s2t, self.d_s2t, self.prior_scale = nets.get("s2t"), nets.get("d_s2t"), nets.get("prior_scale")
        task = [p for name in ("g_rgb", "g_sem", "g_h", "prior_scale") if name in nets
                for p in nets[name].parameters()]
        groups = [dict(params=task)]
        if self.s2t is not None:  # one optimiser for S2T and the task networks, as the official code
            groups.append(dict(params=list(self.s2t.parameters()), lr=cfg.translation_lr,
                               betas=cfg.translation_betas))
        self.opt = torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)
        self.opt_d = self.pool = None
        if self.d_s2t is not None:
            self.opt_d = torch.optim.Adam(self.d_s2t.parameters(), lr=cfg.translation_lr, betas=cfg.translation_betas)
            self.pool = ImagePool(cfg.pool_size, seed=cfg.seed)
        # The forward passes go through these: under torchrun, DistributedDataParallel wrappers
        # (whose backward averages the gradients over the ranks); else the networks themselves.
        self._rgb, self._sem, self._h = (distributed.data_parallel(net, self.device)
                                         for net in (self.g_rgb, self.g_sem, self.g_h))
        self._s2t, self._d, self._prior = (None if net is None else distributed.data_parallel(net, self.device)
                                           for net in (self.s2t, self.d_s2t, self.prior_scale))
        self._discriminator_batch: Optional[Tuple[Tensor, Tensor]] = None  # set by S2T's step (_translate)
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

    def _input(self, image: Tensor) -> Tensor:
        """An RGB batch of [0, 1] as the networks and the smoothness term see it: in image_range."""
        return to_image_range(image, self.cfg.image_range)

    def trains_translation(self, kind: str) -> bool:
        return self.s2t is not None and kind == "source_only"

    def _translate(self, kind: str, src_image: Tensor, tgt_image: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        """The source images G_rgb learns from, and S2T's weighted terms: without
        translation, the images themselves; in stage a, S2T's translation of them
        (source and target through S2T as one batch, as the official code), with
        the identity term on the target and the GAN term, the discriminator
        taking no gradient; later, S2T's translation, frozen (eval mode, no gradient)."""
        if self.s2t is None:
            return src_image, {}
        if not self.trains_translation(kind):
            with torch.no_grad():
                return self.s2t(src_image), {}
        n = src_image.shape[0]
        both = self._s2t(torch.cat([src_image, tgt_image]))
        translated = both[:n]
        self._discriminator_batch = (tgt_image, translated.detach())
        with no_parameter_gradients(self.d_s2t):
            scores = self.d_s2t(translated)
        return translated, {"identity": self.cfg.identity_weight * identity_loss(both[n:], tgt_image),
                            "gan": self.cfg.gan_weight * generator_loss(scores)}

    def terms(self, stage: str, src, tgt) -> Dict[str, Tensor]:
        """The weighted loss terms of one step of a stage kind, by name: the loss is their sum."""
        cfg = self.cfg
        t: Dict[str, Tensor] = {}
        translation: Dict[str, Tensor] = {}
        if stage in ("source_only", "joint"):
            image, translation = self._translate(stage, self._input(src["image"]), self._input(tgt["image"]))
            with frozen_running_stats(self.g_rgb, cfg.target_bn_stats):
                preds_s = self._rgb(image)
            t["supervised_rgb"] = supervised_loss(preds_s, self._depth(src), cfg.supervised_weight)
        if stage in ("semantic", "joint"):
            t["supervised_sem"] = supervised_loss(self._sem(self._sem_input(src)), self._depth(src),
                                                  cfg.supervised_weight)
            st, h, ok = self._source_height_labels(src)
            pred = self._predict_heights(src, st)
            # Over the labelled slots of every rank; with none, 0 and G_h still in the graph (DDP).
            t["height"] = cfg.height_weight * distributed.global_mean((pred - h)[ok].abs().sum(), ok.sum())
        if stage in ("source_only", "joint"):
            t.update(self._target_terms(stage, tgt))
        t.update(translation)
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
            if self.prior_scale is not None:
                heights = self._prior(heights, st.pixel_height, tgt["focal"])
            inputs.update(instance_ids=tgt["instance_ids"], heights=heights, focal=tgt["focal"])
        if stage == "joint" and cfg.stereo_weight:
            inputs.update(image_other=self._input(tgt["image_right"]), focal_baseline=tgt["focal_baseline"])
        image = self._input(tgt["image"])
        weighted = self.objectives[stage](self._rgb(image), image=image, **inputs).weighted
        if self.prior_scale is not None and "instance_prior" in weighted:
            weighted["instance_prior"] = self.prior_scale.s * weighted["instance_prior"]  # the official s * L_inst
        return weighted

    def discriminator_gradients(self) -> float:
        """The discriminator's step after S2T's (the official backward_D_image) up
        to its optimiser: least squares on the target batch (real) and on the
        translated source batch of S2T's step drawn through the pool (fake), each
        through the discriminator on its own (BatchNorm statistics of each). The
        pool holds the global batch's translations, the same on every rank, and
        each rank takes its share of what it returns. Returns the loss over the
        global batch."""
        real, translated = self._discriminator_batch
        n = translated.shape[0]
        fake = self.pool.query(distributed.all_gather(translated))[distributed.rank() * n:][:n]
        amp = self.cfg.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = discriminator_loss(self._d(real), self._d(fake))
        value = distributed.mean_over_ranks(loss.detach().float())
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        return value.item()

    # ------------------------------------------------------------ loop
    def depth_model(self) -> torch.nn.Module:
        """G_rgb in eval mode, taking RGB in [0, 1] (evaluation, pictures) whatever its image range."""
        return rgb_input(self.g_rgb.eval(), self.cfg.image_range)

    def checkpoint_path(self, stage: str) -> str:
        return os.path.join(self.run_dir, f"{stage}.pt")

    def provenance(self, stage: str, kind: Optional[str]) -> Dict:
        """What makes stage `stage` of kind `kind` in this run: the record its
        checkpoints keep (plain JSON values: a tuple reads back as a list)."""
        names = SHARED_SETTINGS + KIND_SETTINGS.get(kind, ())
        if self.cfg.translation:
            names += TRANSLATION_SETTINGS.get(kind, ())
        settings = {name: getattr(self.cfg, name) for name in names}
        settings["amp"] = self.cfg.amp and self.device.type == "cuda"  # autocast runs on CUDA only
        settings["processes"] = distributed.world_size()  # the global batch is batch_size times this
        return json.loads(json.dumps(dict(stage=stage, kind=kind, settings=settings, data=self.data)))

    def save(self, stage: str, step: int, done: bool) -> None:
        """Rank 0 writes the checkpoint of `stage` at `step`; every rank waits for it."""
        if self.main:
            path = self.checkpoint_path(stage)
            made = self._made.get(stage) or self.provenance(stage, None)
            state = dict(stage=stage, step=step, done=done,
                         **{name: net.state_dict() for name, net in self.networks.items()},
                         opt=self.opt.state_dict(), rng=torch.get_rng_state(), config=as_dict(self.cfg), made=made)
            if self.opt_d is not None:
                state.update(opt_d=self.opt_d.state_dict(), pool=self.pool.state_dict())
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

    def _apply(self, state: Dict, path: str, optimizer: bool = True, networks: Optional[Sequence[str]] = None) -> Dict:
        """Takes the weights of `networks` (default: all of this run's) that `state`
        holds and, with `optimizer`, the optimisers', the pool's and the RNG's state."""
        for name in self.networks if networks is None else networks:
            if name in self.networks and name in state:
                _load_weights(self.networks[name], state, name, path)
        if optimizer:
            self.opt.load_state_dict(state["opt"])
            if self.opt_d is not None:
                self.opt_d.load_state_dict(state["opt_d"])
                self.pool.load_state_dict(state["pool"])
            torch.set_rng_state(state["rng"].cpu())  # map_location moved it to the training device
        return state

    def start_from(self, paths: Sequence[str]) -> None:
        """The weights a stage starts from (not the optimisers' state): the first
        checkpoint's, then from each later one those of the networks its stage
        trained (TRAINED). A learned prior scale that none holds starts at 1, as
        in the official joint stage; a translator that none holds is an error."""
        found = set()
        for i, path in enumerate(paths):
            state = read_checkpoint(path, self.device)
            made = state.get("made") if isinstance(state.get("made"), dict) else {}
            names = list(self.networks) if i == 0 else TRAINED.get(made.get("kind"), list(self.networks))
            self._apply(state, path, optimizer=False, networks=names)
            found.update(name for name in names if name in state)
        if self.s2t is not None and not {"s2t", "d_s2t"} <= found:
            raise CheckpointError(f"{paths[-1]}: holds no translator (s2t) to start from: the stages before were "
                                  f"trained with translation=false; train them with translation=true (another out=)")

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

    def run_stage(self, stage: str, steps: int, start_from: Union[str, Sequence[str], None] = None,
                  kind: Optional[str] = None) -> int:
        """Runs `steps` iterations of stage `kind` (source_only, semantic, joint;
        default: the name) under the name `stage`, resuming from its own
        checkpoint, or else starting from the weights in `start_from`, one
        checkpoint or several (``start_from`` the method). Returns the number of
        steps it trained (0 when the stage was done already)."""
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
            self.start_from([start_from] if isinstance(start_from, str) else start_from)
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
        for m in (self.s2t, self.d_s2t):  # frozen after stage a: eval mode keeps its BatchNorm statistics
            if m is not None:
                m.train(self.trains_translation(kind))
        records = StageRecords(self, stage, steps, first)
        for step in range(first, steps):
            terms = self.gradients(kind, step)
            for name, value in terms.items():  # the same global values on every rank: all stop together
                if not math.isfinite(value):
                    raise FloatingPointError(f"{stage} step {step}: loss term '{name}' is {value}")
            self.opt.step()
            loss = sum(terms.values())
            # Logged beside the terms, not part of the loss: the discriminator's loss, the learned scale.
            if self.trains_translation(kind):
                terms["discriminator"] = self.discriminator_gradients()
                if not math.isfinite(terms["discriminator"]):
                    raise FloatingPointError(f"{stage} step {step}: the discriminator's loss is "
                                             f"{terms['discriminator']}")
                self.opt_d.step()
            if self.prior_scale is not None and kind == "joint":
                terms["prior_scale"] = self.prior_scale.s.item()
            records.step(step, loss, terms)
        records.close()
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
    net = trainer.depth_model()
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


def load_g_rgb(checkpoint: str, device="cpu") -> torch.nn.Module:
    """G_rgb of a desc_train checkpoint, in eval mode, with the width it was trained at,
    taking RGB in [0, 1] whatever image range it was trained on (``models.rgb_input``)."""
    state = read_checkpoint(checkpoint, device)
    config = state.get("config", {})
    net = DepthUNet(3, config.get("width", Config.width))
    _load_weights(net, state, "g_rgb", checkpoint)
    return rgb_input(net.to(device).eval(), config.get("image_range", Config.image_range))
