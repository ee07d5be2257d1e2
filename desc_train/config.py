"""Training configuration: defaults here, overridden by a TOML file and then by
``key=value`` pairs from the command line."""
from __future__ import annotations

import dataclasses
import functools
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import Bounds, UserError, shown


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
    smoothness_weight: float = 0.01  # at the smoothness_full_scale output scale, halved at each scale from it
    smoothness_full_scale: str = "finest"  # finest, or coarsest (the official code: 0.01 at 1/8, 0.00125 at 1/1)
    # DESC + stereo: the photometric error of the target's stereo pair (desc_ops.stereo_photometric_loss)
    # at every output scale; 0 = off. The target split needs right views (generate --stereo, prepare
    # kitti/cityscapes --stereo). Unitless, so the official lambda_St of 50 carries over as it is.
    stereo_weight: float = 0.0
    height_weight: float = 1.0  # per metre of |G_h - H| on source instances (the official lambda_S: 50)
    # What weights the consistency per pixel (CONFIDENCE): none, the official plain mean; labels or
    # logits, desc_ops' confidence map of the target's labels or of its segmenter's scores (logits/
    # or certainty/ of the target split). The default follows desc-train study confidence, where
    # no map beat the plain mean by 5% beyond the spread over seeds (README, "Does the confidence
    # map help?").
    confidence: str = "none"
    edge_weight: float = 1.0  # the confidence map's exp(-edge_weight * Sobel magnitude) (docs/ops.md §1)
    boundary_weight: float = 0.5  # the map from labels: 1 - boundary_weight on class boundaries
    # The instance prior's scale: fixed (pseudo-depth f H / h as it is) or learned (the official
    # scalar s: pseudo-depth divided by s, the term multiplied by s; desc_train.models.PriorScale).
    prior_scale: str = "fixed"
    # RGB as the networks and the smoothness term see it: 0,1 (as read) or -1,1 (the official
    # Normalize(0.5, 0.5)); edge_map (G_sem's edge channel) and the confidence map read [0, 1] either way.
    image_range: Tuple[float, float] = (0.0, 1.0)
    # Style translation (desc_train.translation, the official stage 1 after T2Net): stage a also trains
    # S2T, the source -> target translator, against a discriminator, and G_rgb learns from translated
    # source images; from then on S2T is frozen and still translates every source image for G_rgb.
    translation: bool = False
    translation_width: int = 8  # base width of S2T and of its discriminator (the official 64)
    translation_lr: float = 5e-4  # Adam for S2T and its discriminator (the official lr_trans: 5e-5 over 207,600 steps)
    translation_betas: Tuple[float, float] = (0.5, 0.9)
    identity_weight: float = 100.0  # mean |S2T(target) - target| (the official lambda_IDT)
    gan_weight: float = 1.0  # S2T's least-squares GAN term (the official lambda_GAN)
    pool_size: int = 20  # past translations the discriminator draws from (0: none)
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
    reuse_stages: bool = False  # also take out='s checkpoints made under other settings or data (README, "Training")


# ---------------------------------------------------------------- what each setting may be
# Metres: DESC's depth cap, as its official code and the KITTI protocol (Eigen et al.): the
# networks' output range, the evaluation's cap, the default clamp of converted depth.
MAX_DEPTH = 80.0
MAX_SIDE = 16384  # pixels of an image side: beyond, a size is a typo, not a frame
# Trainer.frames seeds torch's (unsigned 64-bit) generator with (seed * 7919 + salt) * 1,000,003:
# larger seeds overflow it.
MAX_SEED = 2 ** 31 - 1
# The generator's target_test scenes start 100,000 after target_train's (generate.DEFAULT_SPLITS):
# more target_train frames would train on the test scenes.
MAX_TARGET_TRAIN = 100_000
BENCHMARK_SPLITS = ("source_train", "target_train", "target_test")

POSITIVE = Bounds(1)
WEIGHT = Bounds(0, integer=False)
NUMBERS: Dict[str, Bounds] = {
    "width": POSITIVE, "batch_size": POSITIVE, "iters_source": POSITIVE, "iters_sem": POSITIVE,
    "iters_joint": POSITIVE, "log_every": POSITIVE, "checkpoint_every": POSITIVE,
    "lr": Bounds(0, integer=False, open_lo=True),
    "supervised_weight": WEIGHT, "consistency_weight": WEIGHT, "instance_weight": WEIGHT, "smoothness_weight": WEIGHT,
    "stereo_weight": WEIGHT,
    "height_weight": WEIGHT, "identity_weight": WEIGHT, "gan_weight": WEIGHT, "translation_width": POSITIVE,
    "translation_lr": Bounds(0, integer=False, open_lo=True), "pool_size": Bounds(0),
    "edge_weight": WEIGHT,
    "boundary_weight": Bounds(0, 1, integer=False, why=" (a boundary pixel's weight is 1 minus it)"),
    "consistency_scales": Bounds(1, 4, why=" (the U-Nets' output scales)"),
    "max_instances": Bounds(1, 65535, why=" (instance maps are 16-bit)"),
    "min_instance_rows": Bounds(0),
    "seed": Bounds(0, MAX_SEED),
}
CHOICES: Dict[str, Tuple[str, ...]] = {"smoothness_full_scale": ("finest", "coarsest"),
                                       "prior_scale": ("fixed", "learned")}
# (lo, hi) of the images the networks see: as read, or normalised with mean 0.5 and std 0.5.
IMAGE_RANGES = ((0.0, 1.0), (-1.0, 1.0))
RANGE_END = Bounds(-1, 1, integer=False)
BETA = Bounds(0, 1, integer=False, open_hi=True)
SIDE = Bounds(16, MAX_SIDE)
FOLDERS = ("source_split", "target_split", "test_split")  # folder names under `data`
PATHS = ("data", "out")
# confidence=: what the consistency's per-pixel weight reads; true and false, its former boolean
# values, stand for labels and none.
CONFIDENCE = ("none", "labels", "logits")
CONFIDENCE_ALIASES = {True: "labels", False: "none"}
BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


class _Refused(ValueError):
    """A value a setting does not take; the message says what it takes and what it got."""


def _number(name: str, value):
    bounds = NUMBERS[name]
    if value not in bounds:
        raise _Refused(bounds.refusal(value))
    return value if bounds.integer else float(value)


def _boolean(value):
    if not isinstance(value, bool):
        raise _Refused(f"expected a boolean, got {shown(value)} (true, false, yes, no, on, off, 1 or 0)")
    return value


def _confidence(value):
    if isinstance(value, bool):
        return CONFIDENCE_ALIASES[value]
    if isinstance(value, str) and value.strip().lower() in CONFIDENCE:
        return value.strip().lower()
    raise _Refused(f"expected one of {', '.join(CONFIDENCE)} (or true for labels, false for none), got {shown(value)}")


def _size(value):
    if not isinstance(value, (list, tuple)) or len(value) != 2 or \
            not all(side in SIDE and side % 16 == 0 for side in value):
        raise _Refused(f"expected HxW, multiples of 16 from 16 to {MAX_SIDE} (the networks' input), "
                       f"got {shown(value)}")
    return tuple(value)


def _betas(value):
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(b in BETA for b in value):
        raise _Refused(f"expected two numbers in [0, 1) (Adam's beta1, beta2), got {shown(value)}")
    return tuple(float(b) for b in value)


def _choice(name: str, value):
    if value not in CHOICES[name]:
        raise _Refused(f"expected {' or '.join(CHOICES[name])}, got {shown(value)}")
    return value


def _image_range(value):
    if isinstance(value, (list, tuple)) and len(value) == 2 and \
            all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) and \
            tuple(float(v) for v in value) in IMAGE_RANGES:
        return tuple(float(v) for v in value)
    raise _Refused(f"expected 0,1 (RGB as read) or -1,1 (normalised with mean and std 0.5, as the official "
                   f"code), got {shown(value)}")


def _counts(value):
    if not isinstance(value, dict) or not value:
        raise _Refused(f"expected split:count pairs, e.g. source_train:400,target_test:100, got {shown(value)}")
    for split, count in value.items():
        if split not in BENCHMARK_SPLITS:
            raise _Refused(f"expected splits among {', '.join(BENCHMARK_SPLITS)}, got {shown(split)}")
        top = MAX_TARGET_TRAIN if split == "target_train" else None
        bounds = Bounds(1, top, why=" (more would repeat target_test's scenes)" if top else "")
        if count not in bounds:
            raise _Refused(f"{split}: {bounds.refusal(count)}")
    return dict(value)


def is_folder_name(value) -> bool:
    """Whether `value` names a folder right inside the one it is joined to: no
    separator, '.' or '..' (nothing that could lead outside it, or to the folder itself)."""
    return isinstance(value, str) and value.strip() != "" and value not in (".", "..") and "\0" not in value \
        and not any(sep in value for sep in {"/", os.sep, os.altsep or "/"}) and not os.path.splitdrive(value)[0]


FOLDER_NAME = "a plain folder name (without '/', and not '.' or '..')"


def _folder(value):
    if not is_folder_name(value):
        raise _Refused(f"expected {FOLDER_NAME}, got {shown(value)}")
    return value


def _path(value):
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise _Refused(f"expected a path, got {shown(value)}")
    return value


def device_name(value) -> bool:
    """Whether `value` names a device desc_train runs on: cpu, cuda or cuda:N."""
    return isinstance(value, str) and re.fullmatch(r"cpu|cuda(:[0-9]{1,4})?", value) is not None


def _device(value):
    if not device_name(value):
        raise _Refused(f"expected cpu, cuda or cuda:N, got {shown(value)}")
    return value


RULES = {**{name: functools.partial(_number, name) for name in NUMBERS},
         **{name: functools.partial(_choice, name) for name in CHOICES},
         **{name: _folder for name in FOLDERS}, **{name: _path for name in PATHS},
         **{name: _boolean for name in ("target_bn_stats", "amp", "sync_bn", "reuse_stages",
                                        "translation")},
         "confidence": _confidence, "size": _size, "betas": _betas, "translation_betas": _betas, "image_range": _image_range,
         "counts": _counts, "device": _device}
assert set(RULES) == {f.name for f in dataclasses.fields(Config)}, "every setting needs a rule"


def check_setting(name: str, value):
    """`value` as setting `name` holds it (tuples for lists, floats for numbers), or
    ConfigError naming the setting, what it takes and the value."""
    try:
        return RULES[name](value)
    except _Refused as err:
        raise ConfigError(f"setting {name}: {err}") from None


def _parse(text: str, name: str, current):
    """A ``key=value`` override's text as the kind of value setting `name` holds
    (counts: `current` with the named splits changed); text that is none of that
    kind is returned as it is, for check_setting to refuse naming it."""
    if name in NUMBERS:
        value = NUMBERS[name].parse(text)
        return text if value is None else value
    if RULES[name] in (_boolean, _confidence):
        return BOOLEANS.get(text.strip().lower(), text)
    if name in ("size", "betas", "translation_betas"):
        parts = [(SIDE if name == "size" else BETA).parse(p) for p in text.lower().replace("x", ",").split(",")]
        return text if None in parts else tuple(parts)
    if name == "image_range":
        parts = [RANGE_END.parse(p) for p in text.split(",")]
        return text if None in parts else tuple(parts)
    if name in CHOICES:
        return text.strip()
    if name == "counts":
        out = dict(current)
        for item in text.split(","):
            split, _, count = item.partition(":")
            out[split.strip()] = POSITIVE.parse(count)
            if out[split.strip()] is None:
                return text
        return out
    return text


# The official implementation's settings, each beside its file and line in alopezgit/DESC in
# docs/paper-settings.md, with every deviation and its reason (tests/test_paper_settings.py
# holds the two together). Its losses live in tanh space (1 unit = 40 m): lambda 50
# supervised, 1 consistency, 1 instance prior and 0.01 smoothness become these weights per
# metre. Width 88 gives DepthUNet 54.7 M parameters, the official UNetGenerator's 54.6 M.
PRESETS: Dict[str, Dict] = {
    "paper": dict(size=(192, 640), width=88, batch_size=2, lr=1e-4, betas=(0.95, 0.999), iters_source=207_600,
                  iters_sem=51_900, iters_joint=20_000, supervised_weight=50.0 / 40.0,
                  consistency_weight=1.0 / 40.0, consistency_scales=1, instance_weight=1.0 / 40.0,
                  smoothness_weight=0.01 / 40.0, smoothness_full_scale="coarsest", height_weight=50.0,
                  confidence="none", prior_scale="learned", image_range=(-1.0, 1.0), target_bn_stats=True,
                  min_instance_rows=1, translation=True, translation_width=64, translation_lr=5e-5,
                  translation_betas=(0.5, 0.9), identity_weight=100.0, gan_weight=1.0, pool_size=20, seed=0,
                  device="cuda", data="data/vkitti2kitti", out="runs/paper", log_every=100,
                  checkpoint_every=1000),
}
# DESC + stereo (the paper's second model): the paper's settings and the stereo term (docs/paper-settings.md).
PRESETS["paper-stereo"] = dict(PRESETS["paper"], stereo_weight=50.0, out="runs/paper-stereo")


def load_config(path: Optional[str] = None, overrides: Sequence[str] = (), preset: Optional[str] = None) -> Config:
    """Defaults (or those of a preset of PRESETS), then the TOML file at `path`,
    then `key=value` overrides; each value checked as it comes (check_setting), so
    that a mistake is refused naming the setting, the value and what it takes."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    cfg = dataclasses.replace(Config(), **PRESETS[preset]) if preset else Config()
    names = {f.name for f in dataclasses.fields(Config)}
    if path:
        raw = _read_toml(path)
        unknown = set(raw) - names
        if unknown:
            raise ConfigError(f"{path}: unknown settings {sorted(unknown)}")
        for k, v in raw.items():
            try:
                setattr(cfg, k, check_setting(k, v))
            except ConfigError as err:
                raise ConfigError(f"{path}: {err}") from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override must be key=value, got {shown(item)}")
        k, v = item.split("=", 1)
        if k not in names:
            raise ConfigError(f"unknown setting {shown(k)}; known: {', '.join(sorted(names))}")
        setattr(cfg, k, check_setting(k, _parse(v, k, getattr(cfg, k))))
    return cfg


def _read_toml(path: str) -> Dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:  # TOML is UTF-8 text
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror or err}") from None


def as_dict(cfg: Config) -> Dict:
    return dataclasses.asdict(cfg)


__all__: List[str] = ["Config", "ConfigError", "PRESETS", "load_config", "as_dict"]
