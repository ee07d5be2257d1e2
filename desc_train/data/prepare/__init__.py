"""``desc-train prepare``: converters from the real datasets (Virtual KITTI, KITTI
raw, Cityscapes, panoptic segmentations, a segmenter run here) into desc_train's
layout, and ``check`` of a prepared root. One module per command, each with
``add_arguments(parser)`` and ``main(args)``; what the converters share is in
``common``, what the two labellers (panoptic, segment) share in ``labels``."""
from __future__ import annotations

import argparse
import importlib

COMMANDS = {  # sub-command -> (module, help)
    "vkitti": ("vkitti", "Virtual KITTI 1.3.1 or 2.0.3 (source: RGB, depth, optional labels)"),
    "kitti": ("kitti", "KITTI raw frames of a list (target train, or test with ground truth)"),
    "cityscapes": ("cityscapes", "Cityscapes frames (target, optionally with disparity ground truth)"),
    "panoptic": ("panoptic", "semantic and instance maps of a prepared split from panoptic predictions"),
    "segment": ("segment", "semantic and instance maps of a prepared split from Mask2Former (transformers), "
                           "without Detectron2"),
    "check": ("check", "check a prepared root: sizes, focal lengths, classes, depth scale, ground truth"),
}


class _Defaults(argparse.HelpFormatter):
    """Appends an argument's default to its help, unless the help states it or there is none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or action.required:
            return text
        default = action.default if not isinstance(action.default, (tuple, list)) else \
            "x".join(map(str, action.default))
        return f"{text} (default: {default})"


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", help="convert a real dataset into desc_train's layout")
    datasets = p.add_subparsers(dest="dataset", required=True, parser_class=type(p))  # the command line's
    for command, (module, text) in COMMANDS.items():
        mod = importlib.import_module(f"{__name__}.{module}")
        q = datasets.add_parser(command, help=text, description=(mod.__doc__ or text).split("\n\n")[0],
                                formatter_class=_Defaults)
        mod.add_arguments(q)
        q.set_defaults(run=mod.main)
