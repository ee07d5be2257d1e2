"""Operator registration (opcheck, torch.compile), determinism and the backend
switch (the DESCLoss module: test_desc_loss.py)."""
import os
import subprocess
import sys
import warnings

import pytest
import torch

import desc_ops
from desc_ops import reference

from helpers import _batch, assert_close, leaf, rand_map

ops = torch.ops.desc_ops


def _opcheck_cases(device, dtype):
    x = _batch(device, dtype)
    ignore = torch.tensor([1], device=device)
    grad = dict(requires_grad=True)
    d, s, h = (x["depth"].clone().requires_grad_(), x["depth_sem"].clone().requires_grad_(),
               x["heights"].clone().requires_grad_())
    return {
        "confidence_map": [(x["logits"], x["image"], None, 1.0, 0.5, -1, ignore),
                           (x["labels"], None, x["edges"], 0.5, 0.3, -1, None)],
        "consistency_loss": [(d, s, x["weight"], r) for r in ("mean", "sum", "none")],
        "semantic_consistency_loss": [(d, s, x["logits"], x["image"], None, 1.0, 0.5, -1, ignore, "mean"),
                                      (d, s, x["labels"], None, None, 1.0, 0.5, -1, None, "none")],
        "instance_stats": [(x["ids"], 3, x["depth"], True), (x["ids"], 3, None, False)],
        "instance_prior_loss": [(d, x["ids"], h, x["focal"], 1, None, "mean", True),
                                (d, x["ids"], h, x["focal"], 2, 40.0, "sum", True),
                                (d, x["ids"], h, x["focal"], 1, 40.0, "none", True)],
        "smoothness_loss": [(d, x["image"]), (d, x["image"], "none")],
        "stereo_photometric_loss": [(d, x["image"], x["image_other"], x["focal_baseline"]),
                                    (d, x["image"], x["image_other"], x["focal_baseline"], 0.5, "reflect", "none"),
                                    (d, x["image"], x["image_other"], x["focal_baseline"], 1.0, "valid", "sum")],
    }


# The CPU training forms (desc_ops/functional.py) of the losses: same
# arguments, more outputs.
TRAINING_FORMS = {"_consistency_loss_train": "consistency_loss",
                  "_semantic_consistency_loss_train": "semantic_consistency_loss",
                  "_smoothness_loss_train": "smoothness_loss"}


def _takes(name, args) -> bool:
    """Whether operator `name` takes `args` (the smoothness training form has no
    reduction: the mean only)."""
    return len(args) <= len(getattr(ops, name).default._schema.arguments)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_training_forms_match(dtype):
    """The CPU training forms give the plain forward's outputs bit for bit, and
    their backward the recomputing backward's gradients (bit for bit for the
    consistency losses and for an upstream 1 of the smoothness)."""
    x = _batch("cpu", dtype, B=2, H=21, W=45, seed=3)
    for name, plain in TRAINING_FORMS.items():
        for args in filter(lambda a: _takes(name, a), _opcheck_cases("cpu", dtype)[plain]):
            args = [a.detach() if torch.is_tensor(a) else a for a in args]
            got, want = getattr(ops, name)(*args), getattr(ops, plain)(*args)
            want = want if isinstance(want, tuple) else (want,)
            for a, b in zip(got, want):
                assert torch.equal(a, b), name
    d, s, w, img = x["depth"], x["depth_sem"], x["weight"], x["image"]
    s[..., :3] = d[..., :3]  # sign(0) pixels
    for reduction in ("mean", "sum", "none"):
        _, norm, signed = ops._consistency_loss_train(d, s, w, reduction)
        g = rand_map(2, 21, 45, dtype, "cpu") if reduction == "none" else torch.tensor(0.7, dtype=dtype)
        want = ops._consistency_loss_backward(g, d, s, w, norm, reduction)
        for a, b in zip(ops._consistency_loss_backward_signed(g, signed, norm, reduction, [True, True]), want):
            assert torch.equal(a, b)
        gd, gs = ops._consistency_loss_backward_signed(g, signed, norm, reduction, [True, False])
        assert torch.equal(gd, want[0]) and gs.shape == (0,)
        gd, gs = ops._consistency_loss_backward_signed(g, signed, norm, reduction, [False, True])
        assert torch.equal(gs, want[1]) and gd.shape == (0,)
    _, unit = ops._smoothness_loss_train(d, img)
    assert unit.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    for g in (1.0, 0.3):
        g = torch.tensor(g, dtype=dtype)
        a = ops._smoothness_loss_backward_saved(g, unit, dtype)
        b = ops._smoothness_loss_backward(g, d, img)
        if g == 1:
            assert torch.equal(a, b)
        else:
            assert_close(a, b, dtype)


def _forward(x, d, s, h):
    """Calls every public function once."""
    conf = desc_ops.confidence_map(x["logits"], image=x["image"], ignore_classes=[1])
    total = (desc_ops.semantic_consistency_loss(d, s, x["logits"], image=x["image"])
             + desc_ops.semantic_consistency_loss(d, s, x["labels"], edges=x["edges"], reduction="sum")
             + desc_ops.consistency_loss(d, s, x["weight"], reduction="none").sum()
             + desc_ops.instance_prior_loss(d, x["ids"], h, x["focal"], max_depth=50.0)
             + desc_ops.smoothness_loss(d, x["image"])
             + desc_ops.stereo_photometric_loss(d, x["image"], x["image_other"], x["focal_baseline"], ssim="reflect"))
    st = desc_ops.instance_stats(x["ids"], x["heights"].shape[1], x["depth"])
    return conf, total, st.count, st.depth_median, st.depth_mean


def _every_op(x, forward=_forward):
    """Every output of every public function, and the gradients of the losses."""
    d, s, h = leaf(x["depth"]), leaf(x["depth_sem"]), leaf(x["heights"])
    out = forward(x, d, s, h)
    return tuple(out) + torch.autograd.grad(out[1], (d, s, h))


def test_batches_beyond_65535_images(device):
    """The CUDA grids are flat: more images than a grid's y or z dimension holds."""
    x = _batch(device, B=65_537, C=3, H=2, W=3, K=2, seed=6)
    got = _every_op(x)
    desc_ops.set_backend("reference")
    want = _every_op(x)
    for a, b in zip(got, want):
        assert_close(a.double(), b.double(), torch.float32)


OPERATORS = ["confidence_map", "consistency_loss", "semantic_consistency_loss", "instance_stats",
             "instance_prior_loss", "smoothness_loss", "stereo_photometric_loss"]


def test_extension_backend_calls_every_operator(monkeypatch):
    """Every public function calls its compiled operator, and the reference
    never runs: the *_matches_reference tests compare two paths, not one."""
    called = []

    class Spy:
        def __getattr__(self, name):
            def run(*args):
                called.append(name)
                return getattr(ops, name)(*args)
            return run

    def refuse(*args, **kwargs):
        raise AssertionError("the reference ran under the extension backend")

    monkeypatch.setattr(desc_ops.functional, "ops", Spy())
    for name in OPERATORS:
        monkeypatch.setattr(reference, name, refuse)
    x = _batch("cpu")
    _every_op(x)
    assert sorted({TRAINING_FORMS.get(name, name) for name in called}) == sorted(OPERATORS)


def test_reference_backend_calls_no_operator(monkeypatch):
    """The reference backend runs every public function in PyTorch alone."""
    class Refuse:
        def __getattr__(self, name):
            raise AssertionError(f"the compiled operator {name} ran under the reference backend")

    monkeypatch.setattr(desc_ops.functional, "ops", Refuse())
    desc_ops.set_backend("reference")
    _every_op(_batch("cpu"))


def test_extension_backend_refused_without_the_extension(monkeypatch):
    """Without desc_ops._C the switch to it says why and how to build it (the
    import-time path runs in test_missing_extension_says_how_to_build)."""
    from desc_ops import _backend
    monkeypatch.setattr(_backend, "EXTENSION_ERROR", ImportError("no _C here"))
    with pytest.raises(ImportError, match=r"^desc_ops: the compiled extension desc_ops\._C could not be loaded "
                                          r"\(no _C here\)\.\nBuild it from the repository root"):
        desc_ops.set_backend("extension")
    desc_ops.set_backend("reference")
    assert desc_ops.backend() == "reference"


def test_backend_switch(device):
    x = _batch(device)
    assert desc_ops.backend() == "extension"
    ext = desc_ops.smoothness_loss(x["depth"], x["image"])
    desc_ops.set_backend("reference")
    assert desc_ops.backend() == "reference"
    ref = desc_ops.smoothness_loss(x["depth"], x["image"])
    assert torch.equal(ref, reference.smoothness_loss(x["depth"], x["image"]))
    assert_close(ext, ref)
    with pytest.raises(ValueError, match="backend"):
        desc_ops.set_backend("triton")


def _python(code, **env):
    full_env = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env)


def test_backend_from_environment():
    out = _python("import desc_ops; print(desc_ops.backend())", DESC_OPS_BACKEND="reference")
    assert out.returncode == 0 and out.stdout.strip() == "reference"
    out = _python("import desc_ops", DESC_OPS_BACKEND="nonsense")
    assert out.returncode != 0 and "DESC_OPS_BACKEND" in out.stderr


def test_missing_extension_says_how_to_build():
    hide = "import sys; sys.modules['desc_ops._C'] = None; "
    out = _python(hide + "import desc_ops")
    assert out.returncode != 0
    assert "pip install ." in out.stderr and "DESC_OPS_BACKEND=reference" in out.stderr
    # Asking for the reference works without the extension.
    out = _python(hide + "import torch, desc_ops; print(desc_ops.backend(), desc_ops.extension_available(), "
                  "desc_ops.smoothness_loss(torch.ones(1, 1, 2, 2), torch.ones(1, 3, 2, 2)).item())",
                  DESC_OPS_BACKEND="reference")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["reference", "False", "0.0"]


def test_built_cuda_version_matches_torch():
    built = desc_ops.built_cuda_version()
    if built is not None:
        assert torch.version.cuda is not None
        assert built.split(".")[0] == torch.version.cuda.split(".")[0]


@pytest.mark.parametrize("runtime, built, load", [("13.0", [13], 13), ("13.2", [12, 13], 13), ("12.8", [12], 12),
                                                   (None, [13], None), (None, [], None)])
def test_cuda_module_of_the_runtime_major_is_loaded(runtime, built, load):
    from desc_ops import _backend
    assert _backend.cuda_plan(runtime, built) == (load, None)


@pytest.mark.parametrize("runtime, built, says", [
    ("12.8", [13], "desc_ops's CUDA kernels were built for CUDA 13 but torch uses CUDA 12.8: rebuild with a CUDA 12"),
    ("13.0", [11, 12], "built for CUDA 11, 12 but torch uses CUDA 13.0: rebuild with a CUDA 13 toolkit"),
    ("13.0", [], "desc_ops was built without CUDA kernels and torch uses CUDA 13.0: rebuild with a CUDA 13"),
])
def test_cuda_major_mismatch_says_what_and_how_to_fix(runtime, built, says):
    from desc_ops import _backend
    load, message = _backend.cuda_plan(runtime, built)
    assert load is None and says in message
    assert "pip install --force-reinstall --no-deps --no-cache-dir ." in message


def test_built_cuda_majors_reads_the_module_names(monkeypatch, tmp_path):
    from desc_ops import _backend
    for name in ("_C.abi3.so", "_C_cuda13.abi3.so", "_C_cuda12.cpython-311-x86_64-linux-gnu.so", "_C_cudaX.so"):
        (tmp_path / name).touch()
    monkeypatch.setattr(_backend, "__file__", str(tmp_path / "_backend.py"))
    assert _backend.built_cuda_majors() == [12, 13]


def test_cuda_tensors_meet_the_mismatch_message(monkeypatch):
    """Under a torch of another CUDA major, every operator's CUDA kernel raises
    the mismatch message instead of the dispatcher's "could not run" error."""
    from desc_ops import _backend
    monkeypatch.setattr(torch.version, "cuda", "99.0")
    try:
        _backend._load_cuda()
        assert _backend.built_cuda_version() is None
        assert "torch uses CUDA 99.0" in _backend.CUDA_ERROR
        cuda = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)
        value = {"Tensor": torch.ones(1), "int": 0, "float": 0.0, "str": "mean", "bool": True, "List[bool]": [True] * 2,
                 "ScalarType": torch.float32}
        for name in _backend.OPERATORS:
            op = getattr(torch.ops.desc_ops, name).default
            assert torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CUDA"), name
            args = [None if str(a.type).startswith("Optional") else value[str(a.type)] for a in op._schema.arguments]
            with pytest.raises(RuntimeError, match="torch uses CUDA 99.0: rebuild with a CUDA 99 toolkit"):
                op.redispatch(cuda, *args)
    finally:
        monkeypatch.undo()
        _backend._load_cuda()  # this torch's own state again
    assert (_backend.built_cuda_version() is None) == (_backend._cuda_module is None)


def test_modules_pass_every_option_to_their_function():
    """Each nn.Module equals its function with the same options, and those
    options act here (each differs from the module built with the defaults)."""
    x = _batch("cpu", torch.float64, K=3, seed=11)
    d, s = x["depth"], x["depth_sem"]
    counts = sorted(int((x["ids"][b] == k).sum()) for b in range(2) for k in range(3))
    min_pixels = counts[len(counts) // 2]  # excludes the smaller half of the slots
    cases = [
        (desc_ops.ConsistencyLoss, dict(reduction="sum"), (d, s, x["weight"]), {},
         lambda **o: desc_ops.consistency_loss(d, s, x["weight"], **o)),
        (desc_ops.SemanticConsistencyLoss,
         dict(edge_weight=3.0, ignore_classes=[1], reduction="sum"),
         (d, s, x["logits"]), dict(image=x["image"]),
         lambda **o: desc_ops.semantic_consistency_loss(d, s, x["logits"], image=x["image"], **o)),
        (desc_ops.SemanticConsistencyLoss, dict(boundary_weight=0.2, ignore_index=0), (d, s, x["labels"]),
         dict(edges=x["edges"]),
         lambda **o: desc_ops.semantic_consistency_loss(d, s, x["labels"], edges=x["edges"], **o)),
        (desc_ops.InstancePriorLoss, dict(min_pixels=min_pixels, max_depth=1.5, reduction="sum"),
         (d, x["ids"], x["heights"], x["focal"]), {},
         lambda **o: desc_ops.instance_prior_loss(d, x["ids"], x["heights"], x["focal"], **o)),
    ]
    for module, options, args, kwargs, function in cases:
        got = module(**options)(*args, **kwargs)
        assert torch.equal(got, function(**options)), module
        for name, value in options.items():
            alone = module(**{name: value})(*args, **kwargs)
            assert not torch.equal(alone, module()(*args, **kwargs)), (module, name)
    assert torch.equal(desc_ops.SmoothnessLoss()(d, x["image"]), desc_ops.smoothness_loss(d, x["image"]))
    stereo = (d, x["image"], x["image_other"], x["focal_baseline"])
    for options in (dict(alpha=0.3), dict(ssim="reflect"), dict(reduction="none")):
        got = desc_ops.StereoPhotometricLoss(**options)(*stereo)
        assert torch.equal(got, desc_ops.stereo_photometric_loss(*stereo, **options))
        assert not torch.equal(got, desc_ops.StereoPhotometricLoss()(*stereo)), options


def _every_call(dtype):
    """(operator name, arguments) of every operator, the backward ones included,
    on the CPU (opcheck does not compare a fake's dtypes with the kernel's)."""
    calls = []
    for name, cases in _opcheck_cases("cpu", dtype).items():
        for args in cases:
            args = tuple(a.detach() if torch.is_tensor(a) else a for a in args)
            calls.append((name, args))
            forms = [form for form, plain in TRAINING_FORMS.items() if plain == name and _takes(form, args)]
            calls += [(form, args) for form in forms]
    x = _batch("cpu", dtype)
    d, s, w, img = x["depth"], x["depth_sem"], x["weight"], x["image"]
    g = torch.tensor(0.5, dtype=dtype)
    for reduction in ("mean", "none"):
        gr = torch.ones_like(d) if reduction == "none" else g
        _, norm, signed = ops._consistency_loss_train(d, s, w, reduction)
        calls.append(("_consistency_loss_backward", (gr, d, s, w, norm, reduction)))
        for mask in ([True, True], [True, False], [False, True]):
            calls.append(("_consistency_loss_backward_signed", (gr, signed, norm, reduction, mask)))
    # Maps of int32 ids and labels; a confidence map from labels alone (no floating argument: float32).
    calls += [("instance_stats", (x["ids"].int(), 3, d, True)), ("instance_stats", (x["ids"].int(), 3, None, False)),
              ("confidence_map", (x["labels"].int(), None, None, 0.5, 0.3, -1, None)),
              ("confidence_map", (x["labels"], img, None, 0.5, 0.3, -1, None)),
              ("confidence_map", (x["logits"], None, None, 0.5, 0.3, -1, None))]
    calls.append(("_smoothness_loss_backward", (g, d, img)))
    calls.append(("_smoothness_loss_backward_saved", (g, ops._smoothness_loss_train(d, img)[1], dtype)))
    _, z, dz_dh, sign_sum, norm = ops.instance_prior_loss(d, x["ids"], x["heights"], x["focal"], 1, None, "mean", True)
    calls.append(("_instance_prior_loss_backward", (g, d, x["ids"], z, dz_dh, sign_sum, norm)))
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_fake_kernels_give_the_kernels_shapes_and_dtypes(dtype):
    from torch._subclasses.fake_tensor import FakeTensorMode

    def meta(out):
        out = out if isinstance(out, tuple) else (out,)
        return [(tuple(t.shape), t.dtype) for t in out]

    calls = _every_call(dtype)
    assert {name for name, _ in calls} >= {*OPERATORS, *TRAINING_FORMS}
    for name, args in calls:
        real = getattr(ops, name)(*args)
        with FakeTensorMode(allow_non_fake_inputs=False) as mode:
            fake = getattr(ops, name)(*(mode.from_tensor(a) if torch.is_tensor(a) else a for a in args))
        assert meta(fake) == meta(real), name


def test_fake_kernels_name_an_argument_on_another_device():
    """Every tensor argument of every operator, moved alone to the meta
    device, is named in the error with the argument it differs from."""
    for name, args in _every_call(torch.float32):
        schema = getattr(ops, name).default._schema
        if sum(torch.is_tensor(a) for a in args) < 2:
            continue
        for i, a in enumerate(args):
            # ignore_classes is a list of ids that the kernels copy to the maps' device.
            if not torch.is_tensor(a) or schema.arguments[i].name == "ignore_classes":
                continue
            moved = list(args)
            moved[i] = a.to("meta")
            arg = schema.arguments[i].name
            names = "|".join(x.name for x in schema.arguments)
            message = rf"{arg} is on meta but ({names}) is on cpu|({names}) is on cpu but {arg} is on meta"
            with pytest.raises((ValueError, RuntimeError), match=message):
                getattr(ops, name)(*moved)


@pytest.mark.parametrize("name", OPERATORS)
def test_reference_functions_take_the_public_signature(name):
    """desc_ops.reference.f is a drop-in for desc_ops.f: same parameters, same defaults."""
    import inspect

    public, ref = inspect.signature(getattr(desc_ops, name)), inspect.signature(getattr(reference, name))
    assert [(p.name, p.kind, p.default) for p in ref.parameters.values()] == \
        [(p.name, p.kind, p.default) for p in public.parameters.values()]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reference_computes_half_precision_in_float32_and_rounds_once(dtype):
    """docs/ops.md §0: arithmetic in acc(T) = float32, one rounding to T at the end.
    So the reference on half inputs is bitwise its float32 result on the same
    values, rounded; arithmetic in the half type itself rounds at every step."""
    x = _batch("cpu", dtype, H=40, W=50, seed=5)
    up = {k: v.float() if torch.is_floating_point(v) and k not in ("focal", "focal_baseline") else v
          for k, v in x.items()}
    calls = {
        "confidence_map": lambda a: reference.confidence_map(a["logits"], image=a["image"], edge_weight=0.7),
        "consistency_loss": lambda a: reference.consistency_loss(a["depth"], a["depth_sem"], a["weight"]),
        "semantic_consistency_loss": lambda a: reference.semantic_consistency_loss(
            a["depth"], a["depth_sem"], a["logits"], image=a["image"]),
        "instance_prior_loss": lambda a: reference.instance_prior_loss(a["depth"], a["ids"], a["heights"],
                                                                       a["focal"]),
        "smoothness_loss": lambda a: reference.smoothness_loss(a["depth"], a["image"]),
        "stereo_photometric_loss": lambda a: reference.stereo_photometric_loss(
            a["depth"], a["image"], a["image_other"], a["focal_baseline"]),
    }
    for name, call in calls.items():
        half, single = call(x), call(up)
        assert half.dtype == dtype and torch.equal(half, single.to(dtype)), name


def test_an_instance_map_without_a_single_minus_1_is_warned(impl):
    """A panoptic map with 0 = background makes its background an instance: every
    pixel is then one. The check shares the id check's host read; validate=False skips it."""
    d, heights = torch.rand(2, 1, 4, 6) + 1, torch.ones(2, 3)
    background_zero = torch.zeros(2, 4, 6, dtype=torch.long)
    background_zero[:, :2, :2] = 2
    with pytest.warns(UserWarning, match=r"^instance_ids: no pixel of the batch is -1"):
        desc_ops.instance_prior_loss(d, background_zero, heights, 10.0)
    with pytest.warns(UserWarning, match="relabel_instances"):
        desc_ops.instance_stats(background_zero, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        desc_ops.instance_prior_loss(d, background_zero - 1, heights, 10.0)  # -1 where it was 0
        desc_ops.instance_prior_loss(d, background_zero, heights, 10.0, validate=False)


LOSSES_UNDER_AUTOCAST = {
    "consistency_loss": lambda x, d: desc_ops.consistency_loss(d, x["depth_sem"], x["weight"]),
    "semantic_consistency_loss": lambda x, d: desc_ops.semantic_consistency_loss(d, x["depth_sem"], x["logits"],
                                                                                  image=x["image"]),
    "instance_prior_loss": lambda x, d: desc_ops.instance_prior_loss(d, x["ids"], x["heights"], x["focal"]),
    "smoothness_loss": lambda x, d: desc_ops.smoothness_loss(d, x["image"]),
    "stereo_photometric_loss": lambda x, d: desc_ops.stereo_photometric_loss(d, x["image"], x["image_other"],
                                                                             x["focal_baseline"]),
    "DESCLoss": lambda x, d: desc_ops.DESCLoss()(d, depth_sem=x["depth_sem"], semantic=x["logits"],
                                                 image=x["image"], instance_ids=x["ids"], heights=x["heights"],
                                                 focal=x["focal"]).total,
}


@pytest.mark.parametrize("loss", list(LOSSES_UNDER_AUTOCAST))
def test_losses_return_float32_under_autocast(device, impl, loss):
    """As torch's losses: under autocast the loss is computed on float32 copies
    and returned in float32 (not rounded to bfloat16); the gradient keeps the dtype of its input."""
    x = _batch(device, torch.bfloat16)
    d = leaf(x["depth"])
    with torch.autocast(device.type, dtype=torch.bfloat16):
        got = LOSSES_UNDER_AUTOCAST[loss](x, d)
    assert got.dtype == torch.float32
    (grad,) = torch.autograd.grad(got, d)
    assert grad.dtype == torch.bfloat16
    x32 = {k: v.float() if v.is_floating_point() else v for k, v in x.items()}
    want = LOSSES_UNDER_AUTOCAST[loss](x32, x32["depth"])
    assert torch.equal(got.detach(), want)


def test_version_is_pyproject_s_from_metadata_or_the_checkout(monkeypatch):
    import re
    from importlib import metadata

    import desc_train

    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")) as f:
        stated = re.search(r'^version = "([^"]+)"', f.read(), re.MULTILINE).group(1)
    assert desc_ops.__version__ == desc_train.__version__ == metadata.version("desc-ops") == stated

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    # A source checkout without metadata reads its pyproject.toml; an installed copy (CI's wheel) has none beside it.
    beside = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(desc_ops.__file__))), "pyproject.toml")
    assert desc_ops._version() == (stated if os.path.exists(beside) else "0+unknown")
