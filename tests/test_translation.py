"""Style translation (desc_train.translation) and the learned prior scale in the
trainer: stage a trains S2T and its discriminator and G_rgb learns from S2T's
output; later stages keep S2T frozen and still translate; the prior scale
moves; an interrupted stage resumes bitwise; the pool draws as documented."""
import dataclasses
import json
import os

import pytest
import torch

from desc_train.config import Config
from desc_train.demo import ensure_data, quick_config
from desc_train.models import to_image_range
from desc_train.translation import Discriminator, ImagePool, Translator
from desc_train.train import Trainer

quiet = lambda *_: None  # noqa: E731


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    """The quick benchmark with translation (S2T and its discriminator of width 2),
    the learned prior scale and the official image range."""
    root = tmp_path_factory.mktemp("translation")
    cfg = dataclasses.replace(quick_config(Config()), data=str(root / "data"), out=str(root / "run"),
                              translation=True, translation_width=2, translation_lr=1e-3, pool_size=2,
                              prior_scale="learned", image_range=(-1.0, 1.0), checkpoint_every=2)
    ensure_data(cfg, log=quiet)
    return cfg


@pytest.fixture(scope="module")
def stage_a(cfg, tmp_path_factory):
    """A run folder whose stage a ran 3 steps with translation, and the weights it started from."""
    run = str(tmp_path_factory.mktemp("stage_a"))
    trainer = Trainer(cfg, run, log=quiet)
    start = {name: {k: v.clone() for k, v in net.state_dict().items()} for name, net in trainer.networks.items()}
    trainer.run_stage("source_only", 3)
    return run, start


def _inputs(module, calls):
    """Records the first input of each call of `module`."""
    return module.register_forward_pre_hook(lambda m, args: calls.append(args[0].detach().clone()))


def test_stage_a_trains_s2t_and_its_discriminator_and_g_rgb_sees_the_translation(cfg, stage_a, tmp_path):
    run, start = stage_a
    saved = torch.load(os.path.join(run, "source_only.pt"), weights_only=True)
    for name in ("s2t", "d_s2t"):
        moved = [k for k, v in saved[name].items() if v.is_floating_point() and not torch.equal(v, start[name][k])]
        weights = [k for k in start[name] if k.endswith("weight")]
        assert set(weights) <= set(moved), name  # every layer learnt, BatchNorm statistics moved too
    records = [json.loads(line) for line in open(os.path.join(run, "log.jsonl"))]
    assert {"identity", "gan", "discriminator"} <= records[-1].keys()

    # One step: G_rgb's source batch is S2T's translation of it, not the image itself.
    trainer = Trainer(cfg, str(tmp_path), log=quiet)
    translated, seen = [], []
    trainer.s2t.register_forward_hook(lambda m, args, out: translated.append(out.detach().clone()))
    _inputs(trainer.g_rgb, seen)
    src, tgt = trainer.batch(trainer.source, 1, 0), trainer.batch(trainer.target, 2, 0)
    trainer.terms("source_only", src, tgt)
    n = src["image"].shape[0]
    assert torch.equal(seen[0], translated[0][:n])  # S2T ran on source and target as one batch
    assert not torch.allclose(seen[0], to_image_range(src["image"], cfg.image_range), atol=0.1)
    assert torch.equal(seen[1], to_image_range(tgt["image"], cfg.image_range))  # the target goes in untranslated


def test_later_stages_keep_s2t_frozen_and_translate_every_source_batch(cfg, stage_a, tmp_path):
    """Stages b and c start from stage a's S2T and leave its weights and BatchNorm
    statistics as they are (eval mode, no gradient); in c G_rgb's source batch is
    still S2T's translation; the learned prior scale moves and is logged."""
    run, _ = stage_a
    trainer = Trainer(cfg, run, log=quiet)
    trainer.run_stage("semantic", 1, start_from=os.path.join(run, "source_only.pt"))
    after_a = torch.load(os.path.join(run, "source_only.pt"), weights_only=True)["s2t"]
    translated, seen = [], []
    trainer.s2t.register_forward_hook(lambda m, args, out: translated.append(out.detach().clone()))
    _inputs(trainer.g_rgb, seen)
    trainer.run_stage("joint", 2, start_from=os.path.join(run, "semantic.pt"))
    assert not trainer.s2t.training and all(p.grad is None for p in trainer.s2t.parameters())
    for name in ("semantic", "joint"):
        s2t = torch.load(os.path.join(run, f"{name}.pt"), weights_only=True)["s2t"]
        assert all(torch.equal(v, after_a[k]) for k, v in s2t.items()), name
    assert len(translated) == 2 and torch.equal(seen[0], translated[0])  # joint step 1's source batch
    scale = torch.load(os.path.join(run, "joint.pt"), weights_only=True)["prior_scale"]["s"]
    assert scale.item() != 1.0
    logged = [json.loads(line) for line in open(os.path.join(run, "log.jsonl"))]
    assert logged[-1]["prior_scale"] == round(scale.item(), 5) and "prior_scale" not in logged[0]


def _state(path):
    """Every tensor a checkpoint holds: the networks (running statistics included),
    both optimisers' moments and step counts, the pool's images and generator."""
    state = torch.load(path, weights_only=True)
    out = {f"{name}.{k}": v for name in ("g_rgb", "g_sem", "g_h", "s2t", "d_s2t", "prior_scale")
           for k, v in state[name].items()}
    for opt in ("opt", "opt_d"):
        for i, s in state[opt]["state"].items():
            out.update({f"{opt}.{i}.{k}": v for k, v in s.items()})
    out.update({f"pool.{k}": v for k, v in state["pool"].items()})
    return out


def test_stage_a_with_translation_resumes_bitwise(cfg, stage_a, tmp_path):
    """Killed during step 3 (after the checkpoint of step 2) and run again, stage a
    ends where the uninterrupted run of `stage_a` does: S2T, the discriminator,
    both Adams and the pool (full after step 1, so step 3 swaps) included."""

    class Stop(Exception):
        pass

    cut = Trainer(cfg, str(tmp_path), log=quiet)
    gradients = cut.gradients

    def dying(kind, step):
        if step == 2:
            raise Stop()
        return gradients(kind, step)

    cut.gradients = dying
    with pytest.raises(Stop):
        cut.run_stage("source_only", 3)
    resumed = Trainer(cfg, str(tmp_path), log=quiet)
    with torch.no_grad():  # a restart from scratch would train from other weights than the checkpoint's
        for p in resumed.s2t.parameters():
            p.add_(0.5)
    resumed.pool.query(torch.zeros(2, 3, *cfg.size))
    assert resumed.run_stage("source_only", 3) == 1
    a, b = _state(os.path.join(stage_a[0], "source_only.pt")), _state(resumed.checkpoint_path("source_only"))
    assert a.keys() == b.keys() and any(k.startswith("opt_d.") for k in a) and a["pool.images"].shape[0] == 2
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_stage_started_without_a_translator_is_refused(cfg, tmp_path):
    """A joint stage with translation needs stage a's S2T: a checkpoint of a run
    without translation has none to give."""
    from desc_train.train import CheckpointError

    plain = Trainer(dataclasses.replace(cfg, translation=False), str(tmp_path), log=quiet)
    plain.save("semantic", 0, done=True)
    trainer = Trainer(cfg, str(tmp_path / "joint"), log=quiet)
    with pytest.raises(CheckpointError, match=r"semantic\.pt: holds no translator \(s2t\) to start from"):
        trainer.run_stage("joint", 1, start_from=plain.checkpoint_path("semantic"))


def test_image_pool_stores_then_swaps_half_the_time_and_resumes_its_draws():
    """While it has room the pool keeps each image and returns it; once full, an
    image is swapped for a stored one (returned in its place) about half the
    time; a pool loaded from a state_dict draws what the original does."""
    pool = ImagePool(3, seed=1)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and [i.item() for i in pool.images] == [0.0, 1.0, 2.0]
    state = pool.state_dict()
    swapped, given_before = [], {0.0, 1.0, 2.0}
    for step in range(50):
        batch = torch.tensor([10.0 + 2 * step, 11.0 + 2 * step]).view(2, 1, 1, 1)
        out = pool.query(batch).flatten().tolist()
        for image, given in zip(out, batch.flatten().tolist()):
            swapped.append(image != given)
            assert image == given or image in given_before  # a stored image takes its place
            given_before.add(given)
        assert len(pool.images) == 3 and {i.item() for i in pool.images} <= given_before
    assert 30 < sum(swapped) < 70  # about half of 100
    copy, original = ImagePool(3, seed=99), ImagePool(3, seed=1)
    copy.load_state_dict(state)
    original.load_state_dict(state)
    batch = torch.arange(20.0, 30.0).view(10, 1, 1, 1)
    assert torch.equal(copy.query(batch), original.query(batch))
    assert torch.equal(ImagePool(0).query(first), first)


def test_translator_output_lies_in_the_image_range_and_the_discriminator_scores_every_scale():
    x = torch.rand(2, 3, 16, 24)
    for image_range in ((-1.0, 1.0), (0.0, 1.0)):
        out = Translator(2, image_range)(to_image_range(x, image_range))
        assert out.shape == x.shape and image_range[0] <= out.min() and out.max() <= image_range[1]
    # 64 -> 32 -> 16 -> 8 -> 7 -> 6 patches; the second scale sees 32x32.
    assert [s.shape for s in Discriminator(2, scales=2)(torch.rand(2, 3, 64, 64))] == [(2, 1, 6, 6), (2, 1, 2, 2)]
    with pytest.raises(ValueError, match="multiples of 4"):
        Translator(2)(torch.zeros(1, 3, 18, 24))


def test_checkpoints_tell_translation_apart_and_older_ones_stay_usable(cfg, tmp_path):
    """A stage a made without translation is refused by a run with it, naming the
    setting; one made before checkpoints recorded the new settings (none of them
    in its record) was made at their defaults, and a default run takes it."""
    from desc_train.train import RECORDED_LATER, CheckpointError

    plain = dataclasses.replace(quick_config(Config()), data=cfg.data)
    Trainer(plain, str(tmp_path), log=quiet).run_stage("source_only", 1)
    path = os.path.join(str(tmp_path), "source_only.pt")
    with pytest.raises(CheckpointError, match="it was made with translation=false, this run has translation=true"):
        Trainer(dataclasses.replace(plain, translation=True), str(tmp_path), log=quiet).run_stage("source_only", 1)
    state = torch.load(path, weights_only=True)
    assert {"translation", "image_range"} <= state["made"]["settings"].keys()
    for name in RECORDED_LATER:
        state["made"]["settings"].pop(name, None)
    torch.save(state, path)
    assert Trainer(plain, str(tmp_path), log=quiet).run_stage("source_only", 1) == 0  # done already
