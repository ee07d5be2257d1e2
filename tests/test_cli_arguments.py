"""desc-train's argument parsing, from one table of every argument of every command
(its default, choices, whether it is required): the parser declares what the
table says, each default and each choice reaches the function that runs the
command, other values are refused, and a required argument left out is named
(the runners are replaced, nothing runs)."""
import argparse
import importlib

import pytest

from desc_train import cli
from desc_train.data import coco
from desc_train.data.prepare import COMMANDS

THINGS = tuple(range(coco.NUM_THINGS))  # --instance-classes all
ARGUMENTS = [  # command, argument, default (parsed, as the runner gets it), choices, required
    # generate
    ('generate', '--out', None, None, True),
    ('generate', '--source', 2000, None, False),
    ('generate', '--target', 2000, None, False),
    ('generate', '--test', 200, None, False),
    ('generate', '--size', (96, 320), None, False),
    ('generate', '--seed', 0, None, False),
    ('generate', '--workers', None, None, False),
    ('generate', '--sheet', None, None, False),
    ('generate', '--logits', False, None, False),
    ('generate', '--stereo', False, None, False),
    # sheet
    ('sheet', 'splits', None, None, True),
    ('sheet', '--out', None, None, True),
    ('sheet', '--rows', 4, None, False),
    # demo
    ('demo', '--quick', False, None, False),
    ('demo', '--seeds', [0, 1, 2], None, False),
    ('demo', '--config', None, None, False),
    ('demo', '--workers', None, None, False),
    ('demo', '--set', [], None, False),
    # study confidence
    ('study confidence', '--seeds', [0, 1, 2, 3, 4, 5], None, False),
    ('study confidence', '--out', None, None, False),
    ('study confidence', '--data', None, None, False),
    ('study confidence', '--quick', False, None, False),
    ('study confidence', '--workers', None, None, False),
    ('study confidence', '--set', [], None, False),
    # train
    ('train', '--config', None, None, False),
    ('train', '--preset', None, ['paper', 'paper-stereo'], False),
    ('train', '--set', [], None, False),
    # evaluate
    ('evaluate', 'checkpoint', None, None, True),
    ('evaluate', 'split', None, None, True),
    ('evaluate', '--median-scaling', False, None, False),
    ('evaluate', '--cap', None, None, False),
    ('evaluate', '--crop', 'auto', ['auto', 'none', 'garg', 'cityscapes'], False),
    ('evaluate', '--json', None, None, False),
    ('evaluate', '--device', 'cpu', None, False),
    # prepare vkitti
    ('prepare vkitti', '--root', None, None, True),
    ('prepare vkitti', '--out', None, None, True),
    ('prepare vkitti', '--split', None, None, True),
    ('prepare vkitti', '--size', (192, 640), None, False),
    ('prepare vkitti', '--workers', None, None, False),
    ('prepare vkitti', '--limit', None, None, False),
    ('prepare vkitti', '--overwrite', False, None, False),
    ('prepare vkitti', '--version', 'auto', ['auto', '1.3.1', '2.0.3'], False),
    ('prepare vkitti', '--list', None, None, False),
    ('prepare vkitti', '--exclude-list', None, None, False),
    ('prepare vkitti', '--worlds', None, None, False),
    ('prepare vkitti', '--variations', None, None, False),
    ('prepare vkitti', '--camera', 0, None, False),
    ('prepare vkitti', '--max-depth', 80.0, None, False),
    ('prepare vkitti', '--sky', 'clamp', ['clamp', 'ignore'], False),
    ('prepare vkitti', '--labels', 'none', ['none', 'gt'], False),
    ('prepare vkitti', '--focal', None, None, False),
    ('prepare vkitti', '--allow-size', False, None, False),
    # prepare kitti
    ('prepare kitti', '--root', None, None, True),
    ('prepare kitti', '--out', None, None, True),
    ('prepare kitti', '--split', None, None, True),
    ('prepare kitti', '--size', (192, 640), None, False),
    ('prepare kitti', '--workers', None, None, False),
    ('prepare kitti', '--limit', None, None, False),
    ('prepare kitti', '--overwrite', False, None, False),
    ('prepare kitti', '--list', None, None, True),
    ('prepare kitti', '--list-format', 'auto', ['auto', 'monodepth2', 'desc', 't2net'], False),
    ('prepare kitti', '--side', 'l', ['l', 'r', 'lr'], False),
    ('prepare kitti', '--ext', 'auto', ['auto', 'png', 'jpg'], False),
    ('prepare kitti', '--gt', None, ['none', 'npz', 'velodyne', 'annotated'], False),
    ('prepare kitti', '--gt-npz', None, None, False),
    ('prepare kitti', '--gt-depth', 'velodyne_x', ['velodyne_x', 'camera_z'], False),
    ('prepare kitti', '--annotated-root', None, None, False),
    ('prepare kitti', '--stereo', False, None, False),
    # prepare cityscapes
    ('prepare cityscapes', '--root', None, None, True),
    ('prepare cityscapes', '--out', None, None, True),
    ('prepare cityscapes', '--split', None, None, True),
    ('prepare cityscapes', '--size', (192, 512), None, False),
    ('prepare cityscapes', '--workers', None, None, False),
    ('prepare cityscapes', '--limit', None, None, False),
    ('prepare cityscapes', '--overwrite', False, None, False),
    ('prepare cityscapes', '--subset', None, None, True),
    ('prepare cityscapes', '--gt', 'none', ['none', 'disparity'], False),
    ('prepare cityscapes', '--labels', 'none', ['none', 'gt'], False),
    ('prepare cityscapes', '--crop-bottom', 0.25, None, False),
    ('prepare cityscapes', '--stereo', False, None, False),
    # prepare panoptic
    ('prepare panoptic', '--predictions', None, None, True),
    ('prepare panoptic', '--format', None, ['coco', 'detectron2'], True),
    ('prepare panoptic', '--out', None, None, True),
    ('prepare panoptic', '--split', None, None, True),
    ('prepare panoptic', '--score-thresh', 0.8, None, False),
    ('prepare panoptic', '--instance-classes', THINGS, None, False),
    ('prepare panoptic', '--max-instances', 32, None, False),
    ('prepare panoptic', '--overwrite', False, None, False),
    ('prepare panoptic', '--match', 'name', ['name', 'src'], False),
    ('prepare panoptic', '--workers', None, None, False),
    # prepare segment
    ('prepare segment', '--out', None, None, True),
    ('prepare segment', '--split', None, None, True),
    ('prepare segment', '--score-thresh', 0.8, None, False),
    ('prepare segment', '--instance-classes', THINGS, None, False),
    ('prepare segment', '--max-instances', 32, None, False),
    ('prepare segment', '--overwrite', False, None, False),
    ('prepare segment', '--model', 'facebook/mask2former-swin-large-coco-panoptic', None, False),
    ('prepare segment', '--revision', None, None, False),
    ('prepare segment', '--size', None, None, False),
    ('prepare segment', '--device', None, None, False),
    ('prepare segment', '--dtype', 'float32', ['float32', 'bfloat16'], False),
    ('prepare segment', '--batch', 4, None, False),
    ('prepare segment', '--logits', False, None, False),
    ('prepare segment', '--limit', None, None, False),
    # prepare check
    ('prepare check', 'root', None, None, True),
    ('prepare check', '--frames', 64, None, False),
]
MINIMAL = {  # command -> argument -> what a line gives it when it must: the shortest line that runs
    "generate": {"--out": ["--out", "d"]},
    "sheet": {"splits": ["a", "b"], "--out": ["--out", "s.png"]},
    "demo": {},
    "study confidence": {},
    "train": {},
    "evaluate": {"checkpoint": ["c.pt"], "split": ["split"]},
    "prepare vkitti": {"--root": ["--root", "r"], "--out": ["--out", "o"], "--split": ["--split", "s"]},
    "prepare kitti": {"--root": ["--root", "r"], "--out": ["--out", "o"], "--split": ["--split", "s"],
                      "--list": ["--list", "l.txt"]},
    "prepare cityscapes": {"--root": ["--root", "r"], "--out": ["--out", "o"], "--split": ["--split", "s"],
                           "--subset": ["--subset", "val"]},
    "prepare panoptic": {"--predictions": ["--predictions", "p.json"], "--out": ["--out", "o"],
                         "--split": ["--split", "s"], "--format": ["--format", "coco"]},
    "prepare segment": {"--out": ["--out", "o"], "--split": ["--split", "s"]},
    "prepare check": {"root": ["root"]},
}
RUNNERS = {"generate": "_generate", "sheet": "_sheet", "demo": "_demo", "study confidence": "_study_confidence",
           "train": "_train", "evaluate": "_evaluate"}


def _row_id(row):
    return f"{row[0]} {row[1]}"


def _declared():
    """(command, argument) -> the parser's action, for every argument of every command."""
    found = {}

    def walk(parser, command):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{command} {name}".strip())
            elif not isinstance(action, argparse._HelpAction):
                found[(command, action.option_strings[0] if action.option_strings else action.dest)] = action

    walk(cli.build_parser(), "")
    return found


def _line(command, leave_out=None):
    """The shortest line of `command` without `leave_out`, and the arguments it
    leaves out: `leave_out`, and for a positional one those after it too (a later
    one would take its place)."""
    names = list(MINIMAL[command])
    out = []
    if leave_out in names:
        at = names.index(leave_out)
        out = [leave_out] + ([n for n in names[at + 1:] if not n.startswith("-")] if not leave_out.startswith("-")
                             else [])
    return command.split() + [t for n in names if n not in out for t in MINIMAL[command][n]], out


def _parsed(monkeypatch, argv):
    """The arguments the runner of `argv`'s command gets, and the command it is."""
    got = {}
    for command, runner in RUNNERS.items():
        monkeypatch.setattr(cli, runner, lambda args, command=command: got.setdefault(command, args) and 0)
    for command, (module, _) in COMMANDS.items():
        monkeypatch.setattr(importlib.import_module(f"desc_train.data.prepare.{module}"), "main",
                            lambda args, command=command: got.setdefault(f"prepare {command}", args) and 0)
    assert cli.main(list(argv)) == 0
    (command, args), = got.items()
    return command, args


def test_the_table_is_what_the_parser_declares():
    declared = _declared()
    assert [(c, a) for c, a, *_ in ARGUMENTS] == list(declared)
    for command, argument, _, choices, required in ARGUMENTS:
        action = declared[(command, argument)]
        assert (list(action.choices) if action.choices else None, action.required) == (choices, required), \
            (command, argument)


@pytest.mark.parametrize("row", [r for r in ARGUMENTS if not r[4]], ids=_row_id)
def test_each_default_reaches_the_runner(monkeypatch, row):
    command, argument, default, _, _ = row
    got, args = _parsed(monkeypatch, _line(command)[0])
    assert got == command and getattr(args, _declared()[(command, argument)].dest) == default


@pytest.mark.parametrize("row", [r for r in ARGUMENTS if r[3]], ids=_row_id)
def test_each_choice_is_taken_and_no_other(monkeypatch, capsys, row):
    command, argument, _, choices, _ = row
    dest = _declared()[(command, argument)].dest
    line = _line(command, argument)[0]  # a required one is given below
    for choice in choices:
        assert getattr(_parsed(monkeypatch, line + [argument, choice])[1], dest) == choice
    monkeypatch.undo()
    assert cli.main(line + [argument, "bogus"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"desc-train {command}: error: argument {argument}: invalid choice: 'bogus'") and \
        len(err.splitlines()) == 1, err


@pytest.mark.parametrize("row", [r for r in ARGUMENTS if r[4]], ids=_row_id)
def test_each_required_argument_left_out_is_named(capsys, row):
    command, argument = row[:2]
    line, missing = _line(command, argument)
    assert cli.main(line) == 1
    assert capsys.readouterr().err == \
        f"desc-train {command}: error: the following arguments are required: {', '.join(missing)}\n"


def test_help_still_exits_with_0(capsys):
    for argv in (["--help"], ["generate", "--help"], ["prepare", "kitti", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 0 and capsys.readouterr().out.startswith("usage: desc-train")


def test_named_values_reach_the_runner(monkeypatch):
    _, args = _parsed(monkeypatch, ("evaluate", "c.pt", "s", "--crop", "none", "--cap", "1,50", "--cap", "0.5,80",
                                    "--median-scaling", "--device", "cuda", "--json", "r.json"))
    assert (args.crop, args.cap, args.median_scaling, args.device, args.json) == \
        ("none", [(1.0, 50.0), (0.5, 80.0)], True, "cuda", "r.json")
    _, args = _parsed(monkeypatch, ("generate", "--out", "d", "--source", "3", "--target", "4", "--test", "5",
                                    "--seed", "6", "--workers", "2", "--size", "32x64", "--sheet", "s.png", "--logits",
                                    "--stereo"))
    assert (args.source, args.target, args.test, args.seed, args.workers, args.size, args.sheet, args.logits,
            args.stereo) == (3, 4, 5, 6, 2, (32, 64), "s.png", True, True)
    _, args = _parsed(monkeypatch, ("train", "--preset", "paper", "--set", "lr=1", "--set", "width=8"))
    assert (args.preset, args.overrides) == ("paper", ["lr=1", "width=8"])
