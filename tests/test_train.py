"""desc_train stages: the quick demo end to end, exact resumption, and a
non-finite loss stopping the run with the term's name."""
import dataclasses
import json
import os

import pytest
import torch

from desc_train.cli import main as cli_main
from desc_train.config import Config, load_config
from desc_train.demo import ensure_data, quick_config
from desc_train.train import Trainer


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("quick")
    cfg = dataclasses.replace(quick_config(Config()), data=str(root / "data"), out=str(root / "run"))
    ensure_data(cfg, log=lambda *_: None)
    return cfg


def test_quick_demo_end_to_end(quick, capsys):
    assert cli_main(["demo", "--quick", "--seeds", "0", "--set", f"data={quick.data}",
                     "--set", f"out={quick.out}"]) == 0
    record = json.load(open(os.path.join(quick.out, "results.json")))
    assert set(record["summary"]) == {"source-only", "DESC", "consistency only", "instance prior only",
                                      "unweighted consistency"}
    for row in record["summary"].values():
        assert all(v[0] == v[0] for v in row.values())  # no NaN
    assert os.path.exists(os.path.join(quick.out, "results.md"))
    assert os.path.exists(os.path.join(quick.out, "pictures_seed0.png"))
    logs = [json.loads(line) for line in open(os.path.join(quick.out, "seed0", "log.jsonl"))]
    assert {r["stage"] for r in logs} >= {"source_only", "source_only_long", "semantic", "joint"}
    assert any("consistency" in r and "instance_prior" in r for r in logs if r["stage"] == "joint")
    out = capsys.readouterr().out
    assert "| DESC |" in out
    # Everything is checkpointed: a second run trains nothing and gives the same table.
    assert cli_main(["demo", "--quick", "--seeds", "0", "--set", f"data={quick.data}",
                     "--set", f"out={quick.out}"]) == 0
    again = json.load(open(os.path.join(quick.out, "results.json")))
    assert again["summary"] == record["summary"]
    assert "done already" in capsys.readouterr().out


def test_resume_gives_the_same_weights(quick, tmp_path):
    cfg = dataclasses.replace(quick, checkpoint_every=2)
    straight = Trainer(cfg, str(tmp_path / "a"), log=lambda *_: None)
    straight.run_stage("source_only", 5)

    class Stop(Exception):
        pass

    interrupted = Trainer(cfg, str(tmp_path / "b"), log=lambda *_: None)
    original = interrupted.terms
    calls = {"n": 0}

    def failing_terms(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 4:  # dies during step 4, after the checkpoint of step 2... and 3 is lost
            raise Stop()
        return original(*args, **kw)

    interrupted.terms = failing_terms
    with pytest.raises(Stop):
        interrupted.run_stage("source_only", 5)
    resumed = Trainer(cfg, str(tmp_path / "b"), log=lambda *_: None)
    resumed.run_stage("source_only", 5)
    for (k, a), (_, b) in zip(straight.g_rgb.state_dict().items(), resumed.g_rgb.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), k


def test_non_finite_loss_names_the_term(quick, tmp_path):
    t = Trainer(quick, str(tmp_path), log=lambda *_: None)
    t.terms = lambda *a, **k: {"supervised_rgb": torch.tensor(1.0, requires_grad=True),
                               "instance_prior": torch.tensor(float("nan"), requires_grad=True)}
    with pytest.raises(FloatingPointError, match="instance_prior"):
        t.run_stage("source_only", 2)


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('lr = 0.001\nsize = [32, 64]\nconfidence = false\n')
    cfg = load_config(str(path), ["batch_size=3", "size=48x96"])
    assert (cfg.lr, cfg.batch_size, cfg.size, cfg.confidence) == (0.001, 3, (48, 96), False)
    with pytest.raises(ValueError, match="unknown setting"):
        load_config(None, ["nope=1"])
    with pytest.raises(ValueError, match="multiples of 16"):
        load_config(None, ["size=30x64"])
    (tmp_path / "bad.toml").write_text("colour = 1\n")
    with pytest.raises(ValueError, match="unknown settings"):
        load_config(str(tmp_path / "bad.toml"))


def test_tensorboard_gets_the_logged_scalars(quick, tmp_path, monkeypatch):
    import desc_train.train as train_mod

    written = []

    class FakeWriter:
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step):
            written.append((tag, value, step))

        def close(self):
            written.append("closed")

    monkeypatch.setattr(train_mod, "tensorboard_writer", FakeWriter)
    cfg = dataclasses.replace(quick, log_every=1)
    Trainer(cfg, str(tmp_path), log=lambda *_: None).run_stage("source_only", 2)
    tags = {w[0] for w in written if w != "closed"}
    assert {"source_only/loss", "source_only/supervised_rgb", "source_only/smoothness"} <= tags
    assert {w[2] for w in written if w != "closed"} == {1, 2} and written[-1] == "closed"


def test_plan_orders_every_stage_after_its_start(quick):
    from desc_train.demo import ROWS, plan

    jobs = plan(quick, [0, 5])
    seen = set()
    for job in jobs:
        assert job.after is None or (job.seed, job.after) in seen, job
        seen.add((job.seed, job.stage))
    assert len(seen) == len(jobs) == 14
    assert sorted(j.row for j in jobs if j.row and j.seed == 5) == sorted(ROWS)


def test_worker_processes_match_the_inline_run(quick, tmp_path):
    from desc_train.demo import run_demo

    quiet = lambda *_: None  # noqa: E731
    inline = run_demo(dataclasses.replace(quick, out=str(tmp_path / "one")), seeds=[3], workers=1, log=quiet)
    pooled = run_demo(dataclasses.replace(quick, out=str(tmp_path / "two")), seeds=[3], workers=2, log=quiet)
    for row, metrics in inline["summary"].items():
        for k, (mean, _) in metrics.items():
            assert pooled["summary"][row][k][0] == pytest.approx(mean, rel=1e-3, abs=1e-5), (row, k)


def test_existing_data_of_another_size_is_an_error(quick):
    cfg = dataclasses.replace(quick, size=(48, 96))
    with pytest.raises(ValueError, match="target_test|source_train|target_train"):
        ensure_data(cfg, log=lambda *_: None)


def test_consistency_at_a_coarse_scale_uses_labels_and_image_of_that_scale():
    import desc_ops
    from desc_train.train import consistency_at_scale

    g = torch.Generator().manual_seed(0)
    tgt = {"semantic": torch.randint(-1, 5, (2, 16, 32), generator=g), "image": torch.rand(2, 3, 16, 32, generator=g)}
    d, s = torch.rand(2, 1, 8, 16, generator=g) * 80, torch.rand(2, 1, 8, 16, generator=g) * 80
    expected = desc_ops.semantic_consistency_loss(d, s, tgt["semantic"][:, 1::2, 1::2].contiguous(),
                                                  image=torch.nn.functional.avg_pool2d(tgt["image"], 2))
    image = torch.nn.functional.avg_pool2d(tgt["image"], 2)
    assert torch.allclose(consistency_at_scale(d, s, tgt["semantic"], image, weighted=True), expected, rtol=1e-5)
    assert torch.allclose(consistency_at_scale(d, s, tgt["semantic"], image, weighted=False), (d - s).abs().mean(),
                          rtol=1e-5)


def test_demo_rejects_zero_workers(quick):
    from desc_train.demo import run_demo

    with pytest.raises(ValueError, match="workers"):
        run_demo(quick, seeds=[0], workers=0, log=lambda *_: None)


def test_consistency_scales_must_be_an_output_scale():
    assert load_config(None, ["consistency_scales=1"]).consistency_scales == 1
    with pytest.raises(ValueError, match="consistency_scales"):
        load_config(None, ["consistency_scales=5"])


def test_frozen_running_stats_keeps_statistics_but_not_gradients():
    from desc_train.train import frozen_running_stats

    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3))
    before = {k: v.clone() for k, v in net[1].state_dict().items() if "running" in k}
    x = torch.randn(4, 2, 5, 5) * 3 + 1
    with frozen_running_stats(net):
        y = net(x)
    for k, v in before.items():
        assert torch.equal(net[1].state_dict()[k], v), k
    assert net[1].momentum == 0.1  # restored
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)  # batch statistics used
    y.sum().backward()
    assert net[0].weight.grad is not None
    net(x)
    assert not torch.equal(net[1].running_mean, before["running_mean"])
