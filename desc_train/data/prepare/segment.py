"""Semantic and instance maps of a prepared split from Mask2Former, a panoptic segmenter that installs with
transformers (``pip install "desc-ops[segment]"``), instead of Detectron2.

Reads the split's ``rgb/``, resized (bilinear, or area when shrinking) to ``--size`` for the model, and labels
each frame in the 133 COCO panoptic classes with Mask2Former's own panoptic inference (``desc_train.data.
mask2former``): the mask logits are resized once, bilinearly, to the split's size, queries whose class
probability is not above ``--score-thresh`` make no segment (stuff or thing), and the segments become the maps
as ``prepare panoptic`` makes them (``labels``: the same instances, resume, ``--overwrite`` and report). The
model is any checkpoint whose ``config.id2label`` is our 133 classes in our order, by default
``facebook/mask2former-swin-large-coco-panoptic``; the images are normalised with the ImageNet mean and standard
deviation, as Mask2Former's COCO checkpoints were trained. ``--logits`` also writes each frame's certainty map
(layout.py, ``certainty/``) for the confidence map. meta.json's label_source records the model, its revision,
the transformers version, the input size and the thresholds.
"""
from __future__ import annotations

import argparse
import os
import re
from contextlib import nullcontext
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch

from ...config import device_name
from ...errors import UserError, shown
from .. import coco
from ..layout import DataError, SplitMeta, frame_path, read_rgb, write_certainty
from ..mask2former import MASK_THRESHOLD, OVERLAP_THRESHOLD, panoptic_inference, resize_masks, semantic_certainty
from .common import parse_positive, parse_size, resize_rgb
from .labels import ASPECT_TOLERANCE, Segment, Settings, add_label_arguments, label_split, open_split, write_labels

DEFAULT_MODEL = "facebook/mask2former-swin-large-coco-panoptic"
INSTALL = 'pip install "desc-ops[segment]" (or pip install "transformers>=4.57")'
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, on RGB in [0, 1]
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")  # a hub model's name, "org/name"; anything else is a path


def _device(text: str) -> str:
    if not device_name(text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {shown(text)}")
    return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_label_arguments(p, score_help="queries whose class probability is not above this make no segment, stuff "
                                      "or thing (Mask2Former's COCO setting, and DESC's score threshold)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="a Mask2Former COCO panoptic checkpoint: a hub name or a folder of save_pretrained's files")
    p.add_argument("--revision", default=None, help="branch, tag or commit of a hub model (default: its main)")
    p.add_argument("--size", type=parse_size, default="native",
                   help="HxW the model sees, multiples of 16 of the split's aspect ratio (DESC's detector saw "
                        "368x1232), or native: the split's own size")
    p.add_argument("--device", type=_device, default=None, help="cpu, cuda or cuda:N (default: cuda if there is one)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="bfloat16: the model runs under autocast (faster on GPUs; the fusion stays float32)")
    p.add_argument("--batch", type=parse_positive, default=4, help="frames per forward pass")
    p.add_argument("--logits", action="store_true",
                   help="also write certainty/NAME.npz, what the confidence map reads of the segmenter's scores")
    p.add_argument("--limit", type=parse_positive, default=None,
                   help="label the first N frames only, a trial: the split stays unlabelled, and a rerun without "
                        "--limit keeps them")


# ---------------------------------------------------------------- the model
def _causes(err: BaseException) -> str:
    """The messages of an exception and of those it was raised from."""
    texts, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        texts.append(str(err))
        err = err.__cause__ or err.__context__
    return " ".join(texts)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def import_transformers():
    """(transformers, Mask2FormerConfig, Mask2FormerForUniversalSegmentation), or UserError saying what to
    install: transformers missing, or a torchvision built for another torch, which transformers imports and
    which then fails with "operator torchvision::nms does not exist"."""
    try:
        import transformers
        from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
    except Exception as err:  # noqa: BLE001: what a broken install raises varies; anything else is re-raised
        if "torchvision" in _causes(err):
            raise UserError(f"transformers could not import Mask2Former because torchvision does not fit torch "
                            f"{torch.__version__} ({_first_line(err)}): pip uninstall torchvision (Mask2Former "
                            f"does not need it), or install the torchvision built for this torch") from None
        if isinstance(err, ImportError):
            raise UserError(f"needs transformers ({_first_line(err)}): {INSTALL}") from None
        raise
    return transformers, Mask2FormerConfig, Mask2FormerForUniversalSegmentation


def check_classes(id2label, model: str) -> None:
    """Refuses a checkpoint whose classes are not the 133 COCO panoptic classes in the layout's order, naming
    the first difference."""
    names = [id2label[i] for i in sorted(id2label)]
    if names == coco.CLASSES:
        return
    first = next(i for i in range(max(len(names), len(coco.CLASSES)))
                 if i >= len(names) or i >= len(coco.CLASSES) or names[i] != coco.CLASSES[i])
    if first < min(len(names), len(coco.CLASSES)):
        diff = f"class {first} is {names[first]!r} there, {coco.CLASSES[first]!r} in COCO panoptic"
    else:
        diff = f"it has {len(names)} classes, COCO panoptic {len(coco.CLASSES)}"
    raise UserError(f"--model {model}: not a COCO panoptic checkpoint ({diff}); only a checkpoint whose "
                    f"config.id2label is the 133 COCO panoptic classes in desc_train/data/coco.py's order can label "
                    f"a split, such as facebook/mask2former-swin-{{tiny,small,base,large}}-coco-panoptic")


def load_model(name: str, revision: Optional[str]):
    """(model in eval mode, the label_source fields of the model) of a hub name or a local folder; UserError
    naming --model when it cannot be found, read or used."""
    transformers, Config, Model = import_transformers()
    local = os.path.exists(name) or not HUB_ID.fullmatch(name)
    if local and not os.path.isfile(os.path.join(name, "config.json")):
        what = "no such folder" if not os.path.exists(name) else "holds no config.json" if os.path.isdir(name) \
            else "a file, not a folder"
        raise UserError(f"--model {name}: {what}; pass a folder of save_pretrained's files (config.json and the "
                        f"weights) or a hub name such as {DEFAULT_MODEL}")
    try:
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # its warning on another model type: refused below, in one line
        try:
            config = Config.from_pretrained(name, revision=revision)
        finally:
            transformers.logging.set_verbosity(verbosity)
        if config.model_type != "mask2former":
            raise UserError(f"--model {name}: a {config.model_type} checkpoint, not Mask2Former")
        check_classes(config.id2label, name)
        model = Model.from_pretrained(name, revision=revision, config=config)
    except OSError as err:  # unreadable files; not on the hub, or not in the cache when offline
        fix = ("it must hold save_pretrained's config.json and weights" if local else
               f"download it where there is network (hf download {name}"
               f"{f' --revision {revision}' if revision else ''}; it goes to the Hugging Face cache) or pass "
               f"--model FOLDER holding its config.json and weights")
        raise UserError(f"--model {name}: could not be loaded ({_first_line(err)}); {fix}") from None
    info = dict(model=os.path.abspath(name) if local else name, revision=revision,
                commit=None if local else getattr(config, "_commit_hash", None),
                transformers=transformers.__version__)
    return model.eval(), info


# ---------------------------------------------------------------- the frames
def model_size(size: Optional[Tuple[int, int]], split: Tuple[int, int]) -> Tuple[int, int]:
    """The size the model sees: --size (of the split's aspect ratio within 2 %), or the split's own."""
    if size is None:
        return split
    (h, w), (H, W) = size, split
    if abs((w / h) / (W / H) - 1) > ASPECT_TOLERANCE:
        raise UserError(f"--size {h}x{w}: aspect {w / h:.2f}, but the split's frames are {H}x{W} ({W / H:.2f}): "
                        f"the model would see them stretched; pass a size of their aspect ratio, or native")
    return size


def segment_frames(model, names: List[str], split_dir: str, meta: SplitMeta, settings: Settings,
                   size: Tuple[int, int], device: str, dtype: torch.dtype, batch: int,
                   logits: bool) -> Iterator[Optional[str]]:
    """Runs the model on `names` in batches and writes each frame's maps (and certainty); yields each frame's
    error message, or None."""
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    autocast = torch.autocast(torch.device(device).type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    for start in range(0, len(names), batch):
        images, ready = [], []
        for name in names[start:start + batch]:
            try:
                images.append(resize_rgb(read_rgb(split_dir, name, meta), size))
                ready.append(name)
            except DataError as err:
                yield str(err)
        if not ready:
            continue
        x = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float().div_(255)
        with torch.inference_mode(), autocast:
            out = model(pixel_values=(x - mean) / std)
        for i, name in enumerate(ready):
            class_logits = out.class_queries_logits[i].float()
            mask_logits = resize_masks(out.masks_queries_logits[i].float(), settings.size)
            seg, found = panoptic_inference(class_logits, mask_logits, num_things=coco.NUM_THINGS,
                                            score_thresh=settings.score_thresh)
            try:
                if logits:
                    prob, label = semantic_certainty(class_logits, mask_logits)
                    write_certainty(split_dir, name, prob.cpu().numpy(), label.cpu().numpy())
                segments = [Segment(s.id, s.label, s.label < coco.NUM_THINGS, s.score, False) for s in found]
                write_labels(split_dir, name, seg.cpu().numpy(), segments, settings,
                             where=frame_path(split_dir, "rgb", name))
            except DataError as err:
                yield str(err)
                continue
            yield None


def main(args) -> int:
    from ...cli import usable_device

    split_dir, meta, settings = open_split(args)
    size = model_size(args.size, settings.size)
    device = usable_device(args.device, "--device ") if args.device else \
        "cuda" if torch.cuda.is_available() else "cpu"
    model, info = load_model(args.model, args.revision)
    model.to(device)
    label_source = dict(kind="segment", **info, input_size=list(size), dtype=args.dtype,
                        score_thresh=args.score_thresh, overlap_thresh=OVERLAP_THRESHOLD, mask_thresh=MASK_THRESHOLD,
                        instance_classes=list(settings.instance_classes), max_instances=args.max_instances,
                        certainty=args.logits)
    dtype = getattr(torch, args.dtype)
    return label_split(split_dir, meta, settings, label_source, overwrite=args.overwrite, limit=args.limit,
                       label=lambda names: segment_frames(model, names, split_dir, meta, settings, size, device,
                                                          dtype, args.batch, args.logits),
                       source=f"with {info['model']} on {device}")
