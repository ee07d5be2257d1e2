"""desc-train on several processes (torch.distributed): two ranks of gloo on the
CPU, spawned, against one process. Two ranks with batch b and SyncBatchNorm
give the loss terms and gradients of one process with batch 2b, also when a
rank has no instances or none has; the ranks' batches are the frames of the
single process's; a run killed after a checkpoint resumes on two ranks to the
weights of an uninterrupted one, with rank 0 alone writing."""
import json
import os
import signal
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from desc_train.config import load_config
from desc_train.data import generate_benchmark
from desc_train.train import Trainer, sampled_frames, train_desc

pytestmark = pytest.mark.subprocess  # spawned gloo ranks
WORLD = 2
TINY = ["width=4", "batch_size=2", "iters_source=1", "iters_sem=1", "iters_joint=4", "log_every=1",
        "checkpoint_every=2", "sync_bn=true", "confidence=labels"]  # the map: its sums differ per rank
quiet = lambda *_: None  # noqa: E731


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bench"))
    generate_benchmark(root, {"source_train": 8, "target_train": 8, "target_test": 2}, seed=3, size=(32, 96),
                       workers=1, log=None)
    return root


def config(data, out, *items):
    return load_config(None, [*TINY, f"data={data}", f"out={out}", *items])


# ------------------------------------------------------------ running ranks
def _rank(rank, init, fn, args):
    torch.set_num_threads(1)  # two ranks on two cores
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=WORLD)
    try:
        fn(*args)
    finally:
        dist.destroy_process_group()


def spawn(tmp_path, fn, *args, timeout=180):
    """Runs `fn(*args)` in WORLD spawned processes joined in a gloo group; a rank
    that fails fails the call, and so do ranks still running after `timeout` s
    (one waiting forever for another)."""
    init = tmp_path / f"group-{time.monotonic_ns()}"
    context = mp.spawn(_rank, args=(str(init), fn, args), nprocs=WORLD, join=False)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for p in context.processes:
                p.kill()
            pytest.fail(f"ranks still running after {timeout} s: one waits for another")


# ------------------------------------------------------------ one step, two ranks against one process
def _edit_target(trainer, edits):
    """Target frames named in ``edits["no instances"]`` have none (as if the
    segmenter found none); those in ``edits["unlabelled"]`` have the upper half
    of their labels ignored (no confidence there)."""
    batch = trainer.batch

    def edited(ds, salt, step):
        b = batch(ds, salt, step)
        if ds is trainer.target:
            drop = torch.tensor([n in edits["no instances"] for n in b["name"]])
            b["instance_ids"][drop] = -1
            b["instance_class"][drop] = -1
            top = torch.tensor([n in edits["unlabelled"] for n in b["name"]])
            b["semantic"][top, : b["semantic"].shape[1] // 2] = -1
        return b

    trainer.batch = edited


def joint_step(cfg, start, edits):
    """The global loss terms of the first joint step from the checkpoint `start`
    (target frames edited as `_edit_target` says) and the gradients they leave in
    the three networks."""
    trainer = Trainer(cfg, cfg.out, log=quiet)
    trainer.load(start, optimizer=False)
    _edit_target(trainer, edits)
    values = trainer.gradients("joint", 0)
    grads = {f"{name}.{k}": p.grad.clone() for name in ("g_rgb", "g_sem", "g_h")
             for k, p in getattr(trainer, name).named_parameters()}
    return values, grads


def _steps(cfg, start, cases, paper, paper_start, out):
    """On each rank, the joint step of every case, and the paper settings' steps (``paper_steps``)."""
    for case, edits in cases.items():
        torch.save(joint_step(cfg, start, edits), os.path.join(out, f"{case}.rank{dist.get_rank()}.pt"))
    torch.save(paper_steps(paper, paper_start), os.path.join(out, f"paper.rank{dist.get_rank()}.pt"))


@pytest.fixture(scope="module")
def steps(data, tmp_path_factory):
    """One spawn of the ranks (seconds each) for every one-step comparison: the
    folder of their results, the configs and start checkpoints, the target edits."""
    tmp = tmp_path_factory.mktemp("steps")
    cfg, paper = config(data, str(tmp / "run")), config(data, str(tmp / "paper"), *PAPER)
    trainer = Trainer(cfg, cfg.out, log=quiet)
    trainer.save("start", 0, done=True)
    rank1 = {trainer.target.names[i] for _, i in trainer.frames(trainer.target, 2, 0, rank=1, world=WORLD)}
    edits = {"uneven": {"no instances": set(), "unlabelled": rank1},
             "rank 1 without instances": {"no instances": rank1, "unlabelled": set()},
             "no instances": {"no instances": set(trainer.target.names), "unlabelled": set()}}
    start = trainer.checkpoint_path("start")
    paper_trainer = Trainer(paper, paper.out, log=quiet)
    paper_trainer.save("start", 0, done=True)
    paper_start = paper_trainer.checkpoint_path("start")
    spawn(tmp, _steps, cfg, start, edits, paper, paper_start, str(tmp))
    return tmp, cfg, start, edits, paper, paper_start


@pytest.fixture(scope="module")
def cases(steps):
    """The config and checkpoint of the runs, the target edits of each case, and
    per case each rank's terms and gradients of one joint step (batch 2 each)."""
    tmp, cfg, start, edits, _, _ = steps
    ranks = {case: [torch.load(tmp / f"{case}.rank{r}.pt", weights_only=False) for r in range(WORLD)]
             for case in edits}
    return cfg, start, edits, ranks


def assert_same_step(cfg, start, edits, ranks):
    """Both ranks hold the terms and gradients of one process with batch 2b on the same frames."""
    one = config(cfg.data, cfg.out, f"batch_size={WORLD * cfg.batch_size}")
    values, grads = joint_step(one, start, edits)
    for r, (v, g) in enumerate(ranks):
        assert v.keys() == values.keys()
        for name in values:
            assert v[name] == pytest.approx(values[name], rel=1e-5, abs=1e-7), (r, name)
        for k in grads:
            scale = grads[k].abs().max().item()
            assert torch.allclose(g[k], grads[k], rtol=1e-4, atol=1e-5 * scale + 1e-12), (r, k)
    return values


def test_two_ranks_of_b_train_as_one_process_of_2b(cases):
    """Every term is on and acts; the ranks' instance pixels (1 instance against 4)
    and confidence sums (half of rank 1's labels ignored) differ, so per-rank
    means, DDP's averaging left uncorrected or BatchNorm statistics per rank
    would each move the terms or the gradients."""
    cfg, start, edits, ranks = cases
    values = assert_same_step(cfg, start, edits["uneven"], ranks["uneven"])
    assert set(values) == {"supervised_rgb", "supervised_sem", "height", "consistency", "instance_prior",
                           "smoothness"}
    assert all(v > 0 for v in values.values()), values


def test_a_rank_without_instances(cases):
    """Rank 1's target frames have no instances: no rank waits for ever, and the
    instance prior is rank 0's pixels' mean, as in the single process."""
    cfg, start, edits, ranks = cases
    case = "rank 1 without instances"
    values = assert_same_step(cfg, start, edits[case], ranks[case])
    assert values["instance_prior"] > 0


def test_no_instances_on_any_rank_gives_zero(cases):
    cfg, start, edits, ranks = cases
    values = assert_same_step(cfg, start, edits["no instances"], ranks["no instances"])
    for v, g in ranks["no instances"]:
        assert v["instance_prior"] == 0.0
        assert all(torch.isfinite(t).all() for t in g.values())
    assert values["consistency"] > 0


# ------------------------------------------------------------ translation and the learned prior scale
# (With image_range=-1,1 an untrained S2T's output is nearly a constant near 0, and G_rgb's BatchNorm
# over such images turns float32 rounding into gradients 1 % apart: not what this test is about.)
PAPER = ["translation=true", "translation_width=2", "prior_scale=learned"]


def paper_steps(cfg, start):
    """From the checkpoint `start`: stage a's first step with translation (S2T's and
    G_rgb's terms and gradients, then the discriminator's) and the joint stage's
    first (with the frozen S2T and the learned prior scale)."""
    out, trainer = {}, Trainer(cfg, cfg.out, log=quiet)
    for kind in ("source_only", "joint"):
        trainer.load(start, optimizer=False)  # the weights and statistics of `start` again
        trainer.s2t.train(kind == "source_only")
        values = trainer.gradients(kind, 0)
        if kind == "source_only":
            values["discriminator"] = trainer.discriminator_gradients()
        nets = ("g_rgb", "s2t", "d_s2t") if kind == "source_only" else ("g_rgb", "g_h", "prior_scale")
        out[kind] = values, {f"{name}.{k}": p.grad.clone() for name in nets
                             for k, p in trainer.networks[name].named_parameters()}
    return out


def test_translation_and_the_prior_scale_on_two_ranks_of_b_train_as_one_process_of_2b(data, steps):
    """S2T, its discriminator (one pool over the global batch) and the prior scale
    in DistributedDataParallel: every term and every gradient of two ranks with
    batch b, in stage a and in the joint stage, equal one process's with 2b."""
    tmp, _, _, _, cfg, start = steps
    ranks = [torch.load(tmp / f"paper.rank{r}.pt", weights_only=False) for r in range(WORLD)]
    one = paper_steps(config(data, cfg.out, *PAPER, f"batch_size={WORLD * cfg.batch_size}"), start)
    for kind, (values, grads) in one.items():
        assert all(v > 0 for v in values.values()), (kind, values)
        assert {"identity", "gan", "discriminator"} <= values.keys() if kind == "source_only" else \
            "instance_prior" in values
        for r, rank in enumerate(ranks):
            v, g = rank[kind]
            assert v.keys() == values.keys() and g.keys() == grads.keys()
            for name in values:
                assert v[name] == pytest.approx(values[name], rel=1e-5, abs=1e-7), (kind, r, name)
            for k in grads:
                # Relative to the network's largest gradient: S2T's BatchNorm layers on batches of 2
                # compound float32 rounding, and a bias before a BatchNorm has a gradient of 0 but for it.
                net = k.split(".")[0]
                scale = max(v.abs().max().item() for name, v in grads.items() if name.startswith(net + "."))
                assert torch.allclose(g[k], grads[k], rtol=1e-3, atol=1e-4 * scale), (kind, r, k)
    assert ranks[0]["joint"][1]["prior_scale.s"].abs() > 0


# ------------------------------------------------------------ the sampler
@pytest.mark.parametrize("n,b", [(8, 2), (10, 3), (6, 4)])
def test_ranks_share_out_the_batch_of_one_process(n, b):
    """At every step the two ranks' frames (epoch and index) are together those
    of one process with batch 2b, neither rank repeats a frame within an epoch,
    and every epoch is another order."""
    for step in range(12):
        ranks = [sampled_frames(n, b, seed=5, step=step, rank=r, world=WORLD) for r in range(WORLD)]
        assert all(len(frames) == b for frames in ranks)
        assert sorted(ranks[0] + ranks[1]) == sorted(sampled_frames(n, WORLD * b, seed=5, step=step))
        assert sampled_frames(n, b, seed=5, step=step, rank=1, world=WORLD) == ranks[1]  # a function of its arguments
    shards = [[i for s in range(n // WORLD) for _, i in sampled_frames(n, 1, 5, s, r, WORLD)] for r in range(WORLD)]
    assert sorted(shards[0] + shards[1]) == list(range(n))  # epoch 0: every frame once, on one rank
    epochs = [[i for s in range(e * n, (e + 1) * n) for _, i in sampled_frames(n, 1, 5, s)] for e in range(3)]
    assert all(sorted(e) == list(range(n)) for e in epochs) and len({tuple(e) for e in epochs}) == 3


# ------------------------------------------------------------ resuming
def _train(cfg, kill_at_joint_step=None):
    """desc-train train on this rank; rank 1 kills itself at the start of the
    given joint step."""
    if kill_at_joint_step is not None and dist.get_rank() == 1:
        gradients = Trainer.gradients

        def dying(self, kind, step):
            if kind == "joint" and step == kill_at_joint_step:
                os.kill(os.getpid(), signal.SIGKILL)
            return gradients(self, kind, step)

        Trainer.gradients = dying
    train_desc(cfg, log=quiet)


def _train_both(first, second):
    _train(first)
    _train(second)


def test_killed_run_resumes_on_two_ranks_to_the_uninterrupted_weights(data, tmp_path):
    """Rank 1 is killed during joint step 4, after the checkpoint of step 2 (step 3
    is lost). Run again on two ranks, the joint stage resumes at step 2 and ends
    bitwise where an uninterrupted two-rank run does: weights, BatchNorm
    statistics, Adam's moments. Rank 0 alone logged, once per step."""
    straight, cut = config(data, str(tmp_path / "straight")), config(data, str(tmp_path / "cut"))
    with pytest.raises(Exception, match="SIGKILL|signal"):
        spawn(tmp_path, _train, cut, 3)
    assert torch.load(os.path.join(cut.out, "joint.pt"), weights_only=True)["step"] == 2
    assert not os.path.exists(os.path.join(cut.out, "results.json"))
    spawn(tmp_path, _train_both, straight, cut)

    a = torch.load(os.path.join(straight.out, "joint.pt"), weights_only=True)
    b = torch.load(os.path.join(cut.out, "joint.pt"), weights_only=True)
    assert a["done"] and b["done"] and a["step"] == b["step"] == 4
    tensors = [(net, k) for net in ("g_rgb", "g_sem", "g_h") for k in a[net]]
    assert len(tensors) > 3 and any("running_var" in k for _, k in tensors)
    for net, k in tensors:
        assert torch.equal(a[net][k], b[net][k]), (net, k)
    for i, s in a["opt"]["state"].items():
        for k, v in s.items():
            assert torch.equal(v, b["opt"]["state"][i][k]), (i, k)

    def records(run):
        return [json.loads(line) for line in open(os.path.join(run.out, "log.jsonl"))]

    assert [(r["stage"], r["step"]) for r in records(straight)] == \
        [("source_only", 1), ("semantic", 1)] + [("joint", s) for s in range(1, 5)]
    joint = [r for r in records(cut) if r["stage"] == "joint"]
    assert [r["step"] for r in joint] == [1, 2, 3, 3, 4]  # the killed run logged step 3; the resumed one from 3
    lost, again = joint[2], joint[3]
    assert {k: v for k, v in lost.items() if k != "time"} == {k: v for k, v in again.items() if k != "time"}
    for run in (straight, cut):
        assert set(json.load(open(os.path.join(run.out, "results.json")))) == {"median_scaling_off",
                                                                              "median_scaling_on"}
