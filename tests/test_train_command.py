"""`desc-train train`: the three stages on the splits a config names, resumable,
evaluated on the test split; classes, instance slots and the depth clamp taken
from the data; the paper preset."""
import dataclasses
import json
import os

import pytest
import torch

from desc_train.cli import main as cli
from desc_train.config import PRESETS, load_config
from desc_train.data import generate_benchmark
from desc_train.data.layout import DataError, read_meta, write_meta
from desc_train.train import Trainer

TINY = ["width=4", "batch_size=2", "iters_source=2", "iters_sem=2", "iters_joint=2", "log_every=1",
        "checkpoint_every=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bench"))
    generate_benchmark(root, {"source_train": 6, "target_train": 6, "target_test": 3}, seed=3, size=(32, 64),
                       workers=1, log=None)
    return root


def sets(*items):
    return [a for item in items for a in ("--set", item)]


def test_train_runs_the_stages_and_evaluates(data, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli(["train", *sets(*TINY, f"data={data}", f"out={out}")]) == 0
    for stage in ("source_only", "semantic", "joint"):
        assert torch.load(os.path.join(out, f"{stage}.pt"), weights_only=True)["done"]
    results = json.load(open(os.path.join(out, "results.json")))
    assert set(results) == {"median_scaling_off", "median_scaling_on"}
    assert results["median_scaling_on"]["protocol"]["median_scaling"] is True
    assert results["median_scaling_off"]["metrics"]["0.001-80m"]["abs_rel"] != \
        results["median_scaling_on"]["metrics"]["0.001-80m"]["abs_rel"]
    assert "median scaling on" in capsys.readouterr().out
    stages = [json.loads(line)["stage"] for line in open(os.path.join(out, "log.jsonl"))]
    assert stages == ["source_only"] * 2 + ["semantic"] * 2 + ["joint"] * 2
    # A second run finds every stage done: nothing trains, the results are the same.
    weights = torch.load(os.path.join(out, "joint.pt"), weights_only=True)["g_rgb"]
    assert cli(["train", *sets(*TINY, f"data={data}", f"out={out}")]) == 0
    assert json.load(open(os.path.join(out, "results.json"))) == results
    assert len(open(os.path.join(out, "log.jsonl")).readlines()) == 6
    again = torch.load(os.path.join(out, "joint.pt"), weights_only=True)["g_rgb"]
    assert all(torch.equal(weights[k], again[k]) for k in weights)


def test_train_resumes_an_interrupted_stage(data, tmp_path):
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    assert cli(["train", *sets(*TINY, f"data={data}", f"out={full}")]) == 0
    # Interrupted after the first joint step: the checkpoint of step 1 is what is left.
    assert cli(["train", *sets(*TINY, "iters_joint=1", f"data={data}", f"out={cut}")]) == 0
    state = torch.load(os.path.join(cut, "joint.pt"), weights_only=True)
    state["done"] = False
    torch.save(state, os.path.join(cut, "joint.pt"))
    assert cli(["train", *sets(*TINY, f"data={data}", f"out={cut}")]) == 0
    a = torch.load(os.path.join(full, "joint.pt"), weights_only=True)["g_rgb"]
    b = torch.load(os.path.join(cut, "joint.pt"), weights_only=True)["g_rgb"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_refuses_data_it_cannot_train_on(data, tmp_path, capsys):
    assert cli(["train", *sets(*TINY, f"data={tmp_path}", f"out={tmp_path / 'run'}")]) == 1
    assert "source_train: no prepared split" in capsys.readouterr().err
    root = str(tmp_path / "copy")
    generate_benchmark(root, {"source_train": 2, "target_train": 2}, seed=1, size=(32, 64), workers=1, log=None)
    cfg = load_config(None, [*TINY, f"data={root}", f"out={tmp_path / 'run'}"])
    target = os.path.join(root, "target_train")
    meta = read_meta(target)
    write_meta(target, dataclasses.replace(meta, has_labels=False))
    with pytest.raises(DataError, match="target_train: no semantic and instance maps yet.*prepare panoptic"):
        Trainer(cfg, cfg.out)
    write_meta(target, dataclasses.replace(meta, classes=meta.classes + ["extra"]))
    with pytest.raises(DataError, match="label different classes"):
        Trainer(cfg, cfg.out)
    write_meta(target, dataclasses.replace(meta, image_size=[30, 64]))
    with pytest.raises(DataError, match="target_train: frames of 30x64; the networks take multiples of 16"):
        Trainer(cfg, cfg.out)
    source = os.path.join(root, "source_train")
    write_meta(target, meta)
    write_meta(source, dataclasses.replace(read_meta(source), has_depth=False))
    with pytest.raises(DataError, match="source_train: the source split has no depth"):
        Trainer(cfg, cfg.out)


def test_classes_slots_and_depth_clamp_come_from_the_data(tmp_path):
    root = str(tmp_path / "data")
    generate_benchmark(root, {"source_train": 2, "target_train": 2}, seed=1, size=(32, 64), workers=1, log=None)
    for split in ("source_train", "target_train"):
        meta = read_meta(os.path.join(root, split))
        write_meta(os.path.join(root, split), dataclasses.replace(
            meta, classes=meta.classes + [f"c{i}" for i in range(12)], max_instances=40 if split == "target_train"
            else None, max_depth=10.0 if split == "source_train" else None))
    cfg = load_config(None, [*TINY, f"data={root}", f"out={tmp_path / 'run'}"])
    trainer = Trainer(cfg, cfg.out)
    assert trainer.num_classes == 20 and trainer.g_sem.enc[0][0].in_channels == 21
    assert trainer.K == 40 and trainer.target[0]["instance_class"].shape == (40,)
    src = trainer.batch(trainer.source, 1, 0)
    assert src["depth"].max() > 10  # the stored depth reaches beyond the stated max_depth ...
    assert torch.equal(trainer._depth(src), src["depth"].clamp(max=10.0))  # ... and is supervised at it


def test_paper_preset(data, tmp_path):
    cfg = load_config(None, [], preset="paper")
    assert (cfg.lr, cfg.betas, cfg.size, cfg.width, cfg.iters_joint, cfg.consistency_scales) == \
        (1e-4, (0.95, 0.999), (192, 640), 88, 20_000, 1)
    from desc_train.models import DepthUNet

    assert 54.0e6 < sum(p.numel() for p in DepthUNet(3, cfg.width).parameters()) < 55.5e6  # the official 54.6 M
    assert load_config(None, ["lr=0.001"], preset="paper").lr == 1e-3  # overrides win over the preset
    # Two steps of every stage under the preset on the CPU, at a width a test can afford
    # (the paper's three networks take about 10 s a joint step on 2 cores, and their
    # checkpoint with Adam's moments is 1.3 GB).
    out = str(tmp_path / "paper")
    assert cli(["train", "--preset", "paper", *sets("device=cpu", "width=8", "iters_source=2", "iters_sem=2",
                                                    "iters_joint=2", f"data={data}", f"out={out}")]) == 0
    saved = json.load(open(os.path.join(out, "config.json")))
    assert {k: saved[k] for k in ("lr", "batch_size", "consistency_scales", "confidence", "target_bn_stats")} == \
        {"lr": 1e-4, "batch_size": 2, "consistency_scales": 1, "confidence": "none", "target_bn_stats": True}
    assert torch.load(os.path.join(out, "joint.pt"), weights_only=True)["step"] == 2


def test_train_chains_the_stages_and_says_what_it_skips(tmp_path, monkeypatch):
    """Each stage starts from the checkpoint of the stage before it, with the
    caller's log; the log says that a test split without meta.json is not
    evaluated; a split folder without meta.json is no prepared split, named with
    the setting that points to it."""
    from desc_train.train import train_desc

    root = str(tmp_path / "data")
    generate_benchmark(root, {"source_train": 2, "target_train": 2}, seed=1, size=(32, 64), workers=1, log=None)
    os.makedirs(os.path.join(root, "target_test"))  # a folder, but no prepared split
    calls, lines, logs = [], [], []
    monkeypatch.setattr(Trainer, "run_stage", lambda self, stage, steps, start_from=None, kind=None:
                        calls.append((stage, steps, start_from, kind)) or logs.append(self.log) or 0)
    cfg = load_config(None, [*TINY, "iters_sem=3", f"data={root}", f"out={tmp_path / 'run'}"])
    assert train_desc(cfg, log=lines.append) is None
    run = str(tmp_path / "run")
    assert calls == [("source_only", 2, None, "source_only"),
                     ("semantic", 3, os.path.join(run, "source_only.pt"), "semantic"),
                     ("joint", 2, os.path.join(run, "semantic.pt"), "joint")]
    assert logs == [lines.append] * 3  # the trainer's own lines go to the caller's log
    assert lines[-1] == f"no test split at {os.path.join(root, 'target_test')}: trained, not evaluated"
    for split, setting in (("target_train", "target_split="), ("source_train", "source_split=")):
        os.remove(os.path.join(root, split, "meta.json"))  # the folder stays
        with pytest.raises(DataError) as err:
            train_desc(cfg, log=lines.append)
        assert str(err.value).startswith(f"{os.path.join(root, split)}: no prepared split (no meta.json); ")
        assert str(err.value).endswith(f"or set data= and {setting}")


def test_train_reads_its_config_file(data, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("colour = 1\n")
    out = str(tmp_path / "run")
    assert cli(["train", "--config", str(config), *sets(*TINY, f"data={data}", f"out={out}")]) == 1
    assert "unknown settings" in capsys.readouterr().err and not os.path.exists(out)
