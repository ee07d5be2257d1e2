"""Every bad input the contract names (docs/ops.md) raises an error naming the
argument: one table, run against the public functions on both backends (a
ValueError) and against the compiled operators (torch.ops.desc_ops.*) directly
(a RuntimeError, the only error the stable ABI raises; a ValueError from the
fake kernels where a meta tensor is among the arguments), so the Python and C++
rules cannot drift apart. The private backward operators check everything they
read."""
import pytest
import torch

import desc_ops

ops = torch.ops.desc_ops
B, H, W, K = 2, 4, 5, 3


def _x(b=B, h=H, w=W):
    return torch.rand(b, 1, h, w) + 1


def _ids(value=0, b=B, h=H, w=W):
    return torch.full((b, h, w), value, dtype=torch.long)


EMPTY = torch.rand(0, 1, H, W)
META = "meta"

# The arguments of a valid call of each operator, by name: the public
# function takes them as keywords, the compiled operator in schema order.
VALID = {
    "confidence_map": dict(semantic=_ids(), image=None, edges=None, edge_weight=1.0, boundary_weight=0.5,
                           ignore_index=-1, ignore_classes=None),
    "consistency_loss": dict(depth=_x(), depth_sem=_x(), weight=_x(), reduction="mean"),
    "semantic_consistency_loss": dict(depth=_x(), depth_sem=_x(), semantic=_ids(), image=None, edges=None,
                                      edge_weight=1.0, boundary_weight=0.5, ignore_index=-1, ignore_classes=None,
                                      reduction="mean"),
    "instance_stats": dict(instance_ids=_ids(), num_instances=K, depth=None, validate=True),
    "instance_prior_loss": dict(depth=_x(), instance_ids=_ids(), heights=torch.ones(B, K), focal=torch.ones(B),
                                min_pixels=1, max_depth=None, reduction="mean", validate=True),
    "smoothness_loss": dict(depth=_x(), image=torch.rand(B, 3, H, W), reduction="mean"),
    "stereo_photometric_loss": dict(depth=_x(), image=torch.rand(B, 3, H, W), image_other=torch.rand(B, 3, H, W),
                                    focal_baseline=torch.full((B,), 20.0), alpha=0.85, ssim="valid",
                                    reduction="mean"),
}


def _on_meta(t):
    return t.to("meta")


# (operator, arguments that replace valid ones, message). A value META moves
# the valid argument of that name to the meta device.
BAD = [
    ("confidence_map", dict(semantic=_ids()[0]), "semantic labels must have shape"),
    ("confidence_map", dict(semantic=torch.rand(B, 0, H, W)), "semantic logits must have shape"),
    ("confidence_map", dict(image=torch.rand(B, 3, H, W), edges=torch.rand(B, 1, H, W)), "not both"),
    ("confidence_map", dict(image=torch.rand(B, 2, H, W)), "image must have shape"),
    ("confidence_map", dict(image=torch.ones(B, 3, H, W, dtype=torch.long)), "image must be a floating tensor"),
    ("confidence_map", dict(edges=torch.rand(B, 1, H, W + 1)), "edges must have shape"),
    ("confidence_map", dict(ignore_classes=torch.ones(2)), "ignore_classes must be a 1-D integer tensor"),
    ("confidence_map", dict(ignore_classes=torch.ones(2, dtype=torch.bool)), "ignore_classes must be a 1-D integer"),
    ("confidence_map", dict(image=torch.rand(B, 3, H, W, device="meta")), "image is on meta but semantic is on cpu"),
    ("consistency_loss", dict(depth_sem=_x(h=3)), "depth_sem must have shape"),
    ("consistency_loss", dict(weight=torch.rand(B, 2, H, W)), "weight must have shape"),
    ("consistency_loss", dict(depth=torch.rand(B, 3, H, W)), "depth must have shape"),
    ("consistency_loss", dict(depth=torch.ones(B, 1, H, W, dtype=torch.long)), "depth must be a floating tensor"),
    ("consistency_loss", dict(reduction="max"), "reduction must be"),
    ("consistency_loss", dict(depth=EMPTY, depth_sem=EMPTY, weight=EMPTY), "depth is empty"),
    ("consistency_loss", dict(depth=EMPTY, depth_sem=EMPTY, weight=EMPTY, reduction="sum"), "depth is empty"),
    ("consistency_loss", dict(depth_sem=META), "depth_sem is on meta but depth is on cpu"),
    ("consistency_loss", dict(weight=META), "weight is on meta but depth is on cpu"),
    ("semantic_consistency_loss", dict(semantic=_ids(w=W + 1)), "semantic must cover the pixels of depth"),
    ("semantic_consistency_loss", dict(image=torch.rand(B, 3, H, W), edges=torch.rand(B, 1, H, W)), "not both"),
    ("semantic_consistency_loss", dict(edges=torch.rand(B, 1, 3, W)), "edges must have shape"),
    ("semantic_consistency_loss", dict(depth_sem=_x(w=3)), "depth_sem must have shape"),
    ("semantic_consistency_loss", dict(reduction="max"), "reduction must be"),
    ("semantic_consistency_loss", dict(depth=EMPTY, depth_sem=EMPTY, semantic=_ids(b=0)), "depth is empty"),
    ("semantic_consistency_loss", dict(semantic=META), "semantic is on meta but depth is on cpu"),
    ("instance_stats", dict(instance_ids=torch.zeros(B, H, W)), "instance_ids must be an int"),
    ("instance_stats", dict(instance_ids=_ids()[0]), "instance_ids must have shape"),
    ("instance_stats", dict(num_instances=-1), "num_instances must be"),
    ("instance_stats", dict(instance_ids=_ids(K)), r"instance_ids must be -1 \(no instance\) or a slot in \[0, 3\)"),
    ("instance_stats", dict(instance_ids=_ids(-2)), r"instance_ids must be -1 \(no instance\)"),
    ("instance_stats", dict(depth=_x(h=H + 1)), "depth must have shape"),
    ("instance_stats", dict(depth=_x().to("meta")), "depth is on meta but instance_ids is on cpu"),
    ("instance_prior_loss", dict(heights=torch.ones(B + 1, K)), "heights must have shape"),
    ("instance_prior_loss", dict(focal=torch.ones(B + 1)), "focal must be a scalar or have shape"),
    ("instance_prior_loss", dict(instance_ids=_ids(w=W - 1)), "instance_ids must have shape"),
    ("instance_prior_loss", dict(instance_ids=torch.zeros(B, H, W)), "instance_ids must be an int"),
    ("instance_prior_loss", dict(reduction="max"), "reduction must be"),
    ("instance_prior_loss", dict(max_depth=-1.0), "max_depth must be >= 0"),
    ("instance_prior_loss", dict(instance_ids=_ids(K)), r"instance_ids must be -1 \(no instance\)"),
    ("instance_prior_loss", dict(depth=EMPTY, instance_ids=_ids(b=0), heights=torch.ones(0, K),
                                 focal=torch.ones(0)), "depth is empty"),
    ("instance_prior_loss", dict(heights=META), "heights is on meta but depth is on cpu"),
    ("instance_prior_loss", dict(instance_ids=META), "instance_ids is on meta but depth is on cpu"),
    ("instance_prior_loss", dict(focal=META), "focal is on meta but depth is on cpu"),
    ("instance_prior_loss", dict(focal=torch.ones(B, dtype=torch.bool)), "focal must be real"),
    ("instance_prior_loss", dict(focal=torch.ones(B, dtype=torch.complex64)), "focal must be real"),
    ("smoothness_loss", dict(image=torch.rand(B, 3, H, W + 1)), "image must have shape"),
    ("smoothness_loss", dict(depth=torch.rand(B, 3, H, W)), "depth must have shape"),
    ("smoothness_loss", dict(depth=EMPTY, image=torch.rand(0, 3, H, W)), "depth is empty"),
    ("smoothness_loss", dict(image=META), "image is on meta but depth is on cpu"),
    ("stereo_photometric_loss", dict(image=torch.rand(B, 3, H + 1, W)), "image must have shape"),
    ("stereo_photometric_loss", dict(image_other=torch.rand(B, 3, H, W + 1)), "image_other must have shape"),
    ("stereo_photometric_loss", dict(image_other=torch.rand(B, 2, H, W)), "image_other must have shape"),
    ("stereo_photometric_loss", dict(depth=torch.rand(B, 3, H, W)), "depth must have shape"),
    ("stereo_photometric_loss", dict(alpha=1.5), r"alpha must be in \[0, 1\]"),
    ("stereo_photometric_loss", dict(alpha=-0.1), r"alpha must be in \[0, 1\]"),
    ("stereo_photometric_loss", dict(ssim="same"), "ssim must be"),
    ("stereo_photometric_loss", dict(reduction="max"), "reduction must be"),
    ("stereo_photometric_loss", dict(depth=_x(h=2), image=torch.rand(B, 3, 2, W), image_other=torch.rand(B, 3, 2, W)),
     "ssim='valid' needs H and W of at least 3"),
    ("stereo_photometric_loss", dict(depth=_x(w=1), image=torch.rand(B, 3, H, 1), image_other=torch.rand(B, 3, H, 1),
                                     ssim="reflect"), "ssim='reflect' needs H and W of at least 2"),
    ("stereo_photometric_loss", dict(depth=EMPTY, image=torch.rand(0, 3, H, W), image_other=torch.rand(0, 3, H, W),
                                     focal_baseline=torch.ones(0)), "depth is empty"),
    ("stereo_photometric_loss", dict(image_other=META), "image_other is on meta but depth is on cpu"),
    ("stereo_photometric_loss", dict(focal_baseline=META), "focal_baseline is on meta but depth is on cpu"),
]


def _arguments(op, bad):
    args = dict(VALID[op])
    for name, value in bad.items():
        args[name] = _on_meta(args[name]) if isinstance(value, str) and value == META else value
    return args


def _public(op, args):
    fn = getattr(desc_ops, op)
    if op == "instance_stats":
        return fn(args.pop("instance_ids"), args.pop("num_instances"), **args)
    return fn(**args)


def _raw(op, args):
    schema = getattr(ops, op).default._schema
    return getattr(ops, op)(*(args[a.name] for a in schema.arguments))


def _raw_error(*args):
    """The error a compiled operator raises: RuntimeError from the kernels,
    ValueError from the fake kernels, which run where a tensor is on meta."""
    on_meta = any(isinstance(a, torch.Tensor) and a.is_meta for a in args)
    return ValueError if on_meta else RuntimeError


def _case_id(case):
    op, bad, _ = case
    return f"{op}-{'-'.join(bad)}"


@pytest.mark.parametrize("case", BAD, ids=[_case_id(c) for c in BAD])
@pytest.mark.parametrize("path", ["extension", "reference", "raw"])
def test_bad_argument_raises(case, path):
    op, bad, message = case
    args = _arguments(op, bad)
    error = _raw_error(*args.values()) if path == "raw" else ValueError
    with pytest.raises(error, match=message):
        if path == "raw":
            _raw(op, args)
        else:
            desc_ops.set_backend(path)
            _public(op, args)


@pytest.mark.parametrize("op", list(VALID))
@pytest.mark.parametrize("path", ["extension", "reference", "raw"])
def test_valid_arguments_run(op, path):
    """The table's valid calls run everywhere: each bad case fails for its own reason."""
    args = _arguments(op, {})
    if path == "raw":
        _raw(op, args)
    else:
        desc_ops.set_backend(path)
        _public(op, args)


@pytest.mark.parametrize("impl", ["extension", "reference"])
def test_python_only_checks(impl):
    """Arguments the compiled operators cannot see wrongly typed (their schemas type them)."""
    desc_ops.set_backend(impl)
    with pytest.raises(ValueError, match="semantic must be a torch.Tensor"):
        desc_ops.confidence_map([[0, 1]])
    with pytest.raises(ValueError, match="heights must be a floating tensor"):
        desc_ops.instance_prior_loss(_x(), _ids(), torch.ones(B, K, dtype=torch.long), 10.0)
    with pytest.raises(ValueError, match="min_pixels must be an int"):
        desc_ops.instance_prior_loss(_x(), _ids(), torch.ones(B, K), 10.0, min_pixels=1.5)
    with pytest.raises(ValueError, match="ignore_classes must hold integers"):
        desc_ops.confidence_map(_ids(), ignore_classes=[1.5])
    with pytest.raises(ValueError, match="num_instances"):
        desc_ops.instance_stats(_ids(), True)
    # Integers beyond 64 bits are named here, not refused by the operator's binding.
    with pytest.raises(ValueError, match=r"^num_instances must be an int >= 0 \(64-bit\), got 1180591620717411303424$"):
        desc_ops.instance_stats(_ids(), 2**70)
    with pytest.raises(ValueError, match=r"^min_pixels must be an int \(64-bit\)"):
        desc_ops.instance_prior_loss(_x(), _ids(), torch.ones(B, K), 10.0, min_pixels=-2**64)
    with pytest.raises(ValueError, match=r"^ignore_index must be an int \(64-bit\)"):
        desc_ops.confidence_map(_ids(), ignore_index=2**63)
    with pytest.raises(ValueError, match="^panoptic_ids must be a torch.Tensor, got list$"):
        desc_ops.relabel_instances([[1, 2]])
    for name in ("edge_weight", "boundary_weight"):
        for op in (desc_ops.confidence_map, lambda s, **kw: desc_ops.semantic_consistency_loss(_x(), _x(), s, **kw)):
            with pytest.raises(ValueError, match=rf"^{name} must be a real number, got '1'$"):
                op(_ids(), **{name: "1"})


def test_empty_batch_without_reduction(device):
    empty = EMPTY.to(device)
    assert desc_ops.consistency_loss(empty, empty, empty, reduction="none").shape == (0, 1, H, W)
    assert ops.consistency_loss(empty, empty, empty, "none")[0].shape == (0, 1, H, W)


# ------------------------------------------------------------ backward operators


def _forward_outputs(device):
    d, s, w = _x().to(device), _x().to(device), _x().to(device)
    ids = torch.randint(-1, K, (B, H, W)).to(device)
    heights, focal = torch.ones(B, K, device=device), torch.full((B,), 30.0, device=device)
    _, norm = ops.consistency_loss(d, s, w, "mean")
    _, z, dz_dh, sign_sum, prior_norm = ops.instance_prior_loss(d, ids, heights, focal, 1, None, "mean", True)
    return dict(d=d, s=s, w=w, ids=ids, norm=norm, z=z, dz_dh=dz_dh, sign_sum=sign_sum, prior_norm=prior_norm,
                image=torch.rand(B, 3, H, W, device=device), grad=torch.ones((), device=device))


def test_backward_operators_check_their_arguments(device):
    x = _forward_outputs(device)
    g, d, s, w, n = x["grad"], x["d"], x["s"], x["w"], x["norm"]
    # The valid calls run.
    ops._consistency_loss_backward(g, d, s, w, n, "mean")
    ops._instance_prior_loss_backward(g, d, x["ids"], x["z"], x["dz_dh"], x["sign_sum"], x["prior_norm"])
    ops._smoothness_loss_backward(g, d, x["image"])
    fb = torch.full((B,), 20.0, device=device)
    ops._stereo_photometric_loss_backward(g, d, x["image"], x["image"], fb, 0.85, "valid", "mean")
    cases = [
        (lambda: ops._consistency_loss_backward(g, d, _x(h=3).to(device), w, n, "mean"), "depth_sem must have"),
        (lambda: ops._consistency_loss_backward(g, d, s, _x(w=3).to(device), n, "mean"), "weight must have"),
        (lambda: ops._consistency_loss_backward(g, d, s, w.double(), n, "mean"), "weight has dtype"),
        (lambda: ops._consistency_loss_backward(g, d, s, w, torch.ones(2, device=device), "mean"), "norm must be"),
        (lambda: ops._consistency_loss_backward(g, d, s, w, n.to("meta"), "mean"), "norm is on meta"),
        (lambda: ops._consistency_loss_backward(g.to("meta"), d, s, w, n, "mean"), "grad is on meta"),
        (lambda: ops._consistency_loss_backward(torch.ones(3, device=device), d, s, w, n, "sum"), "grad of a"),
        (lambda: ops._consistency_loss_backward(_x(h=2).to(device), d, s, w, n, "none"), "grad must have shape"),
        (lambda: ops._consistency_loss_backward(g, d, s, w, n, "max"), "reduction must be"),
        (lambda: ops._instance_prior_loss_backward(g, d, x["ids"][:, :2], x["z"], x["dz_dh"], x["sign_sum"],
                                                   x["prior_norm"]), "instance_ids must have shape"),
        (lambda: ops._instance_prior_loss_backward(g, d, x["ids"], x["z"][:1], x["dz_dh"], x["sign_sum"],
                                                   x["prior_norm"]), "z must have shape"),
        (lambda: ops._instance_prior_loss_backward(g, d, x["ids"], x["z"], x["dz_dh"][:, :1], x["sign_sum"],
                                                   x["prior_norm"]), "dz_dh must have shape"),
        (lambda: ops._instance_prior_loss_backward(g, d, x["ids"], x["z"], x["dz_dh"], x["sign_sum"].int(),
                                                   x["prior_norm"]), "sign_sum must have shape"),
        (lambda: ops._instance_prior_loss_backward(g, d, x["ids"], x["z"], x["dz_dh"], x["sign_sum"],
                                                   x["prior_norm"].double()), "norm must be"),
        (lambda: ops._instance_prior_loss_backward(g, d, x["ids"].to("meta"), x["z"], x["dz_dh"], x["sign_sum"],
                                                   x["prior_norm"]), "instance_ids is on meta"),
        (lambda: ops._smoothness_loss_backward(g, d, x["image"][..., :2]), "image must have shape"),
        (lambda: ops._smoothness_loss_backward(torch.ones(2, device=device), d, x["image"]), "grad of a"),
        (lambda: ops._stereo_photometric_loss_backward(torch.ones(2, device=device), d, x["image"], x["image"], fb,
                                                       0.85, "valid", "mean"), "grad of a"),
        (lambda: ops._stereo_photometric_loss_backward(_x(h=2).to(device), d, x["image"], x["image"], fb, 0.85,
                                                       "valid", "none"), "grad must have shape"),
        (lambda: ops._stereo_photometric_loss_backward(g, d, x["image"], x["image"][..., :2], fb, 0.85, "valid",
                                                       "mean"), "image_other must have shape"),
        (lambda: ops._stereo_photometric_loss_backward(g, d, x["image"], x["image"], fb.double(), 0.85, "valid",
                                                       "mean"), "focal_baseline must be a"),
    ]
    for call, message in cases:
        # A meta tensor among the arguments sends the call to the fake kernel (ValueError).
        with pytest.raises(ValueError if "on meta" in message else RuntimeError, match=message):
            call()


@pytest.mark.parametrize("impl", ["extension", "reference"])
def test_python_messages_in_full(impl):
    """The Python checks' messages name the argument and state the shape wanted
    from the other arguments' sizes."""
    desc_ops.set_backend(impl)
    cases = [
        (lambda: desc_ops.smoothness_loss(_x(), torch.rand(B, 3, H, W + 1)),
         "image must have shape (2, C, 4, 5), got shape (2, 3, 4, 6) and dtype torch.float32"),
        (lambda: desc_ops.smoothness_loss(_x(), torch.rand(B + 1, 3, H, W)),
         "image must have shape (2, C, 4, 5), got shape (3, 3, 4, 5) and dtype torch.float32"),
        (lambda: desc_ops.smoothness_loss(_x(), torch.rand(B, 0, H, W)),
         "image must have shape (2, C, 4, 5), got shape (2, 0, 4, 5) and dtype torch.float32"),
        (lambda: desc_ops.smoothness_loss(_x(), "image"), "image must be a torch.Tensor, got str"),
        (lambda: desc_ops.smoothness_loss(_x(), torch.ones(B, 3, H, W, dtype=torch.long)),
         "image must be a floating tensor, got shape (2, 3, 4, 5) and dtype torch.int64"),
        (lambda: desc_ops.instance_stats(_ids(), K, _x(h=H + 1)),
         "depth must have shape (2, 1, 4, 5) like instance_ids, got shape (2, 1, 5, 5) and dtype torch.float32"),
        (lambda: desc_ops.instance_stats("ids", K), "instance_ids must be a torch.Tensor, got str"),
        (lambda: desc_ops.consistency_loss(_x(), _x(h=3), _x()),
         "depth_sem must have shape (2, 1, 4, 5) like depth, got shape (2, 1, 3, 5) and dtype torch.float32"),
        (lambda: desc_ops.consistency_loss(_x(), _x(), _x(w=4)),
         "weight must have shape (2, 1, 4, 5) like depth, got shape (2, 1, 4, 4) and dtype torch.float32"),
        (lambda: desc_ops.consistency_loss(_x(), _x(), _x(), reduction="max"),
         "reduction must be one of 'none', 'mean', 'sum', got 'max'"),
        (lambda: desc_ops.smoothness_loss(EMPTY, torch.rand(0, 3, H, W)),
         "depth is empty (shape (0, 1, 4, 5) and dtype torch.float32): reduction 'mean' needs pixels"),
        (lambda: desc_ops.instance_stats(_ids(), K, "depth"), "depth must be a torch.Tensor, got str"),
        (lambda: desc_ops.instance_prior_loss(_x(), _ids(), torch.ones(B, K), "f"), "focal must be a real number, got 'f'"),
        (lambda: desc_ops.instance_prior_loss(_x(), _ids(), torch.ones(B, K), torch.ones(B, dtype=torch.bool)),
         "focal must be real, got shape (2,) and dtype torch.bool"),
        (lambda: desc_ops.instance_prior_loss(_x(), _ids(), torch.ones(B, K), torch.ones(B, 1)),
         "focal must be a scalar or have shape (2,), got shape (2, 1) and dtype torch.float32"),
        (lambda: desc_ops.stereo_photometric_loss(_x(), torch.rand(B, 3, H, W), torch.rand(B, 3, H, W), "fb"),
         "focal_baseline must be a real number, got 'fb'"),
        (lambda: desc_ops.stereo_photometric_loss(_x(), torch.rand(B, 3, H, W), torch.rand(B, 3, H, W),
                                                  torch.ones(B + 1)),
         "focal_baseline must be a scalar or have shape (2,), got shape (3,) and dtype torch.float32"),
        (lambda: desc_ops.stereo_photometric_loss(_x(), torch.rand(B, 3, H, W), torch.rand(B, 1, H, W), 5.0),
         "image_other must have shape (2, 3, 4, 5) like image, got shape (2, 1, 4, 5) and dtype torch.float32"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value) == message


@pytest.mark.parametrize("impl", ["extension", "reference"])
def test_accepted_argument_forms(impl):
    """(B, 1, H, W) instance ids, a (B, H, W) image and a (1,) focal are taken as
    their (B, H, W), (B, 1, H, W) and scalar forms; int16 and uint8 maps as int64."""
    desc_ops.set_backend(impl)
    ids, depth, image = _ids(), _x(), torch.rand(B, H, W)
    want = desc_ops.instance_stats(ids, K, depth)
    for form in (ids[:, None], ids.short()):  # other integer dtypes are taken as int64
        for a, b in zip(desc_ops.instance_stats(form, K, depth), want):
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(desc_ops.smoothness_loss(depth, image), desc_ops.smoothness_loss(depth, image[:, None]))
    # An image of another floating dtype is taken in depth's.
    assert torch.equal(desc_ops.confidence_map(ids.to(torch.uint8)), desc_ops.confidence_map(ids))
    assert torch.equal(desc_ops.smoothness_loss(depth, image.double()), desc_ops.smoothness_loss(depth, image))
    heights = torch.rand(B, K) + 1
    assert torch.equal(desc_ops.instance_prior_loss(depth, ids, heights, torch.tensor([30.0])),
                       desc_ops.instance_prior_loss(depth, ids, heights, 30.0))
