"""DESC + stereo in training: DESCLoss's stereo term (docs/ops.md §6, "DESCLoss") and
the trainer's joint step with stereo_weight on a generated split with right views."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

import desc_ops
from desc_train.config import Config
from desc_train.demo import ensure_data, quick_config
from desc_train.train import Trainer

from helpers import assert_close

quiet = lambda *_: None  # noqa: E731


@pytest.mark.parametrize("image_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_desc_loss_stereo_term_is_the_operator_at_every_scale(image_range):
    """Each scale: the images area-averaged to its size and mapped to [0, 1],
    focal x baseline scaled to its width; its own weight."""
    g = torch.Generator().manual_seed(3)
    depths = [torch.rand(2, 1, 16 // 2 ** i, 32 // 2 ** i, generator=g, dtype=torch.float64) * 20 + 1
              for i in range(3)]
    unit = [torch.rand(2, 3, 16, 32, generator=g, dtype=torch.float64) for _ in range(2)]
    lo, hi = image_range
    image, other = (u * (hi - lo) + lo for u in unit)
    fb = torch.tensor([30.0, -12.0], dtype=torch.float64)
    out = desc_ops.DESCLoss(consistency_weight=0, instance_weight=0, smoothness_weight=0,
                            stereo_weight=[2.0, 0.0, 0.5], image_range=image_range)(
        depths, image=image, image_other=other, focal_baseline=fb)
    want = 0
    for i, w in ((0, 2.0), (2, 0.5)):
        size = depths[i].shape[-2:]
        left, right = (F.interpolate(u, size=size, mode="area") for u in unit)
        want = want + w * desc_ops.stereo_photometric_loss(depths[i], left, right, fb / 2 ** i)
    assert set(out.terms) == {"stereo", "stereo@2"}
    assert_close(out.total, want)


def test_desc_loss_stereo_term_needs_its_inputs():
    with pytest.raises(ValueError, match="image_other and focal_baseline are needed for the stereo term"):
        desc_ops.DESCLoss(consistency_weight=0, instance_weight=0, smoothness_weight=0, stereo_weight=1.0)(
            torch.rand(1, 1, 8, 8) + 1, image=torch.rand(1, 3, 8, 8))


@pytest.fixture(scope="module")
def stereo_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("stereo")
    cfg = dataclasses.replace(quick_config(Config()), data=str(root / "data"), out=str(root / "run"),
                              stereo_weight=1.0)
    ensure_data(cfg, log=quiet)  # target_train with its right views
    return cfg


def _joint_terms(cfg, run_dir):
    torch.manual_seed(0)
    trainer = Trainer(cfg, run_dir, log=quiet)
    src, tgt = trainer.batch(trainer.source, 1, 0), trainer.batch(trainer.target, 2, 0)
    return {k: v.detach() for k, v in trainer.terms("joint", src, tgt).items()}


def test_a_joint_step_with_stereo_through_the_extension_and_the_reference(stereo_cfg, tmp_path):
    ext = _joint_terms(stereo_cfg, str(tmp_path / "ext"))
    desc_ops.set_backend("reference")
    ref = _joint_terms(stereo_cfg, str(tmp_path / "ref"))
    assert "stereo" in ext and ext["stereo"] > 0
    assert ext.keys() == ref.keys()
    for name in ext:
        assert_close(ext[name], ref[name], torch.float32, rtol=1e-4, atol=1e-5)
    off = _joint_terms(dataclasses.replace(stereo_cfg, stereo_weight=0.0), str(tmp_path / "off"))
    assert "stereo" not in off


def test_stereo_on_a_split_without_right_views_names_it(stereo_cfg, tmp_path):
    cfg = dataclasses.replace(stereo_cfg, target_split="target_test")
    with pytest.raises(Exception, match="target_test.*right views"):
        Trainer(cfg, str(tmp_path), log=quiet)
