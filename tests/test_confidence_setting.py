"""The confidence= setting (none, labels, logits) and the trainer's path from a
split's segmenter scores (logits/ or certainty/) to the confidence map of
DESCLoss; the pieces of desc-train study confidence (boundary pixels, the
choice on target_val, the verdict rule)."""
import dataclasses
import os
import shutil

import numpy as np
import pytest
import torch

import desc_ops
from desc_train.config import Config, ConfigError, load_config
from desc_train.data import DepthDataset
from desc_train.data.dataset import read_certainty_logits
from desc_train.data.generate import generate_benchmark
from desc_train.data.layout import DataError, write_certainty
from desc_train.demo import quick_config
from desc_train.train import Trainer


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A tiny benchmark whose target split has the simulated segmenter's logits."""
    root = tmp_path_factory.mktemp("scored")
    generate_benchmark(str(root), {"source_train": 8, "target_train": 8}, size=(32, 96), workers=1, logits=True,
                       log=None)
    return dataclasses.replace(quick_config(Config()), data=str(root), out=str(root / "run"))


@pytest.mark.parametrize("item, value", [("confidence=none", "none"), ("confidence=LABELS", "labels"),
                                         ("confidence=logits", "logits"), ("confidence=true", "labels"),
                                         ("confidence=off", "none")])
def test_confidence_overrides_and_the_boolean_aliases(item, value):
    assert load_config(None, [item]).confidence == value


def test_confidence_in_a_toml_file(tmp_path):
    for text, value in (("true", "labels"), ("false", "none"), ('"logits"', "logits")):
        (tmp_path / "c.toml").write_text(f"confidence = {text}\n")
        assert load_config(str(tmp_path / "c.toml")).confidence == value
    (tmp_path / "c.toml").write_text("confidence = 1\n")
    with pytest.raises(ConfigError, match=r"c.toml: setting confidence: expected one of none, labels, logits .*got 1"):
        load_config(str(tmp_path / "c.toml"))


@pytest.mark.parametrize("item, message", [
    ("confidence=scores", r"setting confidence: expected one of none, labels, logits \(or true for labels, "
                          r"false for none\), got 'scores'"),
    ("edge_weight=-1", r"setting edge_weight: expected a finite number >= 0, got -1"),
    ("boundary_weight=1.5", r"setting boundary_weight: expected a number in \[0, 1\] \(a boundary pixel's weight"),
])
def test_confidence_settings_refuse_what_they_do_not_take(item, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [item])


def test_the_default_and_the_paper_preset_use_the_plain_mean():
    """The default follows the study (README, "Does the confidence map help?")."""
    assert Config().confidence == "none"
    assert load_config(None, preset="paper").confidence == "none"


def _spy(monkeypatch):
    """A dict that DESCLoss.forward fills with its semantic input and confidence switch."""
    seen = {}
    forward = desc_ops.DESCLoss.forward

    def spy(self, depth, **kw):
        seen.update(semantic=kw.get("semantic"), confidence=self.confidence)
        return forward(self, depth, **kw)

    monkeypatch.setattr(desc_ops.DESCLoss, "forward", spy)
    return seen


def _joint_step(cfg, seen, run_dir):
    """What DESCLoss got in one joint step of `cfg`, the target batch, and the terms."""
    trainer = Trainer(cfg, str(run_dir), log=quiet)
    src, tgt = trainer.batch(trainer.source, 1, 0), trainer.batch(trainer.target, 2, 0)
    with torch.no_grad():
        terms = {k: v.item() for k, v in trainer.terms("joint", src, tgt).items()}
    return dict(seen), tgt, terms


def test_logits_reach_the_confidence_map_in_training(scored, monkeypatch, tmp_path):
    """confidence=logits: DESCLoss weights the consistency by the map of the target's
    logits; labels: of its labels (the same batch, the same networks)."""
    seen = _spy(monkeypatch)
    runs = {mode: _joint_step(dataclasses.replace(scored, confidence=mode), seen, tmp_path / mode)
            for mode in ("logits", "labels")}
    seen, tgt, terms = runs["logits"]
    assert seen["confidence"] and seen["semantic"].dtype == torch.float32 and seen["semantic"].dim() == 4
    assert torch.equal(seen["semantic"], tgt["logits"])
    labels_seen, labels_tgt, labels_terms = runs["labels"]
    assert labels_seen["confidence"] and torch.equal(labels_seen["semantic"], labels_tgt["semantic"])
    assert torch.equal(labels_tgt["image"], tgt["image"])
    assert "logits" not in labels_tgt  # read only where the map reads them
    assert terms["consistency"] != pytest.approx(labels_terms["consistency"], rel=1e-4)
    assert terms["instance_prior"] == pytest.approx(labels_terms["instance_prior"], rel=1e-6)


def test_logits_on_a_split_without_scores_is_an_error_naming_it(scored, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(scored.data, bare, ignore=shutil.ignore_patterns("logits", "run"))
    cfg = dataclasses.replace(scored, data=str(bare), confidence="logits")
    target = os.path.join(str(bare), "target_train")
    with pytest.raises(DataError, match=rf"^{target}: confidence=logits reads the segmenter's scores, and the "
                                        r"target split has none \(no logits/ or certainty/\)"):
        Trainer(cfg, str(tmp_path / "run"), log=quiet)
    Trainer(dataclasses.replace(cfg, confidence="labels"), str(tmp_path / "run"), log=quiet)  # labels need none


def test_certainty_maps_stand_in_for_logits(scored, tmp_path):
    """A split with certainty/ (prepare segment --logits) and no logits/ gives the logits
    its certainty stands for, whose confidence map is that of the scores it was made of."""
    split = tmp_path / "target_train"
    shutil.copytree(os.path.join(scored.data, "target_train"), split)
    full = DepthDataset(str(split))
    for name in full.names:
        logits = torch.from_numpy(np.load(split / "logits" / f"{name}.npy").astype(np.float32))
        prob, label = torch.softmax(logits, 0).max(0)
        write_certainty(str(split), name, prob.numpy(), label.numpy().astype(np.uint8))
    originals = [full[i]["logits"] for i in range(2)]
    shutil.rmtree(split / "logits")
    ds = DepthDataset(str(split), scores=True)
    for i, original in enumerate(originals):
        got = ds[i]["logits"]
        assert torch.equal(got, read_certainty_logits(str(split), ds.names[i], ds.meta))
        torch.testing.assert_close(desc_ops.confidence_map(got[None]), desc_ops.confidence_map(original[None]),
                                   atol=1e-4, rtol=0)
    assert "logits" not in DepthDataset(str(split), scores=False)[0]
    os.remove(split / "certainty" / f"{ds.names[1]}.npz")
    with pytest.raises(DataError, match=rf"frame {ds.names[1]} has no segmenter scores"):
        ds[1]
    assert "logits" not in DepthDataset(str(split))[1]  # scores None: where the frame has them


# ------------------------------------------------------------ desc-train study confidence
def test_boundary_mask_by_hand():
    from desc_train.confidence_study import boundary_mask

    semantic = torch.zeros(1, 3, 12, dtype=torch.long)
    semantic[:, :, 6:] = 1  # one vertical boundary between columns 5 and 6
    want = torch.zeros(1, 3, 12, dtype=torch.bool)
    want[:, :, 3:9] = True  # within 2 px of columns 5 and 6, the boundary's two sides
    assert torch.equal(boundary_mask(semantic, px=2), want)
    assert not boundary_mask(torch.zeros(1, 4, 4, dtype=torch.long)).any()


def test_candidates_are_chosen_on_target_val_alone():
    from desc_train.confidence_study import FAMILIES, choose

    seeds = [0, 1]
    per_stage = {}
    for family in FAMILIES.values():
        for rank, stage in enumerate(family):
            val, test = 1.0 - 0.1 * rank, 1.0 + 0.1 * rank  # the test split says the opposite
            per_stage[stage] = {s: {"target_val": {"all": {"abs_rel": val}}, "target_test": {"all": {"abs_rel": test}}}
                                for s in seeds}
    chosen = choose(per_stage, seeds)
    assert chosen == {family: list(members)[-1] for family, members in FAMILIES.items()}


@pytest.mark.parametrize("ratios, wins", [([0.90, 0.90, 0.90], True), ([0.93, 0.94, 0.95], True),
                                          ([0.80, 1.00, 0.90], False), ([0.96, 0.96], False), ([1.0], False)])
def test_a_win_is_a_five_percent_gain_beyond_the_spread(ratios, wins):
    from desc_train.confidence_study import verdict

    assert verdict(ratios) is wins


def test_study_plan_trains_every_joint_stage_from_stage_b_seed_after_seed():
    from desc_train.confidence_study import ROWS, study_plan, stages

    cfg = Config()
    jobs = study_plan(cfg, [3, 4])
    assert [j.seed for j in jobs] == sorted(j.seed for j in jobs)
    for seed in (3, 4):
        mine = {j.stage: j for j in jobs if j.seed == seed}
        assert set(mine) == {"source_only", "semantic", *stages()}
        assert mine["semantic"].after == "source_only" and mine["semantic"].steps == cfg.iters_sem
        for stage, settings in stages().items():
            assert (mine[stage].kind, mine[stage].after, mine[stage].steps) == ("joint", "semantic", cfg.iters_joint)
            assert mine[stage].settings == settings
    assert {stage for stage, _ in ROWS.values()} <= set(stages())
    assert len({tuple(sorted(s.items())) for s in stages().values()}) == len(stages())  # no stage twice


def test_a_joint_checkpoint_from_before_the_named_settings_reads_as_it_meant():
    """confidence true/false and no edge_weight, boundary_weight: labels/none with the defaults."""
    from desc_train.train import provenance_difference

    data = {"source": {"frames": 1, "meta_sha256": "a"}}
    now = dict(kind="joint", data=data, settings=dict(seed=0, confidence="labels", edge_weight=1.0,
                                                      boundary_weight=0.5))
    old = dict(kind="joint", data=data, settings=dict(seed=0, confidence=True))
    assert provenance_difference(old, now) is None
    old["settings"]["confidence"] = False
    assert provenance_difference(old, now) == 'it was made with confidence="none", this run has confidence="labels"'
    now["settings"].update(confidence="none", edge_weight=4.0)
    assert provenance_difference(old, now) == "it was made with edge_weight=1.0, this run has edge_weight=4.0"
