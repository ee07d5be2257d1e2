"""desc-train's argument parsing: each command's defaults and required arguments
reach the function that runs it (the runners are replaced, nothing runs)."""
import pytest

from desc_train import cli

RUNNERS = {"generate": "_generate", "sheet": "_sheet", "demo": "_demo", "train": "_train", "evaluate": "_evaluate"}
DEFAULTS = {  # command line -> the parsed arguments the runner gets
    ("generate", "--out", "d"): dict(out="d", source=2000, target=2000, test=200, size=(96, 320), seed=0,
                                     workers=None, sheet=None, logits=False, stereo=False),
    ("sheet", "a", "b", "--out", "s.png"): dict(splits=["a", "b"], out="s.png", rows=4),
    ("demo",): dict(quick=False, seeds=[0, 1, 2], config=None, workers=None, overrides=[]),
    ("train",): dict(config=None, preset=None, overrides=[]),
    ("evaluate", "c.pt", "split"): dict(checkpoint="c.pt", split="split", median_scaling=False, cap=None,
                                        crop="auto", json=None, device="cpu"),
}


def _parsed(monkeypatch, argv):
    got = {}
    for command, runner in RUNNERS.items():
        monkeypatch.setattr(cli, runner, lambda args, command=command: got.setdefault(command, args) and 0)
    assert cli.main(list(argv)) == 0
    (command, args), = got.items()
    return command, args


@pytest.mark.parametrize("argv", list(DEFAULTS), ids=[argv[0] for argv in DEFAULTS])
def test_each_command_gets_its_defaults(monkeypatch, argv):
    command, args = _parsed(monkeypatch, argv)
    assert command == argv[0] == args.command
    assert {k: getattr(args, k) for k in DEFAULTS[argv]} == DEFAULTS[argv]


@pytest.mark.parametrize("argv, missing", [(("generate",), "--out"), (("sheet", "a"), "--out"),
                                           (("sheet", "--out", "s.png"), "splits"),
                                           (("evaluate", "c.pt"), "split")])
def test_required_arguments(capsys, argv, missing):
    assert cli.main(list(argv)) == 1
    assert capsys.readouterr().err == f"desc-train {argv[0]}: error: the following arguments are required: {missing}\n"


@pytest.mark.parametrize("argv", [("evaluate", "c.pt", "s", "--crop", "eigen"), ("train", "--preset", "fast")])
def test_choices(capsys, argv):
    assert cli.main(list(argv)) == 1
    assert capsys.readouterr().err.startswith(f"desc-train {argv[0]}: error: argument {argv[-2]}: invalid choice: ")


def test_help_still_exits_with_0(capsys):
    for argv in (["--help"], ["generate", "--help"], ["prepare", "kitti", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 0 and capsys.readouterr().out.startswith("usage: desc-train")


@pytest.mark.parametrize("crop", ["auto", "none", "garg", "cityscapes"])
def test_every_crop_may_be_named(monkeypatch, crop):
    assert _parsed(monkeypatch, ("evaluate", "c.pt", "s", "--crop", crop))[1].crop == crop


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
