"""Style translation as DESC's official stage 1 runs it, after T2Net (Zheng et al.,
ECCV 2018): S2T, a ResNet generator that gives source images the target's look,
trained against a PatchGAN discriminator with least-squares (LSGAN) losses, an
identity term on target images and a pool of past translations.

Written from the official networks' structure and losses (alopezgit/DESC,
``models/networks.py`` ``_ResGeneratorT2Net``, ``_MultiscaleDiscriminator``;
``models/DESC_model.py`` ``backward_G``, ``backward_D_basic_list``;
``utils/image_pool.py``). Every network here works on images in the trainer's
image range ([-1, 1] in the official code; ``Config.image_range``).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

RESIDUAL_BLOCKS = 7  # the official n_blocks=9 counts the two downsampling stages among its blocks
DISCRIMINATOR_LAYERS = 3  # the official n_layers_D


def _conv(cin: int, cout: int, kernel: int, *, stride: int = 1, reflect: int = 0, zero: int = 0,
          bias: bool = False) -> nn.Sequential:
    """A convolution, padded by reflection (`reflect`) or zeros (`zero`); no bias
    before a BatchNorm, as the official networks."""
    layers: List[nn.Module] = [nn.ReflectionPad2d(reflect)] if reflect else []
    layers.append(nn.Conv2d(cin, cout, kernel, stride=stride, padding=zero, bias=bias))
    return nn.Sequential(*layers)


class _EncoderBlock(nn.Module):
    """conv 3x3 -> BN -> PReLU, twice (zero padding), then 2x2 average pooling."""

    def __init__(self, cin: int, cout: int, act: nn.Module):
        super().__init__()
        self.body = nn.Sequential(_conv(cin, cout, 3, zero=1), nn.BatchNorm2d(cout), act,
                                  _conv(cout, cout, 3, zero=1), nn.BatchNorm2d(cout), act)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.body(x))


class _ResidualBlock(nn.Module):
    """T2Net's inception block of width 1: ``act(x + BN(conv(act(BN(conv(x))))))``,
    reflection-padded 3x3 convolutions."""

    def __init__(self, channels: int, act: nn.Module):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, 3, reflect=1), nn.BatchNorm2d(channels), act,
                                  _conv(channels, channels, 3, reflect=1), nn.BatchNorm2d(channels))
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


class _UpBlock(nn.Module):
    """Reflection-padded conv 3x3 -> BN -> PReLU -> transposed conv 3x3, stride 2
    (with bias, as the official one) -> BN -> PReLU: twice the resolution."""

    def __init__(self, cin: int, cout: int, act: nn.Module):
        super().__init__()
        self.body = nn.Sequential(_conv(cin, cin, 3, reflect=1), nn.BatchNorm2d(cin), act,
                                  nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1),
                                  nn.BatchNorm2d(cout), act)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Translator(nn.Module):
    """S2T, the official ``_ResGeneratorT2Net(3, 3, width, 9, 'batch', 'PReLU')``:

    * stem: reflection pad 3, conv 7x7 (3 -> w), BN, PReLU;
    * two encoder blocks (w -> 2w, 2w -> 2w), each halving the resolution;
    * ``RESIDUAL_BLOCKS`` residual blocks of 2w channels at 1/4 resolution;
    * two up blocks (2w -> 2w, 2w -> w);
    * head: reflection pad 3, conv 7x7 (w -> 3, with bias), ``tanh``.

    One PReLU (one learned slope) serves every layer: the official generator
    hands one module to all of them. The official ``forward`` returns
    ``[features, image]`` and DESC takes ``fake[1:]``, the image alone, so the
    translation has one scale. Here ``forward`` returns the image, ``tanh``
    mapped onto `image_range` (for the official (-1, 1), ``tanh`` itself).
    H and W must be multiples of 4.
    """

    def __init__(self, width: int = 64, image_range: Tuple[float, float] = (-1.0, 1.0),
                 blocks: int = RESIDUAL_BLOCKS):
        super().__init__()
        w, act = width, nn.PReLU()
        self.image_range = tuple(float(v) for v in image_range)
        self.stem = nn.Sequential(_conv(3, w, 7, reflect=3), nn.BatchNorm2d(w), act)
        self.encoder = nn.Sequential(_EncoderBlock(w, 2 * w, act), _EncoderBlock(2 * w, 2 * w, act))
        self.blocks = nn.Sequential(*(_ResidualBlock(2 * w, act) for _ in range(blocks)))
        self.decoder = nn.Sequential(_UpBlock(2 * w, 2 * w, act), _UpBlock(2 * w, w, act))
        self.head = _conv(w, 3, 7, reflect=3, bias=True)

    def forward(self, image: Tensor) -> Tensor:
        if image.shape[-1] % 4 or image.shape[-2] % 4:
            raise ValueError(f"Translator: height and width must be multiples of 4, got {tuple(image.shape[-2:])}")
        out = torch.tanh(self.head(self.decoder(self.blocks(self.encoder(self.stem(image))))))
        lo, hi = self.image_range
        return out if (lo, hi) == (-1.0, 1.0) else lo + (hi - lo) / 2 * (out + 1)


class _PatchDiscriminator(nn.Module):
    """The official ``_Discriminator(3, width, layers, 'batch', 'PReLU')``, a PatchGAN:
    conv 4x4 stride 2 (3 -> w) and PReLU; ``layers - 1`` times conv 4x4 stride 2,
    BN, PReLU, doubling the channels (at most 8w); conv 4x4 stride 1, BN, PReLU;
    conv 4x4 stride 1 to one channel (with bias). Every convolution zero-pads by 1;
    one PReLU serves the whole network."""

    def __init__(self, width: int, layers: int):
        super().__init__()
        act = nn.PReLU()
        mult = [min(2 ** i, 8) for i in range(layers + 1)]
        body: List[nn.Module] = [_conv(3, width, 4, stride=2, zero=1), act]
        for i in range(1, layers):
            body += [_conv(width * mult[i - 1], width * mult[i], 4, stride=2, zero=1),
                     nn.BatchNorm2d(width * mult[i]), act]
        body += [_conv(width * mult[layers - 1], width * mult[layers], 4, zero=1), nn.BatchNorm2d(width * mult[layers]),
                 act, _conv(width * mult[layers], 1, 4, zero=1, bias=True)]
        self.body = nn.Sequential(*body)

    def forward(self, image: Tensor) -> Tensor:
        return self.body(image)


class Discriminator(nn.Module):
    """The official ``_MultiscaleDiscriminator(3, width, layers, scales, 'batch', 'PReLU')``:
    one PatchGAN per scale, scale ``i`` seeing the image average-pooled (3x3,
    stride 2, padding 1, padding left out of the mean) ``i`` times. DESC uses one
    scale. ``forward`` returns the patch scores of every scale, ``[(B, 1, h_i, w_i)]``."""

    def __init__(self, width: int = 64, layers: int = DISCRIMINATOR_LAYERS, scales: int = 1):
        super().__init__()
        self.scales = nn.ModuleList([_PatchDiscriminator(width, layers) for _ in range(scales)])
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, image: Tensor) -> List[Tensor]:
        scores = []
        for i, net in enumerate(self.scales):
            if i:
                image = self.down(image)
            scores.append(net(image))
        return scores


# ------------------------------------------------------------ losses
def generator_loss(fake_scores: Sequence[Tensor]) -> Tensor:
    """S2T's LSGAN term: ``sum_i mean((D_i(fake) - 1)^2)`` over the discriminator's scales."""
    return sum((s - 1).square().mean() for s in fake_scores)


def discriminator_loss(real_scores: Sequence[Tensor], fake_scores: Sequence[Tensor]) -> Tensor:
    """The discriminator's LSGAN loss: ``sum_i (mean((D_i(real) - 1)^2) + mean(D_i(fake)^2)) / 2``."""
    return sum(0.5 * ((r - 1).square().mean() + f.square().mean()) for r, f in zip(real_scores, fake_scores))


def identity_loss(translated_target: Tensor, target: Tensor) -> Tensor:
    """``mean |S2T(x_t) - x_t|``: a target image is already in the target's look."""
    return (translated_target - target).abs().mean()


# ------------------------------------------------------------ the pool of fakes
class ImagePool:
    """Up to `size` past translations, which the discriminator sees in place of
    some of the current ones (Shrivastava et al., 2017; the official
    ``ImagePool(20)``): each image of a batch in turn is stored and returned while
    the pool has room; once it is full, with probability 1/2 the image replaces
    a stored one drawn uniformly, which is returned in its place, else it is
    returned itself. ``size=0``: the batch as it is.

    The draws come from the pool's own generator (seeded by `seed`), and
    ``state_dict`` holds the stored images and the generator's state, so that a
    resumed run draws what an uninterrupted one does."""

    def __init__(self, size: int, seed: int = 0):
        self.size = size
        self.images: List[Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.generator).item() > 0.5:
                k = int(torch.randint(self.size, (), generator=self.generator))
                out.append(self.images[k])
                self.images[k] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> Dict[str, Tensor]:
        images = torch.stack(self.images) if self.images else torch.empty(0)
        return {"images": images, "generator": self.generator.get_state()}

    def load_state_dict(self, state: Dict[str, Tensor]) -> None:
        self.images = [image.clone() for image in state["images"]]
        self.generator.set_state(state["generator"].cpu())
