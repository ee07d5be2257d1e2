"""The DESC training stages on top of desc_ops.

(a) ``source_only``: G_rgb on source labels, plus edge-aware smoothness on target
    predictions;
(b) ``semantic``: G_sem (one-hot semantics + edges -> depth) and G_h (instance
    features -> metric height, labelled by instance_heights of the source ground
    truth) on the source;
(c) ``joint``: source supervision of G_rgb and G_sem, and on the target
    ``desc_ops.DESCLoss``: confidence-weighted consistency between G_rgb and
    G_sem (at each output scale), the instance prior from G_h's heights,
    smoothness. A DESC term with weight 0 in the config is switched off.

The target-domain terms of (a) and (c) are one ``DESCLoss`` built from the
config (``target_objective``), the object desc_ops' tests check. Every stage
checkpoints atomically and resumes where it stopped; a non-finite loss stops
the run with the name of the term.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import default_collate
from tqdm import tqdm

import desc_ops
from desc_ops.reference import _sobel_magnitude

from .config import Config, as_dict
from .data import DepthDataset
from .data.layout import DataError
from .errors import UserError
from .models import MAX_DEPTH, SCALES, DepthUNet, HeightNet, instance_features, semantic_input


def domain_classes(source: DepthDataset, target: DepthDataset):
    """The class names both splits label with (G_sem and G_h read one id space),
    after checking the splits can train: depth on the source, labels on both."""
    src, tgt = source.meta, target.meta
    if not src.has_depth:
        raise DataError(f"{source.split_dir}: the source split has no depth (meta.json has_depth false)")
    for ds in (source, target):
        if not ds.meta.has_labels:
            raise DataError(f"{ds.split_dir}: no semantic and instance maps yet; add them with "
                            f"desc-train prepare panoptic (or --labels gt where the dataset has labels)")
    if list(src.classes) != list(tgt.classes):
        raise DataError(f"{source.split_dir} and {target.split_dir} label different classes "
                        f"({len(src.classes)} vs {len(tgt.classes)}): prepare both with the same label source")
    return list(src.classes)


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
    (predictions upsampled to full resolution)."""
    valid = depth > 0
    total = depth.new_zeros(())
    for p in preds:
        p = F.interpolate(p, size=depth.shape[-2:], mode="bilinear", align_corners=False)
        total = total + weight * (p - depth).abs()[valid].mean()
    return total


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
        confidence=cfg.confidence, max_depth=MAX_DEPTH,
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


class Trainer:
    def __init__(self, cfg: Config, run_dir: str, log=print,
                 on_step: Optional[Callable[[str, int, float], None]] = None):
        """`on_step(stage, step, loss)`, when given, is called after every step in
        place of the trainer's own progress bar (the demo shows one bar for all
        its worker processes)."""
        self.cfg = cfg
        self.run_dir = run_dir
        self.log = log
        self.on_step = on_step
        os.makedirs(run_dir, exist_ok=True)
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device {cfg.device!r} is not available here; pass --set device=cpu")
        self.device = torch.device(cfg.device)
        self.source = DepthDataset(os.path.join(cfg.data, cfg.source_split), seed=cfg.seed)
        self.target = DepthDataset(os.path.join(cfg.data, cfg.target_split), seed=cfg.seed + 1)
        self.classes = domain_classes(self.source, self.target)
        self.num_classes = len(self.classes)
        # Enough instance slots for the most crowded frame of either split.
        self.K = max([cfg.max_instances] + [ds.meta.max_instances or 0 for ds in (self.source, self.target)])
        for ds in (self.source, self.target):
            ds.max_instances = self.K
        # Depth beyond what G_rgb can output is supervised at its maximum (sky included), as the
        # official code: a converted split states the depth it clamped to.
        self.max_source_depth = min(MAX_DEPTH, self.source.meta.max_depth or float("inf"))
        torch.manual_seed(cfg.seed)
        self.g_rgb = DepthUNet(3, cfg.width).to(self.device)
        self.g_sem = DepthUNet(self.num_classes + 1, cfg.width).to(self.device)
        self.g_h = HeightNet(self.num_classes + 7).to(self.device)
        params = list(self.g_rgb.parameters()) + list(self.g_sem.parameters()) + list(self.g_h.parameters())
        self.opt = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)
        self.objectives = {kind: target_objective(cfg, kind) for kind in ("source_only", "joint")}

    # ------------------------------------------------------------ data
    def batch(self, ds: DepthDataset, salt: int, step: int) -> Dict[str, Tensor]:
        """The batch of a step depends on (seed, dataset, step) alone, so that a
        resumed run sees exactly the batches of an uninterrupted one."""
        g = torch.Generator().manual_seed(((self.cfg.seed * 7919 + salt) * 1_000_003 + step) % 2**63)
        idx = torch.randint(len(ds), (self.cfg.batch_size,), generator=g).tolist()
        ds.set_epoch(step)
        return self._to(default_collate([ds[i] for i in idx]))

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
        return self.g_h(instance_features(st, b["instance_class"], self.num_classes, H, W))

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
                preds_s = self.g_rgb(src["image"])
            t["supervised_rgb"] = supervised_loss(preds_s, self._depth(src), cfg.supervised_weight)
        if stage in ("semantic", "joint"):
            t["supervised_sem"] = supervised_loss(self.g_sem(self._sem_input(src)), self._depth(src),
                                                  cfg.supervised_weight)
            st, h, ok = self._source_height_labels(src)
            pred = self._predict_heights(src, st)
            t["height"] = (pred - h)[ok].abs().mean() if ok.any() else pred.sum() * 0
        if stage in ("source_only", "joint"):
            t.update(self._target_terms(stage, tgt))
        return t

    def _target_terms(self, stage: str, tgt) -> Dict[str, Tensor]:
        """The weighted terms of the stage's target objective (``target_objective``),
        running G_sem and G_h only for the terms that are on."""
        cfg = self.cfg
        inputs = {}
        if stage == "joint" and cfg.consistency_weight:
            inputs.update(depth_sem=self.g_sem(self._sem_input(tgt)), semantic=tgt["semantic"])
        if stage == "joint" and cfg.instance_weight:
            st = desc_ops.instance_stats(tgt["instance_ids"], self.K)
            heights = self._predict_heights(tgt, st)
            # No prior from instances too short for G_h to have learnt their height.
            heights = heights.masked_fill(st.pixel_height < cfg.min_instance_rows, float("nan"))
            inputs.update(instance_ids=tgt["instance_ids"], heights=heights, focal=tgt["focal"])
        return self.objectives[stage](self.g_rgb(tgt["image"]), image=tgt["image"], **inputs).weighted

    # ------------------------------------------------------------ loop
    def checkpoint_path(self, stage: str) -> str:
        return os.path.join(self.run_dir, f"{stage}.pt")

    def save(self, stage: str, step: int, done: bool) -> None:
        path = self.checkpoint_path(stage)
        state = dict(stage=stage, step=step, done=done, g_rgb=self.g_rgb.state_dict(), g_sem=self.g_sem.state_dict(),
                     g_h=self.g_h.state_dict(), opt=self.opt.state_dict(), rng=torch.get_rng_state(),
                     config=as_dict(self.cfg))
        torch.save(state, path + ".tmp")
        os.replace(path + ".tmp", path)  # atomic: an interruption leaves the previous checkpoint

    def load(self, path: str, optimizer: bool = True) -> Dict:
        state = read_checkpoint(path, self.device)
        for name in ("g_rgb", "g_sem", "g_h"):
            _load_weights(getattr(self, name), state, name, path)
        if optimizer:
            self.opt.load_state_dict(state["opt"])
            torch.set_rng_state(state["rng"])
        return state

    def run_stage(self, stage: str, steps: int, start_from: Optional[str] = None, kind: Optional[str] = None) -> int:
        """Runs `steps` iterations of stage `kind` (source_only, semantic, joint;
        default: the name) under the name `stage`, resuming from its own
        checkpoint, or else starting from the weights in `start_from`. Returns
        the number of steps it trained (0 when the stage was done already)."""
        kind = kind or stage
        path = self.checkpoint_path(stage)
        first = 0
        if os.path.exists(path):
            state = self.load(path)
            if state.get("done"):
                self.log(f"{stage}: done already ({path})")
                return 0
            first = state["step"]
            self.log(f"{stage}: resuming at step {first}")
        elif start_from:
            self.load(start_from, optimizer=False)
        for m in (self.g_rgb, self.g_sem, self.g_h):
            m.train()
        bar = None if self.on_step else tqdm(total=steps, initial=first, desc=stage, leave=False)
        log_path = os.path.join(self.run_dir, "log.jsonl")
        tb = tensorboard_writer(os.path.join(self.run_dir, "tensorboard"))
        t0 = time.time()
        for step in range(first, steps):
            src, tgt = self.batch(self.source, 1, step), self.batch(self.target, 2, step)
            amp = self.cfg.amp and self.device.type == "cuda"
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                terms = self.terms(kind, src, tgt)
            for name, value in terms.items():
                if not torch.isfinite(value):
                    raise FloatingPointError(f"{stage} step {step}: loss term '{name}' is {value.item()}")
            loss = sum(terms.values())
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if self.on_step:
                self.on_step(stage, step + 1, loss.item())
            else:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if (step + 1) % self.cfg.log_every == 0 or step + 1 == steps:
                rec = dict(stage=stage, step=step + 1, loss=loss.item(), time=round(time.time() - t0, 2),
                           **{k: round(v.item(), 5) for k, v in terms.items()})
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
    (written to ``results.json``). Returns those results, or None without a test split."""
    from .evaluate import evaluate_split

    for split in (cfg.source_split, cfg.target_split):
        if not os.path.exists(os.path.join(cfg.data, split, "meta.json")):
            raise DataError(f"{os.path.join(cfg.data, split)}: no prepared split (no meta.json); write it with "
                            f"desc-train prepare (README, Real data) or desc-train generate, or set data= and "
                            f"{'source' if split == cfg.source_split else 'target'}_split=")
    trainer = Trainer(cfg, cfg.out, log=log)
    _write_json(os.path.join(cfg.out, "config.json"), as_dict(cfg))
    for stage, kind, iters, after in STAGES:
        trainer.run_stage(stage, getattr(cfg, iters), start_from=trainer.checkpoint_path(after) if after else None,
                          kind=kind)
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
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(path + ".tmp", path)


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
