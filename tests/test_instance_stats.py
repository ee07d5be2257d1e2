"""instance_stats, instance_heights and relabel_instances (docs/ops.md §3)."""
import pytest
import torch

import desc_ops


def _ids(B, H, W, K, g, device, dtype=torch.int64, fill=0.5):
    ids = torch.randint(0, max(K, 1), (B, H, W), generator=g)
    ids[torch.rand(B, H, W, generator=g) > fill] = -1
    if K == 0:
        ids.fill_(-1)
    return ids.to(device=device, dtype=dtype)


def _depth(B, H, W, dtype, device, g, with_invalid=True):
    d = torch.rand(B, 1, H, W, generator=g, dtype=torch.float64) * 80 + 0.1
    if with_invalid:
        bad = torch.rand(B, 1, H, W, generator=g)
        d[bad < 0.05] = float("nan")
        d[(bad >= 0.05) & (bad < 0.08)] = float("inf")
        d[(bad >= 0.08) & (bad < 0.11)] = 0.0
        d[(bad >= 0.11) & (bad < 0.13)] = -3.0
    return d.to(device=device, dtype=dtype)


def test_against_python_loop(device, impl):
    """Count, box and lower median per instance, computed the obvious way."""
    g = torch.Generator().manual_seed(0)
    B, H, W, K = 3, 23, 29, 6
    ids = _ids(B, H, W, K, g, device, fill=0.8)
    depth = _depth(B, H, W, torch.float32, device, g)
    st = desc_ops.instance_stats(ids, K, depth)
    for b in range(B):
        for k in range(K):
            ys, xs = torch.nonzero(ids[b] == k, as_tuple=True)
            assert st.count[b, k] == ys.numel()
            if ys.numel() == 0:
                assert st.y_min[b, k] == st.x_max[b, k] == -1 and st.pixel_height[b, k] == 0
                continue
            assert (st.y_min[b, k], st.y_max[b, k]) == (ys.min(), ys.max())
            assert (st.x_min[b, k], st.x_max[b, k]) == (xs.min(), xs.max())
            assert st.pixel_height[b, k] == ys.max() - ys.min() + 1
            d = depth[b, 0][ids[b] == k]
            d = d[torch.isfinite(d) & (d > 0)]
            assert st.valid_count[b, k] == d.numel()
            if d.numel():
                assert st.depth_median[b, k] == torch.median(d)
                assert st.depth_median[b, k] == torch.sort(d).values[(d.numel() - 1) // 2]
                assert st.depth_mean[b, k].item() == pytest.approx(d.double().mean().item(), rel=1e-6)
            else:
                assert torch.isnan(st.depth_median[b, k]) and torch.isnan(st.depth_mean[b, k])


def test_ids_at_image_corners(device, impl):
    ids = torch.full((1, 5, 7), -1, device=device)
    ids[0, 0, 0] = 0
    ids[0, 4, 6] = 0
    ids[0, 0, 6] = 1
    ids[0, 4, 0] = 2
    st = desc_ops.instance_stats(ids, 3)
    assert st.count[0].tolist() == [2, 1, 1]
    assert [st.y_min[0, 0].item(), st.y_max[0, 0].item(), st.x_min[0, 0].item(), st.x_max[0, 0].item()] == [0, 4, 0, 6]
    assert st.pixel_height[0].tolist() == [5, 1, 1]
    assert (st.x_min[0, 1].item(), st.y_max[0, 2].item()) == (6, 4)


def test_even_count_takes_lower_median(device, impl):
    ids = torch.zeros(1, 1, 4, dtype=torch.long, device=device)
    depth = torch.tensor([4.0, 1.0, 3.0, 2.0], device=device).view(1, 1, 1, 4)
    st = desc_ops.instance_stats(ids, 1, depth)
    assert st.depth_median.item() == 2.0
    assert st.depth_mean.item() == 2.5


@pytest.mark.parametrize("impl", ["extension", "reference"])
def test_validation(device, impl):
    desc_ops.set_backend(impl)
    ids = torch.zeros(1, 3, 3, dtype=torch.long, device=device)
    ids[0, 1, 1] = 5
    with pytest.raises(ValueError, match="instance_ids"):
        desc_ops.instance_stats(ids, 3)
    ids[0, 1, 1] = -2
    with pytest.raises(ValueError, match="instance_ids"):
        desc_ops.instance_stats(ids, 3)
    # Without validation such pixels are not instances.
    st = desc_ops.instance_stats(ids, 3, validate=False)
    assert st.count[0].tolist() == [8, 0, 0]


def test_instance_heights_pinhole(device, impl):
    """An object of H metres at Z metres spans f H / Z pixels."""
    f, Z, H_metric = 100.0, 20.0, 1.6
    rows = round(f * H_metric / Z)  # 8 pixels
    ids = torch.full((2, 30, 30), -1, device=device)
    ids[:, 5:5 + rows, 10:14] = 0
    depth = torch.full((2, 1, 30, 30), 50.0, device=device)
    depth[:, :, 5:5 + rows, 10:14] = Z
    st = desc_ops.instance_stats(ids, 1, depth)
    heights = desc_ops.instance_heights(st, torch.tensor([f, 2 * f], device=device))
    assert heights[:, 0].tolist() == pytest.approx([H_metric, H_metric / 2])
    empty = desc_ops.instance_stats(torch.full((1, 4, 4), -1, device=device), 2, torch.ones(1, 1, 4, 4, device=device))
    assert torch.isnan(desc_ops.instance_heights(empty, 10.0)).all()
    with pytest.raises(ValueError, match="depth"):
        desc_ops.instance_heights(desc_ops.instance_stats(ids, 1), f)


def test_relabel_instances(device):
    pan = torch.tensor([[[0, 7, 7], [300, 0, 5]],
                        [[2, 2, 0], [0, 0, 0]]], device=device)
    ids, K, original = desc_ops.relabel_instances(pan, return_ids=True)
    assert K == 3
    assert ids.tolist() == [[[-1, 1, 1], [2, -1, 0]], [[0, 0, -1], [-1, -1, -1]]]
    assert original.tolist() == [[5, 7, 300], [2, -1, -1]]
    ids8, K8 = desc_ops.relabel_instances(pan, num_instances=8)
    assert K8 == 8 and torch.equal(ids8, ids)
    with pytest.raises(ValueError, match="num_instances"):
        desc_ops.relabel_instances(pan, num_instances=2)
    none, K0 = desc_ops.relabel_instances(torch.zeros(2, 3, 3, dtype=torch.int16, device=device))
    assert K0 == 0 and (none == -1).all()
    single, K1 = desc_ops.relabel_instances(torch.tensor([[4, 4], [9, 0]], device=device))
    assert K1 == 2 and single.tolist() == [[0, 0], [1, -1]]
    # The relabelled map feeds instance_stats directly.
    assert desc_ops.instance_stats(ids, K).count.tolist() == [[1, 2, 1], [2, 0, 0]]


def test_relabel_instances_edges(device):
    """Every pixel an instance (no pixel to drop); another background, so that id 0
    is an instance; num_instances equal to K; an empty batch; bad arguments named."""
    full = torch.tensor([[[3, 3], [8, 1]]], device=device)
    ids, K, original = desc_ops.relabel_instances(full, return_ids=True)
    assert K == 3 and ids.tolist() == [[[1, 1], [2, 0]]] and original.tolist() == [[1, 3, 8]]
    ids, K, original = desc_ops.relabel_instances(torch.tensor([[0, 255], [6, 0]], device=device), background=255,
                                                  return_ids=True)
    assert K == 2 and ids.tolist() == [[0, -1], [1, 0]] and original.tolist() == [0, 6]
    ids, K = desc_ops.relabel_instances(torch.tensor([[0, 2], [6, 0]], device=device), background=-1)
    assert K == 3 and ids.tolist() == [[0, 1], [2, 0]]  # every pixel an instance, id 0 included
    assert desc_ops.relabel_instances(full, num_instances=3)[1] == 3
    empty, K0, orig0 = desc_ops.relabel_instances(torch.zeros(0, 4, 5, dtype=torch.long, device=device),
                                                  return_ids=True)
    assert K0 == 0 and empty.shape == (0, 4, 5) and orig0.shape == (0, 0)
    with pytest.raises(ValueError, match=r"^panoptic_ids must have shape \(B, H, W\) or \(H, W\), got \(5,\)$"):
        desc_ops.relabel_instances(torch.zeros(5, dtype=torch.long, device=device))
    with pytest.raises(ValueError, match="^panoptic_ids must be an integer tensor"):
        desc_ops.relabel_instances(torch.zeros(2, 2, device=device))


def test_relabel_instances_of_ids_near_the_int64_limit(device):
    """Ids up to 2^63 - 1 keep their own slots and come back as they were (a key
    such as image * (max id + 1) + id overflows there)."""
    big = 2**63 - 1
    pan = torch.tensor([[[5, big - 1]], [[2**62, big]]], device=device)
    ids, K, original = desc_ops.relabel_instances(pan, return_ids=True)
    assert K == 2
    assert ids.tolist() == [[[0, 1]], [[0, 1]]]
    assert original.tolist() == [[5, big - 1], [2**62, big]]


def test_mean_of_a_large_instance_is_exact(device, impl):
    """A million-pixel instance: the mean is the float64 mean rounded once to
    float32 (a float32 running sum is off by thousands of ulp here)."""
    g = torch.Generator().manual_seed(21)
    depth = (torch.rand(1, 1, 1000, 1000, generator=g, dtype=torch.float64) * 0.01 + 30.0).float()
    ids = torch.zeros(1, 1000, 1000, dtype=torch.long)
    st = desc_ops.instance_stats(ids.to(device), 1, depth.to(device))
    want = depth.double().mean().float()
    assert st.depth_mean.cpu()[0, 0] == want


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("kind", ["uniform", "ties", "wide", "constant", "nan"])
def test_median_is_exact(device, dtype, kind):
    """The exact lower median (the CPU radix select) on value sets that stress
    it: ties, a range over many binades, one value, NaN and non-positive depths."""
    g = torch.Generator().manual_seed(7)
    B, H, W, K = 2, 37, 91, 5
    ids = torch.randint(-1, K, (B, H, W), generator=g)
    d = {"uniform": lambda: torch.rand(B, 1, H, W, generator=g) * 60,
         "ties": lambda: torch.randint(0, 4, (B, 1, H, W), generator=g).float(),
         "wide": lambda: torch.exp(torch.randn(B, 1, H, W, generator=g) * 20),
         "constant": lambda: torch.full((B, 1, H, W), 3.0),
         "nan": lambda: torch.randn(B, 1, H, W, generator=g).masked_fill(
             torch.rand(B, 1, H, W, generator=g) < 0.1, float("nan"))}[kind]().to(dtype)
    st = desc_ops.instance_stats(ids.to(device), K, d.to(device))
    for b in range(B):
        for k in range(K):
            v = d[b, 0][ids[b] == k]
            v = v[torch.isfinite(v) & (v > 0)]
            got = st.depth_median[b, k].cpu()
            if v.numel() == 0:
                assert got.isnan()
            else:
                assert got == v.sort().values[(v.numel() - 1) // 2]


def test_empty_slots_and_ids_out_of_range(device, impl):
    """Empty slots read -1 for all four box sides, 0 pixels high, NaN depth; with
    validate=False, ids = K (and beyond) are no instance, in their own image only
    (a flat index would carry id K of image 0 into slot 0 of image 1)."""
    ids = torch.full((2, 4, 5), -1, device=device)
    ids[0, 1, 1:3] = 0
    ids[0, 2, :] = 3  # = K
    ids[0, 3, 0] = 7
    ids[1, 0, 4] = 0
    depth = torch.full((2, 1, 4, 5), 2.0, device=device)
    st = desc_ops.instance_stats(ids, 3, depth, validate=False)
    assert st.count.tolist() == [[2, 0, 0], [1, 0, 0]]
    for side in (st.y_min, st.y_max, st.x_min, st.x_max):
        assert side[:, 1:].eq(-1).all()
    assert st.pixel_height.tolist() == [[1, 0, 0], [1, 0, 0]]
    assert st.valid_count.tolist() == [[2, 0, 0], [1, 0, 0]]
    assert st.depth_mean[:, 1:].isnan().all() and st.depth_median[:, 1:].isnan().all()
    assert (st.y_min[1, 0].item(), st.x_max[1, 0].item(), st.depth_median[1, 0].item()) == (0, 4, 2.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_instance_heights_compute_in_the_accumulation_dtype(dtype):
    """median * pixel_height / focal in float64 for float64 depth (a focal that
    float32 cannot hold, 721.5377 as KITTI's, keeps its digits) and in float32
    otherwise, bit for bit."""
    g = torch.Generator().manual_seed(8)
    ids = torch.randint(-1, 40, (2, 48, 64), generator=g)
    depth = (torch.rand(2, 1, 48, 64, generator=g, dtype=torch.float64) * 80 + 1).to(dtype)
    st = desc_ops.instance_stats(ids, 40, depth)
    focal = 721.5377
    want = st.depth_median * st.pixel_height.to(dtype) / torch.tensor(focal, dtype=dtype)
    assert torch.equal(desc_ops.instance_heights(st, focal), want)
    assert torch.equal(desc_ops.instance_heights(st, torch.tensor([focal, focal], dtype=torch.float64)), want)


def test_instance_heights_refuses_other_stats():
    with pytest.raises(ValueError, match=r"^stats must be the InstanceStats of instance_stats, got tuple$"):
        desc_ops.instance_heights((1, 2), 30.0)
    st = desc_ops.instance_stats(torch.zeros(1, 2, 2, dtype=torch.long), 1)
    with pytest.raises(ValueError, match=r"^stats has no depth: call instance_stats\(instance_ids, num_instances, "
                                         r"depth\)$"):
        desc_ops.instance_heights(st, 30.0)


def test_instance_heights_in_half_precision_round_once():
    """median * pixel_height / focal in the focal's float32, rounded to the maps' dtype once."""
    ids = torch.zeros(1, 7, 2, dtype=torch.long)
    depth = torch.full((1, 1, 7, 2), 23.7)
    for dtype in (torch.float16, torch.bfloat16):
        st = desc_ops.instance_stats(ids, 1, depth.to(dtype))
        h = desc_ops.instance_heights(st, 3.3)
        want = (st.depth_median.float() * 7 / torch.tensor(3.3)).to(dtype)
        assert h.dtype == dtype and torch.equal(h, want)
