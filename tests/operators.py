"""The registry of the public operators' sample inputs, in the style of
PyTorch's OpInfo: per operator of ``desc_ops.functional.__all__``, how to build
its inputs for a device and dtype, the samples (sizes and options) that the
families of operator tests run, which arguments are differentiable, and the
reference to compare with.

The families (tests/test_op_*.py) run every operator from here:

* ``samples``: the inputs whose outputs and gradients must match the
  reference (every dtype), and stay the same bits in other layouts;
* ``core``: a few small samples away from the kinks of |.| and clamps, for
  gradcheck (float64), opcheck and the gradient of each argument alone, and
  with a dimension of size 0;
* ``large``: sizes where work is split between threads and CUDA blocks (the
  determinism and CUDA rows).

A sample is a name, sizes (B, C classes, H, W, K slots) and options, which
``OpInfo.make`` turns into the keyword arguments of the public function.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

import desc_ops
from desc_ops import _args, reference
from desc_ops import functional

from helpers import DTYPES, leaf, maybe_noncontiguous, seed

SIZES = dict(B=2, C=5, H=6, W=7, K=3)
# Where work is split between threads (CPU) and many blocks (CUDA), K = 1500
# taking the instance kernels' global-atomics path.
LARGE = [dict(B=3, C=19, H=96, W=160, K=12), dict(B=3, C=19, H=70, W=300, K=1500)]


@dataclass(frozen=True)
class Sample:
    name: str
    sizes: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    # The dtypes this sample runs in when not every one is different (labels
    # without an image give a float32 map whatever dtype was asked for).
    dtypes: Optional[tuple] = None

    def size(self):
        return dict(SIZES, **self.sizes)

    def resized(self, **sizes):
        return Sample(f"{self.name}-{'-'.join(f'{k}{v}' for k, v in sizes.items())}",
                      dict(self.sizes, **sizes), self.options, self.dtypes)


@dataclass(frozen=True)
class OpInfo:
    name: str
    # make(device, dtype, generator, smooth, options, B, C, H, W, K) -> public keyword arguments.
    make: Callable
    samples: tuple
    core: tuple
    large: tuple
    differentiable: tuple = ()
    dtypes: tuple = tuple(DTYPES)
    # Outputs compared bit for bit with the reference (integers are always).
    exact: tuple = ()
    # The CPU training form of the operator (same schema arguments, more outputs).
    training_form: Optional[str] = None

    @property
    def fn(self):
        return getattr(desc_ops, self.name)

    @property
    def reference(self):
        return getattr(reference, self.name)

    @property
    def operator(self):
        return getattr(torch.ops.desc_ops, self.name).default

    def kwargs(self, sample, device, dtype, layout="contiguous", smooth=False):
        """The public keyword arguments of `sample`, the same values for the same
        (operator, sample, dtype) on every device and in every layout."""
        g = torch.Generator().manual_seed(seed(self.name, sample.name, str(dtype)))
        kw = self.make(torch.device(device), dtype, g, smooth, dict(sample.options), **sample.size())
        return {k: relayout(v, layout) for k, v in kw.items()}

    def schema_args(self, kwargs):
        """The arguments of the compiled operator in schema order, from the
        public ones (desc_ops._args, as the public function converts them)."""
        bound = inspect.signature(self.fn).bind(**kwargs)
        bound.apply_defaults()
        convert = ARGS[self.name]
        names = [p for p in inspect.signature(convert).parameters if p != "dtype"]
        return convert(*(bound.arguments[p] for p in names))

    def sample_dtypes(self, sample):
        return sample.dtypes or self.dtypes


LAYOUTS = ("contiguous", "strided", "transposed")


def relayout(t, layout):
    """The same values in another memory layout: every other element of a wider
    tensor along the last dimension ("strided"), or the last two dimensions
    swapped in memory ("transposed")."""
    if not torch.is_tensor(t) or layout == "contiguous" or t.dim() == 0:
        return t
    if layout == "strided":
        return maybe_noncontiguous(t, contiguous=False)
    if t.dim() < 2:
        return t.flip(0).contiguous().flip(0) if t.numel() > 1 else t
    return t.transpose(-1, -2).contiguous().transpose(-1, -2)


ARGS = {
    "confidence_map": _args.confidence,
    "consistency_loss": _args.consistency,
    "semantic_consistency_loss": _args.semantic_consistency,
    "instance_stats": _args.stats,
    "instance_prior_loss": _args.prior,
    "smoothness_loss": _args.smoothness,
    "stereo_photometric_loss": _args.stereo,
}


# ---------------------------------------------------------------- input makers


def _depth(B, H, W, dtype, device, g, low=0.5, high=10.0):
    return (torch.rand(B, 1, H, W, generator=g, dtype=torch.float64) * (high - low) + low).to(device, dtype)


def _semantic(kind, B, C, H, W, dtype, device, g):
    if kind == "logits":
        return (torch.randn(B, C, H, W, generator=g, dtype=torch.float64) * 3).to(device, dtype)
    labels = torch.randint(-1, max(C, 1), (B, H, W), generator=g)
    labels[:, : H // 2, : W // 2] = 0  # a region without boundaries
    return labels.to(device, torch.int32 if kind == "labels32" else torch.int64)


def _edge_source(source, B, H, W, dtype, device, g):
    if source == "none":
        return {}
    if source == "edges":
        return {"edges": torch.rand(B, 1, H, W, generator=g, dtype=torch.float64).to(device, dtype)}
    channels = 1 if source == "gray" else 3
    return {"image": torch.rand(B, channels, H, W, generator=g, dtype=torch.float64).to(device, dtype)}


def _away_from(depth, g, low=0.1):
    """depth moved by at least `low` up or down: away from the kink of |depth - x|."""
    offset = torch.rand(depth.shape, generator=g, dtype=torch.float64) + low
    sign = torch.where(torch.rand(depth.shape, generator=g) > 0.5, 1.0, -1.0).double()
    return (depth.double().cpu() + offset * sign).to(depth.device, depth.dtype)


def make_confidence(device, dtype, g, smooth, o, B, C, H, W, K):
    kw = dict(semantic=_semantic(o.pop("kind", "logits"), B, C, H, W, dtype, device, g))
    kw.update(_edge_source(o.pop("source", "rgb"), B, H, W, dtype, device, g))
    return dict(kw, edge_weight=0.7, boundary_weight=0.4, **o)


def make_consistency(device, dtype, g, smooth, o, B, C, H, W, K):
    depth = _depth(B, H, W, dtype, device, g)
    depth_sem = _away_from(depth, g) if smooth else _depth(B, H, W, dtype, device, g)
    return dict(depth=depth, depth_sem=depth_sem, weight=_depth(B, H, W, dtype, device, g, 0, 1), **o)


def make_semantic_consistency(device, dtype, g, smooth, o, B, C, H, W, K):
    kind, source = o.pop("kind", "logits"), o.pop("source", "rgb")
    kw = make_consistency(device, dtype, g, smooth, {}, B, C, H, W, K)
    del kw["weight"]
    kw["semantic"] = _semantic(kind, B, C, H, W, dtype, device, g)
    kw.update(_edge_source(source, B, H, W, dtype, device, g))
    # The confidence comes back with the labels' samples: both forms of the result.
    return dict(kw, edge_weight=0.8, boundary_weight=0.3, ignore_classes=[4], return_confidence=kind != "logits",
                **o)


def _ids(B, H, W, K, g, device, dtype=torch.int64, fill=0.5):
    ids = torch.randint(0, max(K, 1), (B, H, W), generator=g)
    ids[torch.rand(B, H, W, generator=g) > fill] = -1
    if K == 0:
        ids.fill_(-1)
    return ids.to(device, dtype)


def make_stats(device, dtype, g, smooth, o, B, C, H, W, K):
    ids = _ids(B, H, W, K, g, device, o.pop("id_dtype", torch.int64))
    kw = dict(instance_ids=ids, num_instances=K, **o)
    if kw.pop("with_depth", True):
        d = torch.rand(B, 1, H, W, generator=g, dtype=torch.float64) * 80 + 0.1
        bad = torch.rand(B, 1, H, W, generator=g)  # NaN, inf, 0 and negative depths are not valid
        d[bad < 0.05] = float("nan")
        d[(bad >= 0.05) & (bad < 0.08)] = float("inf")
        d[(bad >= 0.08) & (bad < 0.11)] = 0.0
        d[(bad >= 0.11) & (bad < 0.13)] = -3.0
        kw["depth"] = d.to(device, dtype)
    return kw


def pseudo_depths(ids, heights, focal):
    """z of every non-empty slot, unclamped, and the slots' pixel counts."""
    st = reference.instance_stats(ids, heights.shape[1])
    focal = torch.as_tensor(focal, dtype=torch.float64, device=heights.device).reshape(-1, 1)
    z = focal * heights.double().nan_to_num(0) / st.pixel_height.clamp(min=1).double()
    return z[st.count > 0], st.count[st.count > 0]


def acting_option(option, ids, heights, focal):
    """min_pixels that excludes some slots and keeps others, or a max_depth
    half-way between two pseudo-depths (some clamp, none on the kink)."""
    z, count = pseudo_depths(ids, heights, focal)
    if option == "min_pixels":
        return {"min_pixels": int(count.max()) if count.numel() else 1}
    if option == "max_depth":
        z = z.sort().values
        return {"max_depth": float(z[len(z) // 2 - 1] + z[len(z) // 2]) / 2 if z.numel() >= 2 else 1.0}
    return {}


def make_prior(device, dtype, g, smooth, o, B, C, H, W, K):
    ids = _ids(B, H, W, K, g, device, o.pop("id_dtype", torch.int64), fill=0.6)
    depth = (torch.rand(B, 1, H, W, generator=g, dtype=torch.float64) * 40 + 1)
    heights = (torch.rand(B, K, generator=g, dtype=torch.float64) * 2 + 0.5)
    focal = (torch.rand(B, generator=g, dtype=torch.float64) * 50 + 20)
    if smooth:
        # Every pseudo-depth in [0.4, 12.5] with focal 5, every depth below 0.1 or above 50.
        focal = torch.full((B,), 5.0, dtype=torch.float64)
        far = torch.where(torch.rand(depth.shape, generator=g) > 0.5, 50.0, 0.02).double()
        depth = far + 0.05 * torch.rand(depth.shape, generator=g, dtype=torch.float64)
    elif K > 1 and B > 0:
        heights[0, 1] = float("nan")  # an unused slot
    heights = heights.to(device, dtype)
    focal = focal.to(device)
    o.update(acting_option(o.pop("acting", None), ids, heights, focal))
    return dict(depth=depth.to(device, dtype), instance_ids=ids, heights=heights, focal=focal, **o)


def make_smoothness(device, dtype, g, smooth, o, B, C, H, W, K):
    channels = o.pop("channels", 3)
    if smooth:  # distinct depths far apart: no neighbour difference near the kink at 0
        depth = torch.randperm(B * H * W, generator=g).double().view(B, 1, H, W).to(device, dtype)
    else:
        depth = _depth(B, H, W, dtype, device, g)
    image = torch.rand(B, channels, H, W, generator=g, dtype=torch.float64).to(device, dtype)
    return dict(depth=depth, image=image, **o)


def make_stereo(device, dtype, g, smooth, o, B, C, H, W, K):
    channels = o.pop("channels", 3)
    depth = (torch.rand(B, 1, H, W, generator=g, dtype=torch.float64) * 9 + 1).to(device, dtype)
    image = torch.rand(B, channels, H, W, generator=g, dtype=torch.float64).to(device, dtype)
    other = torch.rand(B, channels, H, W, generator=g, dtype=torch.float64).to(device, dtype)
    if smooth:  # both directions of disparity, samples inside the image
        fb = torch.tensor([3.3, -2.7] * B, dtype=torch.float64)[:B]
    else:
        fb = torch.rand(B, generator=g, dtype=torch.float64) * 8
    return dict(depth=depth, image=image, image_other=other, focal_baseline=fb.to(device), **o)


# ------------------------------------------------------------------- samples


def _shape_name(B, H, W, **more):
    return "x".join(map(str, (B, *more.values(), H, W)))


def _grid(**axes):
    """Every combination of the options' values, named by them."""
    combos = [{}]
    for name, values in axes.items():
        combos = [dict(c, **{name: v}) for c in combos for v in values]
    return combos


def _name(options):
    return "-".join(str(v).removeprefix("torch.") for v in options.values())


# Odd sizes, one pixel, one row, one column.
MAP_SHAPES = [(2, 7, 9), (1, 1, 1), (3, 17, 33), (1, 1, 6), (2, 6, 1)]


def _samples(shapes, grid, dtypes_of=lambda o: None, classes=None):
    out = []
    for shape in shapes:
        sizes = dict(zip("BHW", shape)) if len(shape) == 3 else dict(zip("BCHW", shape))
        if classes is not None:
            sizes["C"] = classes
        for o in grid:
            out.append(Sample(f"{_shape_name(**sizes)}-{_name(o)}" if o else _shape_name(**sizes), sizes, o,
                              dtypes_of(o)))
    return tuple(out)


REDUCTIONS = ["mean", "sum", "none"]

CONFIDENCE = OpInfo(
    "confidence_map", make_confidence,
    samples=_samples([(2, 5, 7, 9), (1, 1, 1, 1), (3, 19, 17, 33), (1, 2, 1, 6), (2, 4, 6, 1)],
                     _grid(kind=["logits", "labels32", "labels64"], source=["none", "rgb", "gray", "edges"]),
                     # Labels alone give a float32 map whatever the dtype: one dtype, not four identical tests.
                     dtypes_of=lambda o: (torch.float32,) if o["kind"] != "logits" and o["source"] == "none"
                     else None)
    + (Sample("ignore-classes", options=dict(ignore_classes=[0, 2])),
       Sample("labels-ignore-classes", options=dict(kind="labels64", ignore_classes=torch.tensor([3]),
                                                    ignore_index=2))),
    core=(Sample("logits-rgb", options=dict(ignore_classes=torch.tensor([1]))),
          Sample("labels-edges", options=dict(kind="labels64", source="edges"))),
    large=(Sample("large", options=dict(ignore_classes=[1])),),
)

CONSISTENCY = OpInfo(
    "consistency_loss", make_consistency,
    samples=_samples(MAP_SHAPES, _grid(reduction=REDUCTIONS)),
    core=tuple(Sample(r, options=dict(reduction=r)) for r in REDUCTIONS),
    large=(Sample("large-none", options=dict(reduction="none")), Sample("large-mean")),
    differentiable=("depth", "depth_sem"),
    training_form="_consistency_loss_train",
)

SEMANTIC_CONSISTENCY = OpInfo(
    "semantic_consistency_loss", make_semantic_consistency,
    samples=_samples([(2, 7, 9), (1, 1, 1), (3, 16, 31)],
                     _grid(kind=["logits", "labels"], source=["none", "rgb", "edges"], reduction=REDUCTIONS)),
    core=(Sample("logits-rgb-mean"), Sample("logits-rgb-sum", options=dict(reduction="sum")),
          Sample("labels-none", options=dict(kind="labels", source="none", reduction="none"))),
    large=(Sample("large-logits"), Sample("large-labels", options=dict(kind="labels", source="edges",
                                                                         reduction="sum"))),
    differentiable=("depth", "depth_sem"),
    training_form="_semantic_consistency_loss_train",
)

STATS_SHAPES = [((2, 9, 13), 5), ((1, 1, 1), 1), ((3, 31, 47), 40), ((2, 6, 5), 0), ((1, 64, 80), 1), ((0, 4, 4), 3)]

INSTANCE_STATS = OpInfo(
    "instance_stats", make_stats,
    samples=tuple(Sample(f"{_shape_name(B, H, W)}-K{K}-{_name(o)}", dict(B=B, H=H, W=W, K=K), o,
                         None if o["with_depth"] else (torch.float32,))
                  for (B, H, W), K in STATS_SHAPES
                  for o in _grid(id_dtype=[torch.int32, torch.int64], with_depth=[True, False])),
    core=(Sample("depth"), Sample("no-depth", options=dict(with_depth=False, validate=False))),
    large=(Sample("large"),),
    exact=("depth_median",),  # one of the depths
)

PRIOR_SHAPES = [((2, 9, 13), 5), ((1, 1, 1), 1), ((3, 31, 47), 40)]

INSTANCE_PRIOR = OpInfo(
    "instance_prior_loss", make_prior,
    # Without slots (K = 0) the options have nothing to act on: tried without them only.
    samples=tuple(Sample(f"{_shape_name(B, H, W)}-K{K}-{_name(o)}", dict(B=B, H=H, W=W, K=K), o)
                  for (B, H, W), K in PRIOR_SHAPES + [((2, 6, 5), 0)]
                  for o in _grid(reduction=REDUCTIONS, acting=[None, "min_pixels", "max_depth"] if K else [None],
                                 id_dtype=[torch.int32, torch.int64])),
    core=tuple(Sample(f"{r}{'-max_depth' if a else ''}", dict(H=6, W=7), dict(reduction=r, acting=a))
               for r in REDUCTIONS for a in (None, "max_depth")),
    large=(Sample("large", options=dict(max_depth=50.0)), Sample("large-none", options=dict(reduction="none"))),
    differentiable=("depth", "heights"),
)

SMOOTHNESS = OpInfo(
    "smoothness_loss", make_smoothness,
    samples=_samples(MAP_SHAPES, _grid(channels=[1, 3, 4], reduction=["mean", "none"])),
    core=(Sample("mean"), Sample("none", options=dict(reduction="none"))),
    large=(Sample("large"), Sample("large-none", options=dict(reduction="none"))),
    differentiable=("depth",),
    training_form="_smoothness_loss_train",
)

STEREO = OpInfo(
    "stereo_photometric_loss", make_stereo,
    samples=tuple(Sample(f"{_shape_name(B, H, W, C=C)}-{_name(o)}", dict(B=B, H=H, W=W), dict(o, channels=C))
                  for B, C, H, W in [(2, 3, 7, 9), (1, 3, 3, 3), (2, 1, 3, 40), (3, 3, 17, 33), (1, 4, 31, 5)]
                  for o in _grid(ssim=["valid", "reflect"], reduction=REDUCTIONS, alpha=[0.7])),
    core=tuple(Sample(f"{s}-{r}", dict(H=5, W=7), dict(ssim=s, reduction=r, alpha=0.6))
               for s in ("valid", "reflect") for r in REDUCTIONS),
    large=(Sample("large", options=dict(ssim="reflect")), Sample("large-none", options=dict(reduction="none"))),
    differentiable=("depth",),
)

OPS = {op.name: op for op in (CONFIDENCE, CONSISTENCY, SEMANTIC_CONSISTENCY, INSTANCE_STATS, INSTANCE_PRIOR,
                              SMOOTHNESS, STEREO)}
PUBLIC = list(functional.__all__)
DIFFERENTIABLE = [op for op in OPS.values() if op.differentiable]


# ------------------------------------------------------------------ running


def outputs(result):
    """The outputs of a call as a tuple of tensors (InstanceStats' fields that exist)."""
    if isinstance(result, tuple) and hasattr(result, "_asdict"):
        return tuple((k, v) for k, v in result._asdict().items() if v is not None)
    if isinstance(result, tuple):
        return tuple((f"out{i}", v) for i, v in enumerate(result))
    return (("out0", result),)


def upstream(loss, g):
    """A gradient for the loss: a map of different values for a map (each pixel
    must take its own), -0.6 for a number."""
    if loss.dim() == 0:
        return torch.tensor(-0.6, dtype=loss.dtype, device=loss.device)
    return (torch.rand(loss.shape, generator=g, dtype=torch.float64) - 0.5).to(loss)


def run(op, fn, kwargs, wants=None):
    """The outputs of fn(**kwargs) and the gradients of the first to each
    differentiable argument in `wants` (all of them by default), as a list of
    (name, tensor): the gradients' upstream the same for every fn."""
    wants = op.differentiable if wants is None else wants
    kwargs = {k: leaf(v) if k in wants else v for k, v in kwargs.items()}
    out = outputs(fn(**kwargs))
    if not wants:
        return list(out)
    first = out[0][1]
    grads = torch.autograd.grad(first, [kwargs[k] for k in wants],
                                upstream(first, torch.Generator().manual_seed(seed(op.name, "upstream"))))
    return list(out) + [(f"grad_{k}", v) for k, v in zip(wants, grads)]


def cases(kind="samples", dtypes=None, only=None):
    """pytest parameters (op, sample, dtype) of every operator's (or operator
    `only`'s) samples of `kind`, in their dtypes (those of `dtypes` among them)."""
    import pytest
    params = []
    for op in OPS.values() if only is None else [OPS[only]]:
        for sample in getattr(op, kind):
            for dtype in dtypes or op.sample_dtypes(sample):
                if dtype in op.sample_dtypes(sample):
                    params.append(pytest.param(op, sample, dtype,
                                               id=f"{op.name}-{sample.name}-{str(dtype).removeprefix('torch.')}"))
    return params
