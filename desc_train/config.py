"""Training configuration: defaults here, overridden by a TOML file and then by
``key=value`` pairs from the command line."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import UserError


class ConfigError(UserError):
    """A setting of a TOML file or a ``key=value`` override is unknown or malformed."""


@dataclass
class Config:
    data: str = "runs/bench"  # dataset root in the layout of desc_train.data (the demo generates it if missing)
    source_split: str = "source_train"  # split folders under `data`: labelled source frames,
    target_split: str = "target_train"  # unlabelled target frames (with semantic and instance maps),
    test_split: str = "target_test"  # and target frames with ground truth, evaluated after training
    out: str = "runs/demo"  # run folder: checkpoints, logs, pictures, results
    size: Tuple[int, int] = (64, 192)  # generated frames, H x W (multiples of 16)
    counts: Dict[str, int] = field(default_factory=lambda: {"source_train": 400, "target_train": 400,
                                                            "target_test": 100})
    width: int = 8  # U-Net base width
    # Frames per domain per step, per process: under torchrun the global batch is batch_size times
    # the number of processes (README, "Many GPUs and machines"); lr is not rescaled with it.
    batch_size: int = 4
    lr: float = 1e-3  # Adam, for every network (the official code: 1e-4 over 20,000 steps)
    betas: Tuple[float, float] = (0.95, 0.999)  # Adam, as the official code
    iters_source: int = 150  # stage a: source-only G_rgb
    iters_sem: int = 300  # stage b: G_sem and G_h on the source
    iters_joint: int = 150  # stage c: joint, with the DESC terms on the target
    supervised_weight: float = 50.0 / 40.0  # DESC's 50 * L1 in tanh space, per metre
    consistency_weight: float = 1.0  # per metre of |G_rgb - G_sem|, at each of consistency_scales scales
    consistency_scales: int = 4  # output scales the consistency loss pulls (1: the finest only, as the official code)
    instance_weight: float = 1.0  # per metre of |G_rgb - f H / h| on instance pixels
    smoothness_weight: float = 0.01  # divided by 2^i at output scale i
    confidence: bool = True  # confidence-weighted consistency (False: the official plain mean)
    # G_rgb's BatchNorm running statistics from target batches only, as the official code. Off by
    # default: in the demo it leaves the source-only row far worse and unstable, which would
    # flatter every DESC row (README, "Training").
    target_bn_stats: bool = False
    max_instances: int = 32  # instance slots K per frame
    min_instance_rows: int = 6  # smaller instances give no height label and no prior
    seed: int = 0  # weights and batches (the benchmark has its own seed)
    device: str = "cpu"  # or "cuda"
    amp: bool = False  # autocast (bfloat16) on CUDA
    # Under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm), so that N processes
    # of batch_size b train as one of batch N*b; off, each process normalises with its own b frames.
    sync_bn: bool = False
    log_every: int = 20  # steps between log.jsonl records
    checkpoint_every: int = 100  # steps between checkpoints within a stage


def _coerce(value: str, like):
    if isinstance(like, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if isinstance(like, int):
        return int(value)
    if isinstance(like, float):
        return float(value)
    if isinstance(like, tuple):
        parts = value.replace("x", ",").split(",")
        return tuple(type(like[0])(p) for p in parts)
    if isinstance(like, dict):
        out = dict(like)
        for item in value.split(","):
            k, v = item.split(":")
            out[k.strip()] = type(next(iter(like.values())))(v)
        return out
    return value


# The official implementation's settings (192x640, Adam 1e-4 with betas (0.95, 0.999),
# 20 epochs of 20,760 source frames at batch 2 for stage a, 10 epochs at batch 4 for
# stage b, 20,000 joint iterations at batch 2, consistency at the finest scale only, plain
# mean consistency, BatchNorm statistics from the target). Its losses live in tanh space
# (1 unit = 40 m): lambda 50 supervised, 1 consistency, 1 instance prior and 0.01
# smoothness become these weights per metre. Width 88 gives DepthUNet 54.7 M parameters,
# the official UNetGenerator's 54.6 M (a plainer network of the same capacity).
PRESETS: Dict[str, Dict] = {
    "paper": dict(size=(192, 640), width=88, batch_size=2, lr=1e-4, betas=(0.95, 0.999), iters_source=207_600,
                  iters_sem=51_900, iters_joint=20_000, supervised_weight=50.0 / 40.0,
                  consistency_weight=1.0 / 40.0, consistency_scales=1, instance_weight=1.0 / 40.0,
                  smoothness_weight=0.01 / 40.0, confidence=False, target_bn_stats=True, device="cuda",
                  data="data/vkitti2kitti", out="runs/paper", log_every=100, checkpoint_every=1000),
}


def load_config(path: Optional[str] = None, overrides: Sequence[str] = (), preset: Optional[str] = None) -> Config:
    """Defaults (or those of a preset of PRESETS), then the TOML file at `path`,
    then `key=value` overrides."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    cfg = dataclasses.replace(Config(), **PRESETS[preset]) if preset else Config()
    names = {f.name for f in dataclasses.fields(Config)}
    if path:
        try:
            import tomllib
        except ImportError:  # Python < 3.11
            import tomli as tomllib
        with open(path, "rb") as f:
            try:
                raw = tomllib.load(f)
            except tomllib.TOMLDecodeError as err:
                raise ConfigError(f"{path}: not valid TOML: {err}") from None
        unknown = set(raw) - names
        if unknown:
            raise ConfigError(f"{path}: unknown settings {sorted(unknown)}")
        for k, v in raw.items():
            like = getattr(cfg, k)
            setattr(cfg, k, tuple(v) if isinstance(like, tuple) else v)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override must be key=value, got {item!r}")
        k, v = item.split("=", 1)
        if k not in names:
            raise ConfigError(f"unknown setting {k!r}; known: {', '.join(sorted(names))}")
        try:
            setattr(cfg, k, _coerce(v, getattr(cfg, k)))
        except ValueError as err:
            raise ConfigError(f"setting {k}: {err}") from None
    if not 1 <= cfg.consistency_scales <= 4:
        raise ConfigError(f"consistency_scales must be 1 to 4 (the U-Nets' output scales), "
                          f"got {cfg.consistency_scales}")
    if cfg.size[0] % 16 or cfg.size[1] % 16:
        raise ConfigError(f"size must be multiples of 16, got {cfg.size}")
    return cfg


def as_dict(cfg: Config) -> Dict:
    return dataclasses.asdict(cfg)


__all__: List[str] = ["Config", "ConfigError", "PRESETS", "load_config", "as_dict"]
