"""desc-train's contract for mistakes (README, "Training"): every command answers a
user's mistake, the argument parser's included, with exit status 1 and one line
``desc-train <cmd>: error: <message>`` on stderr that names the argument or
setting, the value and what is allowed; never a traceback or a usage block.

The runners' work (generating, training, converting) is replaced by a function
that fails the test: a mistake must be refused before any work starts."""
import os
import subprocess
import sys

import pytest

from desc_train import cli
from desc_train.config import load_config
from desc_train.data.prepare import COMMANDS

NINES = "9" * 25  # beyond 64 bits
GEN = ["generate", "--out", "{tmp}/g", "--source", "0", "--target", "0", "--test", "0"]  # no frames, if it ran
EVAL = ["evaluate", "{tmp}/c.pt", "{tmp}/split"]
VKITTI = ["prepare", "vkitti", "--root", "{tmp}/vk", "--out", "{tmp}/out", "--split", "source_train"]
KITTI = ["prepare", "kitti", "--root", "{tmp}/raw", "--out", "{tmp}/out", "--split", "target_test", "--list",
         "{tmp}/test.txt"]
CITYSCAPES = ["prepare", "cityscapes", "--root", "{tmp}/cs", "--out", "{tmp}/out", "--split", "target",
              "--subset", "val"]
PANOPTIC = ["prepare", "panoptic", "--predictions", "{tmp}/p.json", "--out", "{tmp}/out", "--split",
            "target_train", "--format", "coco"]
SEGMENT = ["prepare", "segment", "--out", "{tmp}/out", "--split", "target_train"]
CHECK = ["prepare", "check", "{tmp}/out"]
TOML = {  # config files of the table, written under {tmp}
    "string_for_int.toml": 'batch_size = "4"\n',
    "bool_for_int.toml": "iters_sem = true\n",
    "float_for_int.toml": "width = 8.5\n",
    "infinite_lr.toml": "lr = inf\n",
    "size.toml": "size = [30, 64]\n",
    "counts.toml": "counts = {source_train = -5}\n",
    "betas.toml": "betas = [0.9, 1.5]\n",
    "device.toml": 'device = "gpu"\n',
    "huge.toml": "seed = 99999999999999999999\n",
    "split.toml": 'test_split = "../kitti/test"\n',
}

MISTAKES = [  # argv, a fragment of the one line
    # generate
    (["generate"], "the following arguments are required: --out"),
    (GEN + ["--source", "-1"], "argument --source: expected a non-negative integer, got '-1'"),
    (GEN + ["--test", "abc"], "argument --test: expected a non-negative integer, got 'abc'"),
    (GEN + ["--target", "100001"], "argument --target: expected an integer from 0 to 100000"),
    (GEN + ["--size", "0x320"], "argument --size: size must be at least 8x8, got '0x320'"),
    (GEN + ["--size", "96x"], "argument --size: size must look like 96x320, got '96x'"),
    (GEN + ["--seed", NINES], f"argument --seed: expected an integer from 0 to 2147483647, got '{NINES}'"),
    (GEN + ["--workers", "-2"], "argument --workers: expected an integer from 1 to 1024, got '-2'"),
    (GEN + ["--bogus"], "unrecognized arguments: --bogus"),
    # sheet
    (["sheet", "--out", "{tmp}/s.png"], "the following arguments are required: splits"),
    (["sheet", "{tmp}/split", "--out", "{tmp}/s.png", "--rows", "0"],
     "argument --rows: expected a positive integer, got '0'"),
    (["sheet", "{tmp}/split", "--out", "{tmp}/s.png", "--rows", NINES],
     "argument --rows: expected a positive integer that fits in 64 bits"),
    (["sheet", "{tmp}/split", "--out", "{tmp}/s.png", "--rows", "2.5"], "expected a positive integer, got '2.5'"),
    (["sheet", "{tmp}/nowhere", "--out", "{tmp}/s.png"], "nowhere"),
    # study confidence
    (["study", "confidence", "--seeds", "1,x"], "argument --seeds: expected comma-separated integers, got '1,x'"),
    (["study", "confidence", "--set", "confidence=maybe"], "setting confidence: expected one of none, labels, logits"),
    (["study", "confidence", "--quick", "--set", "edge_weight=-2"], "setting edge_weight: expected a finite number"),
    # demo
    (["demo", "--seeds", "-1"], "argument --seeds: expected seeds from 0 to 2147483647, got '-1'"),
    (["demo", "--seeds", "1,x"], "argument --seeds: expected comma-separated integers, got '1,x'"),
    (["demo", "--seeds", "2,2"], "argument --seeds: expected each seed once, got '2,2'"),
    (["demo", "--workers", "0"], "argument --workers: expected an integer from 1 to 1024, got '0'"),
    (["demo", "--set", "log_every=-1"], "setting log_every: expected a positive integer, got -1"),
    (["demo", "--quick", "--set", "consistency_weight=-1"],
     "setting consistency_weight: expected a finite number >= 0"),
    (["demo", "--config", "{tmp}/string_for_int.toml"],
     "string_for_int.toml: setting batch_size: expected a positive integer, got '4'"),
    # train: --set
    (["train", "--set", "batch_size=0"], "setting batch_size: expected a positive integer, got 0"),
    (["train", "--set", "width=abc"], "setting width: expected a positive integer, got 'abc'"),
    (["train", "--set", "iters_joint=1.5"], "setting iters_joint: expected a positive integer, got '1.5'"),
    (["train", "--set", "lr=nan"], "setting lr: expected a finite number > 0, got nan"),
    (["train", "--set", "lr=0"], "setting lr: expected a finite number > 0, got 0.0"),
    (["train", "--set", "smoothness_weight=-inf"], "setting smoothness_weight: expected a finite number >= 0"),
    (["train", "--set", "betas=0.9,1"], "setting betas: expected two numbers in [0, 1)"),
    (["train", "--set", "size=100x200"], "setting size: expected HxW, multiples of 16"),
    (["train", "--set", "size=-16x32"], "setting size: expected HxW, multiples of 16"),
    (["train", "--set", "image_range=0,255"],
     "setting image_range: expected 0,1 (RGB as read) or -1,1 (normalised with mean and std 0.5, as the official "
     "code), got (0.0, 255.0)"),
    (["train", "--set", "prior_scale=learnt"], "setting prior_scale: expected fixed or learned, got 'learnt'"),
    (["train", "--set", "smoothness_full_scale=middle"],
     "setting smoothness_full_scale: expected finest or coarsest, got 'middle'"),
    (["train", "--set", "pool_size=-1"], "setting pool_size: expected a non-negative integer, got -1"),
    (["train", "--set", "translation_betas=0.5"], "setting translation_betas: expected two numbers in [0, 1)"),
    (["train", "--set", "counts=source_train:0"], "setting counts: source_train: expected a positive integer, got 0"),
    (["train", "--set", "counts=target_train:100001"],
     "setting counts: target_train: expected an integer from 1 to 100000"),
    (["train", "--set", "consistency_scales=5"], "setting consistency_scales: expected an integer from 1 to 4"),
    (["train", "--set", "max_instances=70000"], "setting max_instances: expected an integer from 1 to 65535"),
    (["train", "--set", "seed=-1"], "setting seed: expected an integer from 0 to 2147483647, got -1"),
    (["train", "--set", f"checkpoint_every={NINES}"],
     "setting checkpoint_every: expected a positive integer that fits in 64 bits"),
    (["train", "--set", "amp=maybe"], "setting amp: expected a boolean, got 'maybe'"),
    (["train", "--set", "device=tpu"], "setting device: expected cpu, cuda or cuda:N, got 'tpu'"),
    (["train", "--set", "device=cuda"], "setting device=cuda: device 'cuda' is not available here"),
    (["train", "--set", "source_split=../x"], "setting source_split: expected a plain folder name"),
    (["train", "--set", "data="], "setting data: expected a path, got ''"),
    (["train", "--set", "colour=red"], "unknown setting 'colour'"),
    (["train", "--set", "lr"], "override must be key=value, got 'lr'"),
    (["train", "--preset", "fast"], "argument --preset: invalid choice: 'fast'"),
    # train: TOML
    (["train", "--config", "{tmp}/bool_for_int.toml"], "setting iters_sem: expected a positive integer, got True"),
    (["train", "--config", "{tmp}/float_for_int.toml"], "setting width: expected a positive integer, got 8.5"),
    (["train", "--config", "{tmp}/infinite_lr.toml"], "setting lr: expected a finite number > 0, got inf"),
    (["train", "--config", "{tmp}/size.toml"], "setting size: expected HxW, multiples of 16"),
    (["train", "--config", "{tmp}/counts.toml"], "setting counts: source_train: expected a positive integer, got -5"),
    (["train", "--config", "{tmp}/betas.toml"], "setting betas: expected two numbers in [0, 1)"),
    (["train", "--config", "{tmp}/device.toml"], "device.toml: setting device: expected cpu, cuda or cuda:N"),
    (["train", "--config", "{tmp}/huge.toml"], "setting seed: expected an integer from 0 to 2147483647"),
    (["train", "--config", "{tmp}/split.toml"], "setting test_split: expected a plain folder name"),
    (["train", "--config", "{tmp}/missing.toml"], "missing.toml: cannot read the config file"),
    # evaluate
    (["evaluate", "{tmp}/c.pt"], "the following arguments are required: split"),
    (EVAL + ["--cap", "5,1"], "argument --cap: cap must be finite metres with 0 <= min < max, got '5,1'"),
    (EVAL + ["--cap=-1,80"], "0 <= min < max, got '-1,80'"),  # "--cap -1,80" reads as an option
    (EVAL + ["--cap", "nan,80"], "0 <= min < max, got 'nan,80'"),
    (EVAL + ["--cap", "1,inf"], "0 <= min < max, got '1,inf'"),
    (EVAL + ["--cap", "80"], "argument --cap: cap must look like 0.001,80 (min,max metres), got '80'"),
    (EVAL + ["--cap", "1,50", "--cap", "1,50"], "--cap 1,50 is given twice"),
    (EVAL + ["--device", "tpu"], "argument --device: expected cpu, cuda or cuda:N, got 'tpu'"),
    (EVAL + ["--device", "cuda"], "--device cuda: device 'cuda' is not available here"),
    (EVAL + ["--device", "cuda:1"], "--device cuda:1: device 'cuda:1' is not available here"),
    (EVAL + ["--crop", "eigen"], "argument --crop: invalid choice: 'eigen'"),
    # prepare
    (["prepare"], "the following arguments are required: dataset"),
    (["prepare", "bogus"], "argument dataset: invalid choice: 'bogus'"),
    # prepare vkitti
    (VKITTI[:-2], "the following arguments are required: --split"),
    (VKITTI[:-1] + ["../x"],
     "argument --split: expected a plain folder name (without '/', and not '.' or '..'), got '../x'"),
    (VKITTI[:-1] + ["/tmp/x"], "argument --split: expected a plain folder name"),
    (VKITTI[:-1] + [".."], "argument --split: expected a plain folder name"),
    (VKITTI + ["--limit", "-1"], "argument --limit: expected a positive integer, got '-1'"),
    (VKITTI + ["--limit", "0"], "argument --limit: expected a positive integer, got '0'"),
    (VKITTI + ["--workers", "-1"], "argument --workers: expected an integer from 1 to 1024, got '-1'"),
    (VKITTI + ["--size", "100x100"], "argument --size: size must be multiples of 16"),
    (VKITTI + ["--max-depth", "nan"], "argument --max-depth: expected a finite number > 0, got 'nan'"),
    (VKITTI + ["--max-depth", "-80"], "argument --max-depth: expected a finite number > 0, got '-80'"),
    (VKITTI + ["--focal", "0"], "argument --focal: expected a finite number > 0, got '0'"),
    (VKITTI + ["--camera", "2"], "argument --camera: expected an integer from 0 to 1, got '2'"),
    # prepare kitti
    (KITTI[:-2], "the following arguments are required: --list"),
    (KITTI + ["--limit", "0"], "argument --limit: expected a positive integer, got '0'"),
    (KITTI + ["--limit", NINES], "argument --limit: expected a positive integer that fits in 64 bits"),
    (KITTI[:7] + ["a/../../b"] + KITTI[8:], "argument --split: expected a plain folder name"),
    (KITTI + ["--size", "0x0"], "argument --size: size must be multiples of 16"),
    (KITTI + ["--gt", "lidar"], "argument --gt: invalid choice: 'lidar'"),
    # prepare cityscapes
    (CITYSCAPES + ["--subset", "bogus"], "argument --subset: subsets are"),
    (CITYSCAPES + ["--crop-bottom", "1"],
     "argument --crop-bottom: --crop-bottom is a fraction of the height in [0, 1)"),
    (CITYSCAPES + ["--workers", NINES], "argument --workers: expected an integer from 1 to 1024"),
    (CITYSCAPES + ["--limit", "abc"], "argument --limit: expected a positive integer, got 'abc'"),
    (CITYSCAPES[:7] + ["."] + CITYSCAPES[8:], "argument --split: expected a plain folder name"),
    # prepare panoptic
    (PANOPTIC[:7] + ["../../etc"] + PANOPTIC[8:], "argument --split: expected a plain folder name"),
    (PANOPTIC + ["--score-thresh", "2"], "argument --score-thresh: a score threshold lies in [0, 1], got 2"),
    (PANOPTIC + ["--score-thresh", "abc"], "argument --score-thresh: a score threshold lies in [0, 1], got abc"),
    (PANOPTIC + ["--max-instances", "0"], "argument --max-instances: expected an integer in 1-65535"),
    (PANOPTIC + ["--workers", "0"], "argument --workers: expected an integer from 1 to 1024, got '0'"),
    (PANOPTIC[:-1] + ["json"], "argument --format: invalid choice: 'json'"),
    # prepare segment
    (["prepare", "segment", "--out", "{tmp}/out"], "the following arguments are required: --split"),
    (SEGMENT + ["--batch", "0"], "argument --batch: expected a positive integer, got '0'"),
    (SEGMENT + ["--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
    (SEGMENT + ["--device", "gpu"], "argument --device: expected cpu, cuda or cuda:N, got 'gpu'"),
    (SEGMENT + ["--size", "100x300"], "argument --size: size must be multiples of 16"),
    (SEGMENT + ["--score-thresh", "1.5"], "argument --score-thresh: a score threshold lies in [0, 1], got 1.5"),
    (SEGMENT + ["--limit", "0"], "argument --limit: expected a positive integer, got '0'"),
    (SEGMENT + ["--instance-classes", "road"], "argument --instance-classes: 'road' is not a thing class"),
    # prepare check
    (["prepare", "check"], "the following arguments are required: root"),
    (CHECK + ["--frames", "0"], "argument --frames: expected a positive integer, got '0'"),
    (CHECK + ["--frames", "-1"], "argument --frames: expected a positive integer, got '-1'"),
    (CHECK + ["--frames", "x"], "argument --frames: expected a positive integer, got 'x'"),
    (CHECK + ["--bogus"], "unrecognized arguments: --bogus"),
]


class Ran(Exception):
    """A command started its work although its arguments held a mistake."""


def _refuse_to_run(*args, **kwargs):
    raise Ran("the command ran")


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    """No runner's work can start, no GPU is there, and the working folder is a
    fresh one (the defaults' relative paths land there)."""
    import torch

    import desc_train.confidence_study
    import desc_train.data.generate
    import desc_train.demo
    import desc_train.train

    for module, name in ((desc_train.demo, "run_demo"), (desc_train.confidence_study, "run_study"),
                         (desc_train.train, "train_desc"), (desc_train.train, "load_g_rgb"), (desc_train.data.generate, "generate_benchmark")):
        monkeypatch.setattr(module, name, _refuse_to_run)
    for command, (module, _) in COMMANDS.items():
        monkeypatch.setattr(f"desc_train.data.prepare.{module}.main", _refuse_to_run)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for name, text in TOML.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def command_of(argv):
    """The command a line names: 'generate', 'prepare vkitti', 'prepare', 'study confidence'."""
    if argv[0] == "study" and argv[1:2] == ["confidence"]:
        return "study confidence"
    return " ".join(argv[:2]) if argv[0] == "prepare" and len(argv) > 1 and argv[1] in COMMANDS else argv[0]


def one_line(capsys):
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "usage:" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    return lines[0]


def mistake_id(argv) -> str:
    """'generate --source -1': the command and what the line adds to its table's
    base (GEN, EVAL...), paths under the test's folder without it."""
    base = next((b for b in (GEN, EVAL, VKITTI, KITTI, CITYSCAPES, PANOPTIC, SEGMENT, CHECK) if argv[:len(b)] == b), [])
    rest = argv[len(base):] if base else argv[len(command_of(argv).split()):]
    return " ".join([command_of(argv), *rest]).replace("{tmp}/", "")


@pytest.mark.parametrize("argv, fragment", MISTAKES, ids=[mistake_id(argv) for argv, _ in MISTAKES])
def test_each_mistake_gets_status_1_and_one_line(no_work, capsys, argv, fragment):
    argv = [a.format(tmp=no_work) for a in argv]
    assert cli.main(argv) == 1
    line = one_line(capsys)
    assert line.startswith(f"desc-train {command_of(argv)}: error: "), line
    assert fragment.format(tmp=no_work) in line, line


def test_every_command_has_mistakes_in_the_table():
    commands = {command_of(argv) for argv, _ in MISTAKES}
    assert commands == {"generate", "sheet", "demo", "train", "evaluate", "prepare", "study confidence"} | \
        {f"prepare {c}" for c in COMMANDS}
    for command in commands:
        assert sum(command_of(argv) == command for argv, _ in MISTAKES) >= 2, command


@pytest.mark.parametrize("argv, fragment", [([], "the following arguments are required: command"),
                                            (["bogus"], "argument command: invalid choice: 'bogus'")])
def test_a_line_without_a_command_is_refused_in_one_line_too(capsys, argv, fragment):
    assert cli.main(argv) == 1
    line = one_line(capsys)
    assert line.startswith("desc-train: error: ") and fragment in line


@pytest.mark.parametrize("argv", [["--help"], ["generate", "--help"], ["prepare", "--help"],
                                  ["prepare", "check", "--help"]])
def test_help_exits_with_0(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: desc-train")


def test_the_real_exit_status_is_1(tmp_path):
    run = subprocess.run([sys.executable, "-m", "desc_train", "prepare", "vkitti", "--root", str(tmp_path),
                          "--out", str(tmp_path), "--split", "../outside", "--limit", "-1"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr == ("desc-train prepare vkitti: error: argument --split: expected a plain folder name "
                          "(without '/', and not '.' or '..'), got '../outside'\n")
    assert not os.path.exists(tmp_path.parent / "outside")


# ---------------------------------------------------------------- the configuration alone
@pytest.mark.parametrize("item", ["batch_size=4", "lr=1e-4", "betas=0.9,0.99", "size=192x640", "device=cpu",
                                  "device=cuda:1", "seed=2147483647", "instance_weight=0", "min_instance_rows=0",
                                  "test_split=kitti_test", "counts=target_train:100000", "amp=yes", "image_range=-1,1",
                                  "prior_scale=learned", "smoothness_full_scale=coarsest", "pool_size=0",
                                  "translation=true", "translation_betas=0.5,0.9"])
def test_values_within_their_ranges_are_taken(item):
    load_config(None, [item])


def test_a_toml_file_takes_integers_for_floats_and_lists_for_pairs(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("lr = 1\nsize = [32, 64]\nbetas = [0, 0.5]\nsmoothness_weight = 0\n")
    cfg = load_config(str(path))
    assert (cfg.lr, cfg.size, cfg.betas, cfg.smoothness_weight) == (1.0, (32, 64), (0.0, 0.5), 0.0)
    assert isinstance(cfg.lr, float) and isinstance(cfg.betas[0], float)


def test_every_setting_is_checked():
    """Every field of Config has a rule, and the defaults and the presets pass their own checks."""
    import dataclasses

    from desc_train.config import PRESETS, RULES, Config, check_setting

    assert set(RULES) == {f.name for f in dataclasses.fields(Config)}
    for preset in [{}, *PRESETS.values()]:
        cfg = dataclasses.replace(Config(), **preset)
        for f in dataclasses.fields(Config):
            assert check_setting(f.name, getattr(cfg, f.name)) == getattr(cfg, f.name)
