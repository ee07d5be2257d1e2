"""confidence_map (docs/ops.md §1): the values the contract states for simple
inputs. Against the reference and in other layouts: tests/test_op_*.py."""
import math

import pytest
import torch

import desc_ops
from desc_ops import reference

from helpers import assert_close
from operators import cases

def _semantic(kind, B, C, H, W, dtype, device, g):
    if kind == "logits":
        return (torch.randn(B, C, H, W, generator=g, dtype=torch.float64) * 3).to(device=device, dtype=dtype)
    labels = torch.randint(-1, C, (B, H, W), generator=g)
    labels[:, : H // 2, : W // 2] = 0  # a region without boundaries
    return labels.to(device=device, dtype=torch.int32 if kind == "labels32" else torch.int64)


@pytest.mark.parametrize("op, sample, dtype", cases(dtypes=[torch.float32], only="confidence_map"))
def test_map_lies_in_0_1(device, op, sample, dtype):
    """c = s * e in [0, 1] on every sample of the registry (tests/operators.py)."""
    out = op.fn(**op.kwargs(sample, device, dtype))
    assert out.shape == (sample.size()["B"], 1, sample.size()["H"], sample.size()["W"])
    assert out.numel() == 0 or (out.min() >= 0 and out.max() <= 1)


@pytest.mark.parametrize("kind", ["logits", "labels64"])
@pytest.mark.parametrize("ignore", [[0, 2], torch.tensor([3], dtype=torch.int32), 1, []])
def test_ignore_classes(device, impl, kind, ignore):
    g = torch.Generator().manual_seed(3)
    semantic = _semantic(kind, 2, 4, 9, 11, torch.float32, device, g)
    out = desc_ops.confidence_map(semantic, ignore_classes=ignore)
    assert_close(out, reference.confidence_map(semantic, ignore_classes=ignore))
    listed = torch.as_tensor(ignore if not isinstance(ignore, int) else [ignore]).tolist()
    cls = semantic.argmax(1) if kind == "logits" else semantic
    mask = torch.isin(cls, torch.tensor(listed, dtype=torch.long, device=device)).unsqueeze(1)
    assert (out[mask] == 0).all()
    if not listed:
        assert_close(out, desc_ops.confidence_map(semantic))


def test_logit_semantic_term_values(device, impl):
    uniform = torch.zeros(1, 4, 1, 1, device=device)
    assert desc_ops.confidence_map(uniform).item() == pytest.approx(0.0, abs=1e-7)
    certain = torch.tensor([100.0, 0, 0, 0], device=device).view(1, 4, 1, 1)
    assert desc_ops.confidence_map(certain).item() == pytest.approx(1.0, abs=1e-6)
    two = torch.tensor([1.0, 0.0], device=device).view(1, 2, 1, 1)
    q = torch.softmax(torch.tensor([1.0, 0.0]), 0).max().item()
    assert desc_ops.confidence_map(two).item() == pytest.approx((q - 0.5) / 0.5, rel=1e-6)
    single_class = torch.randn(2, 1, 3, 3, device=device)
    assert (desc_ops.confidence_map(single_class) == 1).all()
    # Huge logits stay finite (stable softmax).
    huge = torch.tensor([1e30, -1e30, 0.0], device=device).view(1, 3, 1, 1)
    assert desc_ops.confidence_map(huge).item() == pytest.approx(1.0)
    # Ties: the lowest index is the argmax, so ignoring class 0 zeroes the pixel.
    tie = torch.tensor([2.0, 2.0, 0.0], device=device).view(1, 3, 1, 1)
    assert desc_ops.confidence_map(tie, ignore_classes=[0]).item() == 0
    assert desc_ops.confidence_map(tie, ignore_classes=[1]).item() > 0


def test_label_semantic_term_values(device, impl):
    labels = torch.tensor([[[1, 1, 1, 2],
                            [1, 1, 1, 2],
                            [1, 1, -1, 2]]], device=device)
    out = desc_ops.confidence_map(labels, boundary_weight=0.25)[0, 0]
    b = 0.75
    expected = torch.tensor([[1, 1, b, b],
                             [1, 1, b, b],
                             [1, b, 0, b]], dtype=torch.float32, device=device)
    assert torch.equal(out, expected)
    assert torch.equal(desc_ops.confidence_map(labels, ignore_index=7, boundary_weight=0.25)[0, 0, 2, 2],
                       torch.tensor(b, device=device))


def test_edges_and_sobel_values(device, impl):
    edges = torch.tensor([0.0, 0.5, 1.0], device=device).view(1, 1, 1, 3)
    labels = torch.zeros(1, 1, 3, dtype=torch.long, device=device)
    out = desc_ops.confidence_map(labels, edges=edges, edge_weight=2.0)
    assert_close(out.flatten(), torch.exp(-2.0 * edges.flatten()))
    # A NaN edge gives NaN; exp(-200) is 0 in the reference, about 1.2e-38 in the kernels (docs/ops.md §0).
    edges = torch.tensor([float("nan"), 200.0, 0.25], device=device).view(1, 1, 1, 3)
    out = desc_ops.confidence_map(labels, edges=edges, edge_weight=1.0).flatten()
    assert out[0].isnan() and 0 <= out[1] < 1e-37 and out[2].item() == pytest.approx(math.exp(-0.25), rel=1e-6)
    # A vertical step of height 1 in luminance: Sobel gx = 4 on both sides of the step.
    image = torch.zeros(1, 1, 4, 4, device=device)
    image[..., 2:] = 1.0
    out = desc_ops.confidence_map(labels.new_zeros(1, 4, 4), image=image)[0, 0]
    assert_close(out[:, 0], torch.ones(4, device=device))
    assert_close(out[:, 1], torch.full((4,), torch.exp(torch.tensor(-4.0)).item(), device=device))
    # Luminance weights of an RGB image.
    rgb = torch.zeros(1, 3, 3, 3, device=device)
    rgb[:, :, :, 2] = torch.tensor([1.0, 0.0, 0.0], device=device).view(3, 1)
    gray = (0.299 * rgb[:, :1])
    zeros = labels.new_zeros(1, 3, 3)
    assert_close(desc_ops.confidence_map(zeros, image=rgb), desc_ops.confidence_map(zeros, image=gray))


def test_dtype_of_result(device, impl):
    labels = torch.zeros(1, 2, 2, dtype=torch.long, device=device)
    assert desc_ops.confidence_map(labels).dtype == torch.float32
    assert desc_ops.confidence_map(labels, edges=torch.zeros(1, 1, 2, 2, dtype=torch.float64,
                                                             device=device)).dtype == torch.float64
    logits = torch.zeros(1, 3, 2, 2, dtype=torch.bfloat16, device=device)
    image = torch.zeros(1, 3, 2, 2, dtype=torch.float32, device=device)
    assert desc_ops.confidence_map(logits, image=image).dtype == torch.bfloat16


def test_empty_batch(device, impl):
    out = desc_ops.confidence_map(torch.zeros(0, 3, 4, 5, device=device))
    assert out.shape == (0, 1, 4, 5)
    out = desc_ops.confidence_map(torch.zeros(0, 4, 5, dtype=torch.long, device=device))
    assert out.shape == (0, 1, 4, 5)


def test_empty_maps_keep_shape_dtype_and_device(impl):
    labels = torch.zeros(2, 0, 5, dtype=torch.long)
    image = torch.rand(2, 3, 0, 5, dtype=torch.float64)
    out = desc_ops.confidence_map(labels, image=image)
    assert out.shape == (2, 1, 0, 5) and out.dtype == torch.float64 and out.device == labels.device
    assert desc_ops.confidence_map(labels).dtype == torch.float32
    logits = torch.rand(2, 4, 0, 5)  # float32 logits, float64 depth: the confidence takes the depth's dtype
    depth = torch.rand(2, 1, 0, 5, dtype=torch.float64)
    _, conf = desc_ops.semantic_consistency_loss(depth, depth, logits, reduction="none", return_confidence=True)
    assert conf.shape == (2, 1, 0, 5) and conf.dtype == torch.float64


def test_ignore_classes_as_an_int_a_list_or_an_int32_tensor(impl):
    g = torch.Generator().manual_seed(9)
    labels = torch.randint(0, 4, (1, 5, 6), generator=g)
    want = desc_ops.confidence_map(labels, ignore_classes=[2])
    assert (want[0, 0][labels[0] == 2] == 0).all() and (want > 0).any()
    for same in (2, torch.tensor([2], dtype=torch.int32), (2,)):
        assert torch.equal(desc_ops.confidence_map(labels, ignore_classes=same), want), same
    with pytest.raises(ValueError, match=r"^ignore_classes must be a 1-D integer tensor or a list of ints, got 'car'$"):
        desc_ops.confidence_map(labels, ignore_classes="car")


def _confidence_call(case):
    labels = torch.zeros(2, 4, 5, dtype=torch.long)
    image, edges = torch.rand(2, 3, 4, 5), torch.rand(2, 1, 4, 5)
    return {
        "bool labels": lambda: desc_ops.confidence_map(labels.bool()),
        "image and edges": lambda: desc_ops.confidence_map(labels, image=image, edges=edges),
        "image not a tensor": lambda: desc_ops.confidence_map(labels, image=[1.0]),
        "image of another batch": lambda: desc_ops.confidence_map(labels, image=image[:1]),
        "image of another size": lambda: desc_ops.confidence_map(labels, image=image[..., :4]),
        "edges not a tensor": lambda: desc_ops.confidence_map(labels, edges=[1.0]),
        "edges on another device": lambda: desc_ops.confidence_map(labels, edges=edges.to("meta")),
        "ignore_index a bool": lambda: desc_ops.confidence_map(labels, ignore_index=True),
    }[case]


@pytest.mark.parametrize("case, message", [
    ("bool labels", r"^semantic must be an integer tensor, got shape \(2, 4, 5\) and dtype torch.bool$"),
    ("image and edges", r"^give image or edges to confidence_map, not both$"),
    ("image not a tensor", r"^image must be a torch.Tensor, got list$"),
    ("image of another batch", r"^image must have shape \(2, 3 or 1, 4, 5\), got shape \(1, 3, 4, 5\)"),
    ("image of another size", r"^image must have shape \(2, 3 or 1, 4, 5\), got shape \(2, 3, 4, 4\)"),
    ("edges not a tensor", r"^edges must be a torch.Tensor, got list$"),
    ("edges on another device", r"^edges is on meta but semantic is on cpu$"),
    ("ignore_index a bool", r"^ignore_index must be an int \(64-bit\), got True$"),
])
def test_confidence_argument_errors_name_the_argument(impl, case, message):
    with pytest.raises(ValueError, match=message):
        _confidence_call(case)()


def test_labels_with_a_channel_axis_and_the_dtype_of_edges(impl):
    g = torch.Generator().manual_seed(10)
    labels = torch.randint(0, 3, (2, 4, 5), generator=g)
    edges = torch.rand(2, 1, 4, 5, generator=g, dtype=torch.float64)
    want = desc_ops.confidence_map(labels, edges=edges)
    assert want.dtype == torch.float64
    assert torch.equal(desc_ops.confidence_map(labels[:, None], edges=edges), want)
    with pytest.raises(ValueError, match=r"^semantic labels must have shape \(B, H, W\), got shape \(2, 2, 4, 5\)"):
        desc_ops.confidence_map(labels[:, None].expand(2, 2, 4, 5))
    # Logits take a forced dtype (the fused loss's depth dtype): float64 logits in float32 arithmetic.
    logits = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    _, conf = desc_ops.semantic_consistency_loss(torch.rand(2, 1, 4, 5), torch.rand(2, 1, 4, 5), logits, edges=edges,
                                                 return_confidence=True)
    assert conf.dtype == torch.float32
    assert torch.equal(conf, desc_ops.confidence_map(logits.float(), edges=edges.float()))
