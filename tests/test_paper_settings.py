"""`--preset paper` against docs/paper-settings.md (read here, so that the two
cannot drift apart), and the official formulas written out independently, from
alopezgit/DESC @ d670a9d, beside ours on the same tensors: the smoothness term
on images in [-1, 1] (networks.SmoothLoss, DESC_model.py:459-470), the instance
prior with the learned scale (DESC_model.py:446-457), and T2Net's losses
(DESC_model.py:334-353, 483-492)."""
import dataclasses
import os
import re

import pytest
import torch
import torch.nn.functional as F

import desc_ops
from desc_train.config import PRESETS, Config, load_config
from desc_train.demo import ensure_data, quick_config
from desc_train.models import MAX_DEPTH, to_image_range
from desc_train.train import Trainer, target_objective

TABLE = os.path.join(os.path.dirname(__file__), "..", "docs", "paper-settings.md")
quiet = lambda *_: None  # noqa: E731


def table_settings():
    """(setting, value) of every row of the table that names a setting of ours."""
    rows = []
    for line in open(TABLE, encoding="utf-8"):
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) != 6 or cells[0] in ("official setting", "---"):
            continue
        setting, value = (re.fullmatch(r"`([^`]+)`", c) for c in cells[3:5])
        if setting or value or cells[3] != "—":
            assert setting and value, f"a row naming a setting needs its value, both in backquotes: {line}"
            rows.append((setting.group(1), value.group(1)))
    return rows


def test_the_table_holds_the_paper_preset():
    paper = load_config(None, preset="paper")
    rows = table_settings()
    assert len(rows) > 20
    for name, text in rows:  # read as --set reads it
        assert getattr(load_config(None, [f"{name}={text}"]), name) == getattr(paper, name), (name, text)
    assert {name for name, _ in rows} == set(PRESETS["paper"])


def test_paper_stereo_is_paper_with_the_stereo_term():
    stereo, paper = load_config(None, preset="paper-stereo"), load_config(None, preset="paper")
    changed = {f.name for f in dataclasses.fields(Config) if getattr(stereo, f.name) != getattr(paper, f.name)}
    assert changed == {"stereo_weight", "out"} and stereo.stereo_weight == 50.0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    cfg = dataclasses.replace(quick_config(Config()), data=str(root / "data"))
    ensure_data(cfg, log=quiet)
    return cfg.data


def paper_cfg(data, **changes):
    """The paper preset on the CPU, at widths a test can afford."""
    cfg = load_config(None, ["device=cpu", "width=4", "translation_width=2", "batch_size=2", f"data={data}"],
                      preset="paper")
    return dataclasses.replace(cfg, **changes)


# ------------------------------------------------------------ smoothness on images in [-1, 1]
def official_smooth_loss(depth, image):
    """networks.SmoothLoss (sem_seg=0): gradients along each axis, weighted by
    exp(-mean over channels |image gradient|), mean absolute value of each."""
    dgx, dgy = depth[:, :, :-1, :] - depth[:, :, 1:, :], depth[:, :, :, :-1] - depth[:, :, :, 1:]
    igx, igy = image[:, :, :-1, :] - image[:, :, 1:, :], image[:, :, :, :-1] - image[:, :, :, 1:]
    wx = torch.exp(-torch.mean(torch.abs(igx), 1, True))
    wy = torch.exp(-torch.mean(torch.abs(igy), 1, True))
    return torch.mean(torch.abs(dgx * wx)) + torch.mean(torch.abs(dgy * wy))


def official_smoothness(outputs, image, lambda_sm=0.01):
    """DESC_model.py:459-470: the network's outputs coarsest first, zipped with the
    image pyramid (nearest-neighbour, dataset_util.scale_pyramid), coarsest first,
    weight lambda_Sm / 2**i."""
    pyramid = [image] + [F.interpolate(image, size=(image.shape[2] // 2 ** i, image.shape[3] // 2 ** i),
                                       mode="nearest") for i in range(1, len(outputs))]
    return sum(official_smooth_loss(o, img) * lambda_sm / 2 ** i
               for i, (o, img) in enumerate(zip(outputs, pyramid[::-1])))


def test_the_smoothness_term_is_the_official_on_images_in_minus_1_1(data):
    """The paper's source-only objective on G_rgb's four scales (metres) and a
    target image equals the official smoothness on the tanh outputs and the image
    normalised to [-1, 1]. The image is constant on 8x8 blocks, where the
    official nearest-neighbour pyramid and our area average agree."""
    cfg = paper_cfg(data)
    g = torch.Generator().manual_seed(0)
    tanh = [torch.rand(2, 1, 32 // 2 ** i, 64 // 2 ** i, generator=g, dtype=torch.float64) * 2 - 1 for i in range(4)]
    image = torch.rand(2, 3, 4, 8, generator=g, dtype=torch.float64).repeat_interleave(8, 2).repeat_interleave(8, 3)
    ours = target_objective(cfg, "source_only")([MAX_DEPTH / 2 * (o + 1) for o in tanh],
                                                image=to_image_range(image, cfg.image_range))
    official = official_smoothness(tanh[::-1], (image - 0.5) / 0.5)
    torch.testing.assert_close(ours.weighted["smoothness"], official, rtol=1e-12, atol=0)
    # What the range changes: the same depths with [0, 1] images weigh edges otherwise.
    plain = target_objective(dataclasses.replace(cfg, image_range=(0.0, 1.0)), "source_only")
    assert not torch.allclose(plain([MAX_DEPTH / 2 * (o + 1) for o in tanh], image=image).weighted["smoothness"],
                              official, rtol=1e-3)


def test_the_trainer_hands_the_smoothness_term_images_in_its_range(data, tmp_path, monkeypatch):
    seen = []
    forward = desc_ops.SmoothnessLoss.forward
    monkeypatch.setattr(desc_ops.SmoothnessLoss, "forward", lambda self, d, image: seen.append(image) or
                        forward(self, d, image))
    trainer = Trainer(paper_cfg(data, translation=False), str(tmp_path), log=quiet)
    tgt = trainer.batch(trainer.target, 2, 0)
    trainer.terms("source_only", trainer.batch(trainer.source, 1, 0), tgt)
    assert len(seen) == 4 and seen[0].min() < -0.5  # the finest scale's image, in [-1, 1]
    torch.testing.assert_close(seen[0], tgt["image"] * 2 - 1, rtol=0, atol=0)


# ------------------------------------------------------------ the instance prior with the learned scale
def official_instance_term(out_t, pseudo, scale, lambda_t=1.0, max_depth=80.0):
    """DESC_model.py:446-457: `pseudo` the pseudo-depth map in metres, -1 off instances."""
    mask = pseudo != -1
    pseudo = pseudo.clamp(0, max_depth * scale.item())
    pseudo = pseudo / scale
    pseudo = pseudo / max_depth * 2 - 1  # transform_depth(to_meters=0)
    return scale * (lambda_t * (out_t - pseudo)[mask].abs().mean())


@pytest.mark.parametrize("clamped_share", [0.0, 0.5])
def test_the_instance_term_with_the_learned_scale_is_the_official(data, tmp_path, clamped_share):
    """One joint step's instance prior under the paper preset, against the official
    term built from the same G_rgb output, G_h heights and scale: the value and
    the gradients to the scale, to G_rgb's depth and to G_h's heights, with s set
    so that none or half of the instances' pseudo-depths are clamped at 80 s."""
    trainer = Trainer(paper_cfg(data, translation=False, consistency_weight=0.0, smoothness_weight=0.0),
                      str(tmp_path), log=quiet)
    src, tgt = trainer.batch(trainer.source, 1, 0), trainer.batch(trainer.target, 2, 0)
    st = desc_ops.instance_stats(tgt["instance_ids"], trainer.K)
    prior = st.count > 0
    with torch.no_grad():
        z = tgt["focal"][:, None] * trainer._predict_heights(tgt, st) / st.pixel_height.clamp(min=1)
        z = z[prior].sort().values
        # Half way between two instances' pseudo-depths, or above all of them: no instance at the bound.
        bound = (z[len(z) // 2 - 1] + z[len(z) // 2]) / 2 if clamped_share else 1.25 * z[-1]
        trainer.prior_scale.s.fill_(bound.item() / MAX_DEPTH)
    depths, heights = [], []
    trainer.g_rgb.register_forward_hook(lambda m, args, out: depths.append(out[0]))
    trainer.g_h.register_forward_hook(lambda m, args, out: heights.append(out))
    ours = trainer.terms("joint", src, tgt)["instance_prior"]
    depth, heights = depths[-1], heights[-1]  # the target pass of each (after the source's)
    s = trainer.prior_scale.s
    z = tgt["focal"][:, None] * heights / st.pixel_height.clamp(min=1)
    pseudo = torch.full_like(depth, -1.0)
    for b, k in prior.nonzero().tolist():
        pseudo[b, 0] = torch.where(tgt["instance_ids"][b] == k, z[b, k], pseudo[b, 0])
    clamped = (z > MAX_DEPTH * s.item()) & prior
    assert clamped.any() == bool(clamped_share) and (prior & ~clamped).any()
    official = official_instance_term(depth / (MAX_DEPTH / 2) - 1, pseudo, s)
    torch.testing.assert_close(ours, official, rtol=1e-5, atol=0)
    mine, theirs = (torch.autograd.grad(loss, [s, depth, heights], retain_graph=True) for loss in (ours, official))
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-9)


# ------------------------------------------------------------ T2Net's losses
def official_generator_loss(net_d, translated_source, translated_target, target, lambda_idt=100.0, lambda_gan=1.0):
    """DESC_model.py:483-492."""
    loss = lambda_idt * torch.nn.L1Loss()(translated_target, target)
    for d_fake in net_d(translated_source):
        loss = loss + lambda_gan * torch.mean((d_fake - 1.0) ** 2)
    return loss


def official_discriminator_loss(net_d, real, fake):
    """DESC_model.py:334-353 (backward_D_basic_list, detach=1) on one pyramid level."""
    loss = 0
    for real_i, fake_i in zip([real], [fake]):
        for d_real, d_fake in zip(net_d(real_i.detach()), net_d(fake_i.detach())):
            loss += (torch.mean((d_real - 1.0) ** 2) + torch.mean((d_fake - 0.0) ** 2)) * 0.5
    return loss


def test_the_translation_losses_are_t2nets(data, tmp_path):
    """Stage a's identity and GAN terms, and the discriminator's loss and
    gradients, against the official formulas on the same S2T output, target batch
    and discriminator (pool of size 0: the fakes are the translations themselves)."""
    trainer = Trainer(paper_cfg(data, pool_size=0), str(tmp_path), log=quiet)
    trainer.s2t.train()
    trainer.d_s2t.train()
    both = []
    trainer.s2t.register_forward_hook(lambda m, args, out: both.append(out))
    src, tgt = trainer.batch(trainer.source, 1, 0), trainer.batch(trainer.target, 2, 0)
    terms = trainer.terms("source_only", src, tgt)
    n, target = src["image"].shape[0], tgt["image"] * 2 - 1
    ours = terms["identity"] + terms["gan"]
    official = official_generator_loss(trainer.d_s2t, both[0][:n], both[0][n:], target)
    torch.testing.assert_close(ours, official, rtol=1e-6, atol=0)
    (a,), (b,) = (torch.autograd.grad(loss, [both[0]], retain_graph=True) for loss in (ours, official))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-10)

    value = trainer.discriminator_gradients()
    grads = [p.grad.clone() for p in trainer.d_s2t.parameters()]
    official = official_discriminator_loss(trainer.d_s2t, target, both[0][:n])
    assert value == pytest.approx(official.item(), rel=1e-6)
    for a, b in zip(grads, torch.autograd.grad(official, list(trainer.d_s2t.parameters()))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)
