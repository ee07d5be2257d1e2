"""desc_train stages: the quick demo end to end, exact resumption, a
non-finite loss stopping the run with the term's name, the ablations' switches,
the trainer's objective on both backends and its gradient to G_h (DESCLoss
itself: test_desc_loss.py), and the command line's answers to a user's mistakes."""
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

import desc_ops
from desc_train.cli import main as cli_main
from desc_train.config import Config, load_config
from desc_train.data.layout import DataError
from desc_train.demo import ensure_data, quick_config
from desc_train.train import CheckpointError, Trainer, read_checkpoint, sampled_frames


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("quick")
    cfg = dataclasses.replace(quick_config(Config()), data=str(root / "data"), out=str(root / "run"))
    ensure_data(cfg, log=lambda *_: None)
    return cfg


@pytest.fixture(scope="module")
def start(quick, tmp_path_factory):
    """A checkpoint of freshly initialised networks."""
    trainer = Trainer(quick, str(tmp_path_factory.mktemp("start")), log=lambda *_: None)
    trainer.save("start", 0, done=True)
    return trainer.checkpoint_path("start")


def test_quick_demo_end_to_end(quick, capsys):
    assert cli_main(["demo", "--quick", "--seeds", "0", "--set", f"data={quick.data}",
                     "--set", f"out={quick.out}"]) == 0
    record = json.load(open(os.path.join(quick.out, "results.json")))
    assert set(record["summary"]) == {"source-only", "DESC", "consistency only", "instance prior only",
                                      "DESC + stereo", "DESC + translation"}
    for row in record["summary"].values():
        assert all(v[0] == v[0] for v in row.values())  # no NaN
    assert os.path.exists(os.path.join(quick.out, "results.md"))
    assert os.path.exists(os.path.join(quick.out, "pictures_seed0.png"))
    logs = [json.loads(line) for line in open(os.path.join(quick.out, "seed0", "log.jsonl"))]
    assert {r["stage"] for r in logs} >= {"source_only", "source_only_long", "semantic", "joint",
                                         "source_only_translation", "joint_translation"}
    assert any("consistency" in r and "instance_prior" in r for r in logs if r["stage"] == "joint")
    out = capsys.readouterr().out
    assert "| DESC |" in out
    # Each ablation changes the training: no row's metrics are another row's.
    rows = {row: runs[0] for row, runs in record["per_seed"].items()}
    for i, a in enumerate(sorted(rows)):
        for b in sorted(rows)[i + 1:]:
            assert rows[a] != rows[b], (a, b)
    # Everything is checkpointed: a second run trains nothing and gives the same table.
    assert cli_main(["demo", "--quick", "--seeds", "0", "--set", f"data={quick.data}",
                     "--set", f"out={quick.out}"]) == 0
    again = json.load(open(os.path.join(quick.out, "results.json")))
    assert again["summary"] == record["summary"]
    assert "done already" in capsys.readouterr().out


def _state(trainer):
    """Every tensor a run leaves behind: the three networks (running statistics
    included) and Adam's moments and step counts."""
    out = {f"{name}.{k}": v for name in ("g_rgb", "g_sem", "g_h")
           for k, v in getattr(trainer, name).state_dict().items()}
    for i, s in trainer.opt.state_dict()["state"].items():
        out.update({f"opt.{i}.{k}": v for k, v in s.items()})
    return out


def test_resume_continues_where_the_interrupted_run_stopped(quick, tmp_path):
    """A stage killed part-way and run again ends bitwise where an uninterrupted
    run does, training only the steps after its last checkpoint; the resumed
    trainer starts from other weights, so a run that ignored its checkpoint (or
    its optimizer state) would end elsewhere."""
    cfg = dataclasses.replace(quick, checkpoint_every=2)
    quiet = lambda *_: None  # noqa: E731
    straight = Trainer(cfg, str(tmp_path / "a"), log=quiet)
    assert straight.run_stage("source_only", 5) == 5

    class Stop(Exception):
        pass

    interrupted = Trainer(cfg, str(tmp_path / "b"), log=quiet)
    original = interrupted.terms
    calls = {"n": 0}

    def failing_terms(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 4:  # dies during step 4, after the checkpoint of step 2: step 3 is lost
            raise Stop()
        return original(*args, **kw)

    interrupted.terms = failing_terms
    with pytest.raises(Stop):
        interrupted.run_stage("source_only", 5)
    assert torch.load(interrupted.checkpoint_path("source_only"), weights_only=True)["step"] == 2

    steps = []
    resumed = Trainer(cfg, str(tmp_path / "b"), log=quiet, on_step=lambda stage, step, loss: steps.append(step))
    with torch.no_grad():  # what a restart from scratch would train from: not the checkpoint's weights
        for p in resumed.opt.param_groups[0]["params"]:
            p.add_(0.5)
    trained = resumed.run_stage("source_only", 5)
    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys() and len(a) > 3
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert trained == 3 and steps == [3, 4, 5]
    assert Trainer(cfg, str(tmp_path / "b"), log=quiet).run_stage("source_only", 5) == 0  # done already

    # The check can fail: from the moved weights, the same five steps end elsewhere.
    restarted = Trainer(cfg, str(tmp_path / "c"), log=quiet)
    with torch.no_grad():
        for p in restarted.opt.param_groups[0]["params"]:
            p.add_(0.5)
    restarted.run_stage("source_only", 5)
    assert not torch.equal(_state(restarted)["g_rgb.heads.0.weight"], a["g_rgb.heads.0.weight"])


def test_ablation_rows_switch_their_joint_terms(quick, start, tmp_path):
    """One joint step's terms from one checkpoint under the settings of each
    row of the demo: the row's term is off, or (DESC + stereo) the stereo term
    is on; the other terms are unchanged."""
    from desc_train.demo import VARIANTS

    terms = {}
    for row, (stage, settings) in VARIANTS.items():
        trainer = Trainer(dataclasses.replace(quick, **settings), str(tmp_path / stage), log=lambda *_: None)
        trainer.load(start, optimizer=False)
        src, tgt = trainer.batch(trainer.source, 1, 0), trainer.batch(trainer.target, 2, 0)
        with torch.no_grad():
            terms[row] = {k: v.item() for k, v in trainer.terms("joint", src, tgt).items()}
    desc = terms["DESC"]
    assert {"consistency", "instance_prior"} <= desc.keys() and desc["consistency"] > 0 and desc["instance_prior"] > 0
    assert "instance_prior" not in terms["consistency only"]
    assert "consistency" not in terms["instance prior only"]
    assert terms["consistency only"]["consistency"] == pytest.approx(desc["consistency"], rel=1e-6)
    assert terms["instance prior only"]["instance_prior"] == pytest.approx(desc["instance_prior"], rel=1e-6)
    stereo = terms["DESC + stereo"]
    assert "stereo" not in desc and stereo["stereo"] > 0
    for name in ("consistency", "instance_prior", "supervised_rgb"):
        assert stereo[name] == pytest.approx(desc[name], rel=1e-6)


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
    assert (cfg.lr, cfg.batch_size, cfg.size, cfg.confidence) == (0.001, 3, (48, 96), "none")
    with pytest.raises(ValueError, match="unknown setting"):
        load_config(None, ["nope=1"])
    with pytest.raises(ValueError, match="multiples of 16"):
        load_config(None, ["size=30x64"])
    (tmp_path / "bad.toml").write_text("colour = 1\n")
    with pytest.raises(ValueError, match="unknown settings"):
        load_config(str(tmp_path / "bad.toml"))
    (tmp_path / "broken.toml").write_text("lr = \n")
    with pytest.raises(ValueError, match=f"^{re.escape(str(tmp_path / 'broken.toml'))}: not valid TOML: "):
        load_config(str(tmp_path / "broken.toml"))
    with pytest.raises(ValueError, match="^unknown preset 'papers'; known: paper, paper-stereo$"):
        load_config(None, preset="papers")


@pytest.mark.parametrize("text, value", [("1", True), ("TRUE", True), ("Yes", True), ("on", True),
                                         ("0", False), ("False", False), ("NO", False), ("Off", False)])
def test_boolean_overrides_in_any_case(text, value):
    assert load_config(None, [f"amp={text}"]).amp is value


def test_a_boolean_override_that_is_none_is_refused():
    with pytest.raises(ValueError, match="amp.*expected a boolean, got 'maybe'"):
        load_config(None, ["amp=maybe"])


def test_count_overrides_change_the_named_splits_only():
    cfg = load_config(None, ["counts=source_train:7, target_test:3"])
    assert cfg.counts == dict(Config().counts, source_train=7, target_test=3)


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
    # Every number of the log's records, under its key, and nothing else.
    records = [json.loads(line) for line in open(os.path.join(str(tmp_path), "log.jsonl"))]
    assert sorted(w for w in written if w != "closed") == sorted(
        (f"source_only/{k}", v, r["step"]) for r in records for k, v in r.items() if k not in ("stage", "step", "time"))


@pytest.mark.parametrize("steps, saved", [(7, [(3, False), (6, False), (7, True)]), (6, [(3, False), (6, True)])])
def test_checkpoints_every_checkpoint_every_steps_and_at_the_end(quick, tmp_path, monkeypatch, steps, saved):
    calls = []
    monkeypatch.setattr(Trainer, "save", lambda self, stage, step, done: calls.append((step, done)))
    Trainer(dataclasses.replace(quick, checkpoint_every=3), str(tmp_path), log=lambda *_: None).run_stage(
        "source_only", steps)
    assert calls == saved


def test_plan_orders_every_stage_after_its_start(quick):
    from desc_train.demo import ROWS, plan

    jobs = plan(quick, [0, 5])
    seen = set()
    for job in jobs:
        assert all((job.seed, after) in seen for after in job.starts), job
        seen.add((job.seed, job.stage))
    assert len(seen) == len(jobs) == 18
    assert sorted(j.row for j in jobs if j.row and j.seed == 5) == sorted(ROWS)


def test_plan_gives_each_stage_its_kind_steps_start_and_settings(quick):
    from desc_train.demo import TRANSLATION_ROW, VARIANTS, plan

    cfg = dataclasses.replace(quick, iters_source=3, iters_sem=5, iters_joint=7)
    expected = {
        "source_only": ("source_only", 3, None, {}, None),
        "semantic": ("semantic", 5, "source_only", {}, None),
        "source_only_long": ("source_only", 7, "source_only", {}, "source-only"),
        "source_only_translation": ("source_only", 3, None, {"translation": True}, None),
        "joint_translation": ("joint", 7, ("source_only_translation", "semantic"), {"translation": True},
                              TRANSLATION_ROW),
    }
    for row, (stage, settings) in VARIANTS.items():
        expected[stage] = ("joint", 7, "semantic", settings, row)
    for seed in (0, 5):
        jobs = {j.stage: j for j in plan(cfg, [0, 5]) if j.seed == seed}
        assert {stage: (j.kind, j.steps, j.after, j.settings, j.row) for stage, j in jobs.items()} == expected


def test_worker_processes_match_the_inline_run(quick, tmp_path):
    from desc_train.demo import run_demo

    quiet = lambda *_: None  # noqa: E731
    threads = torch.get_num_threads()
    # One thread inline and in each worker alike: torch's CPU kernels round by their thread count,
    # and the translation row's GAN stage carries that past the tolerance.
    torch.set_num_threads(1)
    try:
        inline = run_demo(dataclasses.replace(quick, out=str(tmp_path / "one")), seeds=[3], workers=1, log=quiet)
        pooled = run_demo(dataclasses.replace(quick, out=str(tmp_path / "two")), seeds=[3], workers=2, log=quiet)
    finally:
        torch.set_num_threads(threads)
    for row, metrics in inline["summary"].items():
        for k, (mean, _) in metrics.items():
            assert pooled["summary"][row][k][0] == pytest.approx(mean, rel=1e-3, abs=1e-5), (row, k)


def test_existing_data_of_another_size_is_an_error(quick):
    cfg = dataclasses.replace(quick, size=(48, 96))
    with pytest.raises(ValueError, match="target_test|source_train|target_train"):
        ensure_data(cfg, log=lambda *_: None)


def test_data_of_another_generator_version_is_an_error(quick, tmp_path):
    """A benchmark folder made by an earlier generator (other pictures for the same
    seed) is refused, naming the folder, rather than trained on as this one."""
    from desc_train.data.layout import read_meta, write_meta

    old = tmp_path / "bench"
    shutil.copytree(quick.data, old)
    split = old / "target_test"
    meta = read_meta(str(split))
    write_meta(str(split), dataclasses.replace(meta, dataset=None))
    with pytest.raises(DataError, match=f"^{re.escape(str(split))} was made by an earlier version of the generator"):
        ensure_data(dataclasses.replace(quick, data=str(old)), log=lambda *_: None)


def test_instance_prior_trains_g_h_through_the_heights(quick, start, tmp_path, impl):
    """The instance prior of a joint step, alone, reaches G_h's weights (through
    the predicted heights) and G_rgb's (through the depth), not G_sem's."""
    trainer = Trainer(quick, str(tmp_path), log=lambda *_: None)
    trainer.load(start, optimizer=False)
    src, tgt = trainer.batch(trainer.source, 1, 0), trainer.batch(trainer.target, 2, 0)
    st = desc_ops.instance_stats(tgt["instance_ids"], quick.max_instances)
    assert ((st.pixel_height >= quick.min_instance_rows) & (tgt["instance_class"] >= 0)).any()  # a prior acts
    trainer.terms("joint", src, tgt)["instance_prior"].backward()
    for name, p in trainer.g_h.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert trainer.g_rgb.heads[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in trainer.g_sem.parameters())


def test_joint_terms_match_on_both_backends(quick, start, tmp_path):
    """A few joint steps from one checkpoint through the kernels and through
    desc_ops.reference: the same terms step after step, so the gradients agree
    too (or the weights would drift apart)."""

    def joint_terms(backend):
        desc_ops.set_backend(backend)
        trainer = Trainer(dataclasses.replace(quick, confidence="labels"), str(tmp_path / backend), log=lambda *_: None)
        terms, seen = trainer.terms, []

        def recorded(*args):
            out = terms(*args)
            seen.append({k: v.item() for k, v in out.items()})
            return out

        trainer.terms = recorded
        trainer.run_stage("joint", 3, start_from=start)
        return seen

    kernels, reference = joint_terms("extension"), joint_terms("reference")
    assert len(kernels) == 3
    assert set(kernels[0]) == {"supervised_rgb", "supervised_sem", "height", "consistency", "instance_prior",
                               "smoothness"}
    assert all(v > 0 for v in kernels[0].values()), kernels[0]  # every term acts
    for step, (a, b) in enumerate(zip(kernels, reference)):
        assert a.keys() == b.keys()
        for name in a:
            assert b[name] == pytest.approx(a[name], rel=1e-5), (step, name)


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


# ------------------------------------------------------------ the command line's answers to mistakes
@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    path = tmp_path_factory.mktemp("foreign") / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(2, 3)}, path)
    return str(path)


def test_cli_without_a_command_says_so_in_one_line_and_help_describes_it(capsys):
    assert cli_main([]) == 1
    assert capsys.readouterr().err == "desc-train: error: the following arguments are required: command\n"
    with pytest.raises(SystemExit) as exit_:
        cli_main(["--help"])
    assert exit_.value.code == 0 and "DESC training on top of desc_ops" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing checkpoint", "foreign checkpoint", "split without meta.json",
                                  "unknown --set key", "malformed --set value"])
def test_cli_mistakes_get_one_line_naming_the_file_or_key(case, quick, start, foreign, tmp_path, capsys):
    test_split = os.path.join(quick.data, "target_test")
    argv, named = {
        "missing checkpoint": (["evaluate", str(tmp_path / "missing.pt"), test_split], "missing.pt"),
        "foreign checkpoint": (["evaluate", foreign, test_split], "resnet.pt"),
        "split without meta.json": (["evaluate", start, str(tmp_path)], os.path.join(str(tmp_path), "meta.json")),
        "unknown --set key": (["demo", "--set", "colour=red"], "'colour'"),
        "malformed --set value": (["demo", "--set", "lr=fast"], "setting lr:"),
    }[case]
    assert cli_main(argv) == 1
    out = capsys.readouterr()
    assert named in out.err and len(out.err.strip().splitlines()) == 1, out.err
    assert out.out == ""


def test_cli_mistake_exits_without_a_traceback(quick, tmp_path):
    run = subprocess.run([sys.executable, "-m", "desc_train", "evaluate", str(tmp_path / "missing.pt"),
                          os.path.join(quick.data, "target_test")], capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.strip() == f"desc-train evaluate: error: {tmp_path / 'missing.pt'}: no such checkpoint"


def test_set_overrides_one_key_and_keeps_the_rest(quick):
    from desc_train.cli import _override

    cfg = _override(quick, "lr=0.25")
    assert cfg.lr == 0.25 and dataclasses.replace(cfg, lr=quick.lr) == quick
    # Only the first '=' separates key and value: a path may contain one.
    assert _override(quick, "out=/runs/a=b").out == "/runs/a=b"
    assert _override(quick, "iters_joint=11").iters_joint == 11


@pytest.mark.parametrize("quick_run", [False, True], ids=["full", "quick"])
def test_ablation_command_reads_its_config_then_quick_then_set(tmp_path, monkeypatch, quick_run):
    # (named without "demo": the mutation runs leave the demo's slow tests out, not this one)
    import desc_train.demo as demo_module

    seen = {}
    monkeypatch.setattr(demo_module, "run_demo",
                        lambda cfg, seeds, workers: seen.update(cfg=cfg, seeds=seeds, workers=workers))
    config = tmp_path / "c.toml"
    config.write_text('lr = 0.5\ndata = "/d"\nout = "/o"\nwidth = 6\n')
    argv = ["demo", "--config", str(config), "--seeds", "3,4", "--workers", "2", "--set", "iters_joint=9"]
    assert cli_main(argv + (["--quick"] if quick_run else [])) == 0
    cfg = seen["cfg"]
    assert (seen["seeds"], seen["workers"]) == ([3, 4], 2)
    assert (cfg.lr, cfg.iters_joint) == (0.5, 9)  # the file, then --set
    if quick_run:
        small = demo_module.quick_config(Config())
        assert (cfg.data, cfg.out, cfg.width, cfg.size) == ("/d-quick", "/o-quick", small.width, small.size)
    else:
        assert (cfg.data, cfg.out, cfg.width, cfg.size) == ("/d", "/o", 6, Config().size)


def test_results_table_and_worker_count():
    from desc_train.demo import default_workers, markdown_table
    from desc_train.evaluate import METRICS

    cols = [*METRICS, "abs_rel@instances"]
    summary = {"DESC": {c: (0.1 * i, 0.01 * i) for i, c in enumerate(cols)},
               "source-only": {c: (1.0 + i, 0.5) for i, c in enumerate(cols)}}
    lines = markdown_table(summary, 3).splitlines()
    assert lines[0].startswith("Target test split, mean ± std over 3 seed(s), depth cap 80 m, no median scaling")
    assert lines[1] == ""
    assert lines[2] == "| method | " + " | ".join(cols) + " |"
    assert lines[3] == "| --- |" + " ---: |" * len(cols)
    assert lines[4] == "| DESC | " + " | ".join(f"{0.1 * i:.4f} ± {0.01 * i:.4f}" for i in range(len(cols))) + " |"
    assert lines[5].startswith("| source-only | 1.0000 ± 0.5000 | 2.0000 ± 0.5000 |") and len(lines) == 6
    threads = torch.get_num_threads()
    assert default_workers(1) == 1 and default_workers(10 ** 6) == threads and default_workers(0) == 1
    assert default_workers(2) == min(2, threads)


def test_command_line_value_types():
    import argparse

    from desc_train.cli import _cap, _ints, _positive, _size

    assert _ints("0,1,12") == [0, 1, 12] and _ints("-3") == [-3]
    assert _positive("1") == 1 and _positive("24") == 24
    assert _cap("0.001,80") == (0.001, 80.0) and _cap("1,50") == (1.0, 50.0)
    assert _size("96x320") == (96, 320) and _size("8X8") == (8, 8)
    bad = [(_ints, "1,a", "expected comma-separated integers, got '1,a'"),
           (_positive, "0", "expected a positive integer, got '0'"),
           (_positive, "-2", "expected a positive integer, got '-2'"),
           (_positive, "1.5", "expected a positive integer, got '1.5'"),
           (_cap, "80", r"cap must look like 0.001,80 \(min,max metres\), got '80'"),
           (_cap, "1,2,3", "cap must look like"),
           (_size, "96", "size must look like 96x320, got '96'"),
           (_size, "7x320", "size must be at least 8x8, got '7x320'"),
           (_size, "96x7", "size must be at least 8x8")]
    for parse, text, message in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)


def test_sheet_command_writes_the_contact_sheet(quick, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert cli_main(["sheet", os.path.join(quick.data, "target_test"), "--out", str(out), "--rows", "2"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    import cv2
    two = cv2.imread(str(out))
    assert cli_main(["sheet", os.path.join(quick.data, "target_test"), "--out", str(out), "--rows", "3"]) == 0
    assert cv2.imread(str(out)).shape[0] > two.shape[0]  # --rows reaches the sheet


def test_edge_map_is_the_squashed_sobel_magnitude_of_the_luminance():
    """G_sem's edge channel, tanh(2 m) with m the Sobel magnitude of the luminance
    0.299 R + 0.587 G + 0.114 B (borders replicated), by hand with conv2d."""
    from desc_train.train import edge_map

    image = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = 0.299 * image[:, :1] + 0.587 * image[:, 1:2] + 0.114 * image[:, 2:]
    padded = torch.nn.functional.pad(y, (1, 1, 1, 1), mode="replicate")
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)[None, None]
    gx, gy = torch.nn.functional.conv2d(padded, kx), torch.nn.functional.conv2d(padded, kx.transpose(-1, -2))
    torch.testing.assert_close(edge_map(image), torch.tanh(2 * torch.sqrt(gx ** 2 + gy ** 2)), rtol=1e-12, atol=1e-12)


def test_supervised_loss_by_hand():
    """weight * sum over scales of the mean |pred - gt| over pixels with ground
    truth (gt > 0, values below 1 m included), coarse scales upsampled bilinearly
    (align_corners=False)."""
    from desc_train.train import supervised_loss

    g = torch.Generator().manual_seed(1)
    depth = torch.rand(2, 1, 8, 12, generator=g, dtype=torch.float64) * 4
    depth[:, :, :2] = 0  # no ground truth
    assert ((depth > 0) & (depth <= 1)).any()
    fine = torch.rand(2, 1, 8, 12, generator=g, dtype=torch.float64) * 4
    coarse = torch.rand(2, 1, 4, 6, generator=g, dtype=torch.float64) * 4
    valid = depth > 0
    up = torch.nn.functional.interpolate(coarse, size=(8, 12), mode="bilinear", align_corners=False)
    want = 0.5 * ((fine - depth).abs()[valid].mean() + (up - depth).abs()[valid].mean())
    torch.testing.assert_close(supervised_loss([fine, coarse], depth, 0.5), want, rtol=1e-12, atol=0)


def test_source_height_labels_keep_measurable_instances_only():
    """G_h's labels: a slot has one where its height is finite, it spans at least
    min_instance_rows rows, it has a class (0 included) and its median depth is
    below the far plane (max_source_depth itself excluded)."""
    from types import SimpleNamespace

    ids = torch.full((1, 12, 10), -1)
    depth = torch.full((1, 1, 12, 10), 10.0, dtype=torch.float64)
    ids[0, 0:3, 0] = 0  # exactly min_instance_rows rows, class 0: labelled
    ids[0, 0:2, 2] = 1  # two rows: too few
    ids[0, 0:4, 4] = 2  # no class
    ids[0, 0:4, 6] = 3  # at the far plane
    depth[0, 0, 0:4, 6] = 50.0
    src = dict(instance_ids=ids, depth=depth, focal=torch.tensor([20.0], dtype=torch.float64),
               instance_class=torch.tensor([[0, 2, -1, 1, -1]]))  # slot 4: unused
    trainer = SimpleNamespace(K=5, cfg=SimpleNamespace(min_instance_rows=3), max_source_depth=50.0)
    st, h, ok = Trainer._source_height_labels(trainer, src)
    assert ok.tolist() == [[True, False, False, False, False]]
    assert h[0, 0].item() == pytest.approx(10.0 * 3 / 20.0)


def test_target_priors_come_from_instances_at_least_min_instance_rows_tall():
    """The joint stage's instance prior takes G_h's height for a slot spanning
    min_instance_rows rows or more (exactly that many included) and NaN, no
    prior, for shorter or empty slots."""
    from types import SimpleNamespace

    ids = torch.full((1, 8, 6), -1)
    ids[0, 0:3, 0] = 0  # exactly min_instance_rows rows
    ids[0, 0:2, 2] = 1  # one row short
    ids[0, 0:5, 4] = 2  # taller
    objective = lambda pred, image, **inputs: SimpleNamespace(weighted=inputs)  # noqa: E731
    trainer = SimpleNamespace(K=4, cfg=SimpleNamespace(consistency_weight=0.0, instance_weight=1.0,
                                                       stereo_weight=0.0, min_instance_rows=3),
                              _predict_heights=lambda b, st: torch.full((1, 4), 1.5), _rgb=lambda image: image,
                              _input=lambda image: image, prior_scale=None, objectives={"joint": objective})
    tgt = dict(instance_ids=ids, image=torch.zeros(1, 3, 8, 6), focal=torch.tensor([10.0]))
    heights = Trainer._target_terms(trainer, "joint", tgt)["heights"]
    assert heights[0, [0, 2]].tolist() == [1.5, 1.5]
    assert heights[0, [1, 3]].isnan().all()


def test_target_bn_stats_keeps_source_batches_out_of_g_rgb_statistics(quick, tmp_path):
    """With target_bn_stats, a step's source forward leaves G_rgb's BatchNorm
    running statistics to the target batch; without it both enter them."""
    def running_means(flag, with_source):
        torch.manual_seed(0)
        t = Trainer(dataclasses.replace(quick, target_bn_stats=flag), str(tmp_path / f"{flag}{with_source}"),
                    log=lambda *_: None)
        src, tgt = t.batch(t.source, 0, 0), t.batch(t.target, 1, 0)
        if with_source:
            t.terms("source_only", src, tgt)
        else:
            t._rgb(tgt["image"])
        return torch.cat([m.running_mean for m in t.g_rgb.modules() if isinstance(m, torch.nn.BatchNorm2d)])

    target_only = running_means(False, with_source=False)
    assert torch.equal(running_means(True, with_source=True), target_only)
    assert not torch.equal(running_means(False, with_source=True), target_only)


def test_height_term_is_the_mean_error_over_labelled_slots(quick, tmp_path):
    """The semantic stage's height term: mean |G_h(slot) - label| over the slots
    with a label, from the pieces the trainer computes them with."""
    torch.manual_seed(0)
    t = Trainer(quick, str(tmp_path), log=lambda *_: None)
    src, tgt = t.batch(t.source, 0, 0), t.batch(t.target, 1, 0)
    st, h, ok = t._source_height_labels(src)
    assert ok.any() and not ok.all()
    pred = t._predict_heights(src, st)
    torch.testing.assert_close(t.terms("semantic", src, tgt)["height"], (pred - h)[ok].abs().mean())


def test_target_objective_per_stage_kind():
    """joint: DESC's terms, the consistency at the consistency_scales finest
    scales; source_only: the smoothness alone; smoothness_weight / 2**i at scale
    i; the instance prior clamped at the networks' MAX_DEPTH, ids not re-checked."""
    from desc_train.models import MAX_DEPTH, SCALES
    from desc_train.train import target_objective

    cfg = dataclasses.replace(Config(), consistency_weight=2.0, consistency_scales=2, instance_weight=0.5,
                              smoothness_weight=0.08, confidence="none", edge_weight=3.0, boundary_weight=1.0)
    joint, source_only = target_objective(cfg, "joint"), target_objective(cfg, "source_only")
    smoothness = [0.08 / 2 ** i for i in range(SCALES)]
    assert (joint.consistency_weight, joint.instance_weight, joint.smoothness_weight) == ([2.0, 2.0], 0.5, smoothness)
    assert (source_only.consistency_weight, source_only.instance_weight) == (0.0, 0.0)
    assert source_only.smoothness_weight == smoothness and SCALES > 2
    for objective in (joint, source_only):
        assert objective.confidence is False
        assert objective.instance_prior.max_depth == MAX_DEPTH and objective.instance_prior.validate is False
    for mode in ("labels", "logits"):
        assert target_objective(dataclasses.replace(cfg, confidence=mode), "joint").confidence is True
    assert (joint.consistency.edge_weight, joint.consistency.boundary_weight) == (3.0, 1.0)


def test_amp_is_for_cuda_only(quick, tmp_path):
    """amp=True changes nothing on the CPU: a step's terms are those of amp=False,
    and those of the terms computed outside any autocast (float32 throughout)."""
    def terms(amp):
        torch.manual_seed(0)
        t = Trainer(dataclasses.replace(quick, amp=amp), str(tmp_path / str(amp)), log=lambda *_: None)
        return t.gradients("joint", 0)

    with_amp = terms(True)
    assert with_amp == terms(False)
    torch.manual_seed(0)
    fresh = Trainer(quick, str(tmp_path / "plain"), log=lambda *_: None)
    plain = fresh.terms("joint", fresh.batch(fresh.source, 1, 0), fresh.batch(fresh.target, 2, 0))
    assert with_amp == {k: v.item() for k, v in plain.items()}


def test_stage_log_records_every_log_every_steps_and_the_last(quick, tmp_path):
    """log.jsonl gets a record at each multiple of log_every and at the stage's
    last step, each with the loss, its terms and the seconds since the stage
    began (a float with two decimals)."""
    trainer = Trainer(dataclasses.replace(quick, log_every=3), str(tmp_path), log=lambda *_: None)
    trainer.run_stage("source_only", 7)
    records = [json.loads(line) for line in open(os.path.join(str(tmp_path), "log.jsonl"))]
    assert [r["step"] for r in records] == [3, 6, 7]
    assert {r["stage"] for r in records} == {"source_only"}
    seconds = [r["time"] for r in records]
    assert all(isinstance(t, float) and t == round(t, 2) for t in seconds)
    assert 0 <= seconds[0] <= seconds[1] <= seconds[2] < 600
    for r in records:
        terms = {k: v for k, v in r.items() if k not in ("stage", "step", "loss", "time")}
        assert terms and all(v == round(v, 5) for v in terms.values())
        assert r["loss"] == pytest.approx(sum(terms.values()), abs=1e-4)


def test_sampled_frames_walk_each_epochs_permutation_in_turn():
    """One process: the batches of steps 0, 1, ... are the stream of epoch 0's
    permutation of the n frames (torch.randperm seeded by seed + epoch, as
    DistributedSampler draws it), then epoch 1's, across epoch boundaries."""
    n, batch, seed = 5, 3, 11
    stream = [f for step in range(5) for f in sampled_frames(n, batch, seed, step)]
    want = [(e, int(i)) for e in range(3) for i in torch.randperm(n, generator=torch.Generator().manual_seed(seed + e))]
    assert stream == want
    assert [i for _, i in want[:n]] != list(range(n)) and want[:n] != want[n:2 * n]  # shuffled, and again each epoch


def test_trainer_frames_are_the_given_ranks_shard(quick, tmp_path):
    trainer = Trainer(quick, str(tmp_path), log=lambda *_: None)
    seed = (quick.seed * 7919 + 1) * 1_000_003
    for rank in (0, 1):
        assert trainer.frames(trainer.target, 1, 3, rank=rank, world=2) == sampled_frames(
            len(trainer.target), quick.batch_size, seed, 3, rank, 2)


class _Payload:
    """A pickled object in a checkpoint: code a weights_only reader must not run."""


def test_a_checkpoint_holding_objects_is_not_read(tmp_path):
    path = str(tmp_path / "evil.pt")
    torch.save({"g_rgb": {}, "g_sem": {}, "g_h": {}, "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match=f"{re.escape(path)}: not a readable desc_train checkpoint"):
        read_checkpoint(path)


def test_both_depth_networks_have_the_configured_width(quick, tmp_path):
    from desc_train.models import DepthUNet

    trainer = Trainer(dataclasses.replace(quick, width=6), str(tmp_path), log=lambda *_: None)

    def count(net):
        return sum(p.numel() for p in net.parameters())

    assert count(trainer.g_rgb) == count(DepthUNet(3, 6))
    assert count(trainer.g_sem) == count(DepthUNet(trainer.num_classes + 1, 6))


def test_adam_takes_the_configured_learning_rate_and_betas(quick, tmp_path):
    trainer = Trainer(dataclasses.replace(quick, lr=3e-4, betas=(0.8, 0.9)), str(tmp_path), log=lambda *_: None)
    group = trainer.opt.param_groups[0]
    assert group["lr"] == 3e-4 and tuple(group["betas"]) == (0.8, 0.9)


def test_stage_logs_and_fresh_optimizer(quick, tmp_path):
    """A finished stage says so and trains nothing; an interrupted one says where it
    resumes; a stage started from another's checkpoint takes its weights, not its
    optimizer state."""
    lines = []
    first = Trainer(quick, str(tmp_path), log=lambda *_: None)
    first.run_stage("source_only", 2)
    again = Trainer(quick, str(tmp_path), log=lines.append)
    assert again.run_stage("source_only", 2) == 0
    assert lines == [f"source_only: done already ({os.path.join(str(tmp_path), 'source_only.pt')})"]
    state = torch.load(first.checkpoint_path("source_only"), weights_only=True)
    assert (state["stage"], state["step"], state["done"]) == ("source_only", 2, True)
    state.update(done=False, step=1)
    torch.save(state, first.checkpoint_path("source_only"))
    reports = []
    resumed = Trainer(quick, str(tmp_path), log=lines.append, on_step=lambda *report: reports.append(report))
    assert resumed.run_stage("source_only", 2) == 1
    assert lines[1] == "source_only: resuming at step 1"
    logged = json.loads(open(os.path.join(str(tmp_path), "log.jsonl")).readlines()[-1])
    assert reports == [("source_only", 2, pytest.approx(logged["loss"]))] and logged["step"] == 2
    chained = Trainer(quick, str(tmp_path / "next"), log=lambda *_: None)
    assert chained.run_stage("semantic", 0, start_from=first.checkpoint_path("source_only")) == 0
    assert len(chained.opt.state) == 0
    saved = torch.load(first.checkpoint_path("source_only"), weights_only=True)["g_rgb"]
    assert all(torch.equal(v, saved[k]) for k, v in chained.g_rgb.state_dict().items())


# ------------------------------------------------------------ what made a checkpoint
quiet = lambda *_: None  # noqa: E731
REUSE = "set reuse_stages=true to reuse it anyway, or move it away (or set another out=) to train the stage again"


@pytest.fixture(scope="module")
def finished(quick, tmp_path_factory):
    """A run folder whose source_only stage finished 2 steps under `quick`."""
    run = str(tmp_path_factory.mktemp("finished"))
    Trainer(quick, run, log=quiet).run_stage("source_only", 2)
    return run


def _copy(run, tmp_path):
    import shutil

    copy = str(tmp_path / "run")
    shutil.copytree(run, copy)
    return copy, os.path.join(copy, "source_only.pt")


@pytest.mark.parametrize("change, difference", [
    (dict(seed=1), "it was made with seed=0, this run has seed=1"),
    (dict(lr=2e-3), "it was made with lr=0.001, this run has lr=0.002"),
    (dict(betas=(0.9, 0.999)), "it was made with betas=[0.95, 0.999], this run has betas=[0.9, 0.999]"),
    (dict(batch_size=2), "it was made with batch_size=4, this run has batch_size=2"),
    (dict(width=6), "it was made with width=4, this run has width=6"),
    (dict(supervised_weight=2.0), "it was made with supervised_weight=1.25, this run has supervised_weight=2.0"),
    (dict(smoothness_weight=0.5), "it was made with smoothness_weight=0.01, this run has smoothness_weight=0.5"),
    (dict(target_bn_stats=True), "it was made with target_bn_stats=false, this run has target_bn_stats=true"),
    (dict(), "it finished with iters_source=2, this run has iters_source=3"),
])
def test_a_finished_stage_made_otherwise_is_refused_naming_the_difference(quick, finished, tmp_path, change,
                                                                         difference):
    """A finished stage is not reused under another seed, learning rate, size,
    loss weight or step count: one line naming the checkpoint, the setting, its
    recorded and its current value, and how to reuse it on purpose."""
    run, path = _copy(finished, tmp_path)
    before = open(path, "rb").read()
    with pytest.raises(CheckpointError) as err:
        Trainer(dataclasses.replace(quick, **change), run, log=quiet).run_stage("source_only", 2 if change else 3)
    assert str(err.value) == f"{path}: {difference}: {REUSE}"
    assert open(path, "rb").read() == before  # refused, not overwritten


def test_settings_that_do_not_shape_a_stage_and_moved_data_reuse_it(quick, finished, tmp_path):
    """Logging, checkpoint intervals, another kind's loss weights and the same
    splits in another folder make the same stage: it is done already."""
    import shutil

    run, _ = _copy(finished, tmp_path)
    moved = str(tmp_path / "moved")
    shutil.copytree(quick.data, moved)
    cfg = dataclasses.replace(quick, log_every=1, checkpoint_every=1, consistency_weight=3.0, instance_weight=0.0,
                              confidence="none", data=moved, out=str(tmp_path / "elsewhere"))
    assert Trainer(cfg, run, log=quiet).run_stage("source_only", 2) == 0


def test_a_stage_made_from_other_data_is_refused(quick, finished, tmp_path):
    import shutil

    from desc_train.data.layout import read_meta, write_meta

    run, path = _copy(finished, tmp_path)
    other = str(tmp_path / "other")
    shutil.copytree(quick.data, other)
    split = os.path.join(other, quick.source_split)
    meta = read_meta(split)
    write_meta(split, dataclasses.replace(meta, frames={n: meta.frames[n] for n in meta.names[:-1]}))
    with pytest.raises(CheckpointError) as err:
        Trainer(dataclasses.replace(quick, data=other), run, log=quiet).run_stage("source_only", 2)
    text = str(err.value)
    assert text.startswith(f"{path}: it was made from the source split "
                           f"{os.path.abspath(os.path.join(quick.data, quick.source_split))} (24 frames, meta.json "
                           f"sha256 ")
    assert f", this run reads {split} (23 frames, meta.json sha256 " in text and text.endswith(REUSE)
    assert "\n" not in text


def test_a_checkpoint_of_another_stage_is_refused_even_when_reusing(quick, tmp_path):
    """joint.pt copied to source_only.pt is no finished source-only stage."""
    import shutil

    Trainer(quick, str(tmp_path / "a"), log=quiet).run_stage("joint", 1)
    os.makedirs(tmp_path / "b")
    path = str(tmp_path / "b" / "source_only.pt")
    shutil.copy(tmp_path / "a" / "joint.pt", path)
    for reuse in (False, True):
        trainer = Trainer(dataclasses.replace(quick, reuse_stages=reuse), str(tmp_path / "b"), log=quiet)
        with pytest.raises(CheckpointError) as err:
            trainer.run_stage("source_only", 1)
        assert str(err.value) == (f"{path}: a checkpoint of stage \"joint\", not of source_only (copied or "
                                  f"renamed?): move it away to train source_only here")


def test_reuse_stages_takes_a_stage_as_it_is_and_says_so(quick, finished, tmp_path):
    run, path = _copy(finished, tmp_path)
    lines = []
    cfg = dataclasses.replace(quick, seed=1, lr=5e-4, reuse_stages=True)
    assert Trainer(cfg, run, log=lines.append).run_stage("source_only", 2) == 0
    assert lines == [f"source_only: {path}: it was made with lr=0.001, this run has lr=0.0005; reused as it is "
                     f"(reuse_stages=true)", f"source_only: done already ({path})"]


def test_a_checkpoint_without_a_record_is_refused_saying_how_to_reuse_it(quick, finished, tmp_path):
    """A checkpoint from before checkpoints recorded what made them is not trusted
    silently; reuse_stages=true takes it."""
    run, path = _copy(finished, tmp_path)
    state = torch.load(path, weights_only=True)
    del state["made"]
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        Trainer(quick, run, log=quiet).run_stage("source_only", 2)
    assert str(err.value) == (f"{path}: it records nothing of what made it (written before desc_train recorded its "
                              f"settings and data): {REUSE}")
    assert Trainer(dataclasses.replace(quick, reuse_stages=True), run, log=quiet).run_stage("source_only", 2) == 0


def test_an_interrupted_stage_resumes_under_its_own_settings_only(quick, finished, tmp_path):
    run, path = _copy(finished, tmp_path)
    state = torch.load(path, weights_only=True)
    state.update(done=False, step=1)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: it was made with lr=0.001, this run has lr=0.01")):
        Trainer(dataclasses.replace(quick, lr=1e-2), run, log=quiet).run_stage("source_only", 2)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: it stopped at step 1, past this run's "
                                                        f"iters_source=0")):
        Trainer(quick, run, log=quiet).run_stage("source_only", 0)
    assert Trainer(quick, run, log=quiet).run_stage("source_only", 3) == 2  # more steps: it goes on
    assert torch.load(path, weights_only=True)["made"]["settings"]["lr"] == quick.lr


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_one(quick, finished, tmp_path, monkeypatch,
                                                                     capsys):
    """torch.save failing part-way (a full disk) leaves the previous checkpoint
    and no .tmp, and the command line says so in one line naming the file,
    without torch's C++ lines."""
    import errno

    run, path = _copy(finished, tmp_path)
    before = open(path, "rb").read()
    trainer = Trainer(quick, run, log=quiet)

    def full_disk(obj, f, *args, **kw):
        f.write(b"PK\x03\x04 the first blocks of a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    def torch_writer(obj, f, *args, **kw):  # what torch raises writing to a path on a full disk
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598\n"
                           "frame #0: c10::ThrowEnforceNotMet(char const*, int, char const*)")

    for failure, reason in ((full_disk, "No space left on device"),
                            (torch_writer, "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")):
        monkeypatch.setattr(torch, "save", failure)
        with pytest.raises(OSError) as err:
            trainer.save("source_only", 5, done=True)
        assert str(err.value) == f"{path}: could not be written ({reason}); the previous file, if any, is kept"
        assert open(path, "rb").read() == before and sorted(os.listdir(run)) == ["log.jsonl", "source_only.pt"]
    monkeypatch.setattr(torch, "save", full_disk)
    out = str(tmp_path / "cli")
    assert cli_main(["train", "--set", f"data={quick.data}", "--set", f"out={out}", "--set", "width=4",
                     "--set", "iters_source=1", "--set", "test_split=none"]) == 1
    err = capsys.readouterr().err  # (after the stage's progress bar)
    assert err.splitlines()[-1] == (f"desc-train train: error: {os.path.join(out, 'source_only.pt')}: could not be "
                                    f"written (No space left on device); the previous file, if any, is kept")
    assert "Traceback" not in err and "enforce" not in err
    assert not os.path.exists(os.path.join(out, "source_only.pt.tmp"))


KILLED = """
import os, signal, sys
import torch
from desc_train.config import load_config
from desc_train.train import Trainer, train_desc

torch.set_num_threads(int(sys.argv[1]))
stage, step, moment = sys.argv[2], int(sys.argv[3]), sys.argv[4]
if moment == "step":  # SIGKILL as the step begins
    gradients = Trainer.gradients
    def gradients_then_kill(self, kind, s):
        if kind == stage and s == step:
            os.kill(os.getpid(), signal.SIGKILL)
        return gradients(self, kind, s)
    Trainer.gradients = gradients_then_kill
else:  # SIGKILL half way through writing the checkpoint of the step
    save = torch.save
    def save_then_kill(obj, f, *args, **kw):
        if obj.get("stage") == stage and obj.get("step") == step:
            f.write(b"PK half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return save(obj, f, *args, **kw)
    torch.save = save_then_kill
train_desc(load_config(None, sys.argv[5:]), log=lambda *_: None)
"""


def test_train_killed_at_a_step_and_in_a_checkpoint_write_resumes_bitwise(quick, tmp_path):
    """`train` SIGKILLed as a joint step begins, then again half way through
    writing a checkpoint, and run to the end: every stage's weights, BatchNorm
    statistics and Adam state are those of an uninterrupted run, and the .tmp
    the second kill left is gone."""
    from desc_train.train import train_desc

    settings = [f"data={quick.data}", "width=4", "batch_size=4", "iters_source=2", "iters_sem=2", "iters_joint=4",
                "checkpoint_every=2", "log_every=1", "test_split=none"]
    straight = load_config(None, [*settings, f"out={tmp_path / 'straight'}"])
    train_desc(straight, log=quiet)
    cut = [*settings, f"out={tmp_path / 'cut'}"]
    for stage, step, moment in (("joint", 3, "step"), ("joint", 4, "write")):
        run = subprocess.run([sys.executable, "-c", KILLED, str(torch.get_num_threads()), stage, str(step), moment,
                              *cut], capture_output=True, text=True)
        assert run.returncode == -9, run.stderr
        assert torch.load(tmp_path / "cut" / "joint.pt", weights_only=True)["step"] == 2
    assert (tmp_path / "cut" / "joint.pt.tmp").exists()  # what the kill in the write left
    train_desc(load_config(None, cut), log=quiet)
    assert not [f for f in os.listdir(tmp_path / "cut") if f.endswith(".tmp")]
    for stage in ("source_only", "semantic", "joint"):
        a = torch.load(tmp_path / "straight" / f"{stage}.pt", weights_only=True)
        b = torch.load(tmp_path / "cut" / f"{stage}.pt", weights_only=True)
        assert a["done"] and b["done"] and a["step"] == b["step"]
        for net in ("g_rgb", "g_sem", "g_h"):
            for k in a[net]:
                assert torch.equal(a[net][k], b[net][k]), (stage, net, k)
        for i, s in a["opt"]["state"].items():
            for k, v in s.items():
                assert torch.equal(v, b["opt"]["state"][i][k]), (stage, i, k)
