"""The benchmark script runs and writes a complete record (no speed is asserted)."""
import json
import os
import sys
import types

import pytest
import torch

pytestmark = pytest.mark.benchmark

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))

import losses  # noqa: E402


def test_quick_benchmark_writes_record(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert losses.main(["--quick", "--device", "cpu", "--dtype", "float32", "--ops",
                        "instance_prior_loss,confidence_map", "--json", str(out), "--plot", ""]) == 0
    record = json.loads(out.read_text())
    meta, rows = record["meta"], record["results"]
    assert meta["torch"] == torch.__version__ and meta["threads"] == torch.get_num_threads()
    seen = {(r["op"], r["provider"]) for r in rows}
    assert seen == {("instance_prior_loss", p) for p in ("desc_ops", "compiled", "reference", "loop")} | {
        ("confidence_map", p) for p in ("desc_ops", "compiled", "reference")}
    for r in rows:
        assert r["median_ms"] > 0 and r["p20_ms"] <= r["median_ms"] <= r["p80_ms"]
        assert r["bytes"] > 0 and r["gbs"] > 0
        if r["provider"] == "desc_ops":
            assert r["speedup_of_desc_ops"] == 1.0
        # CPU: the elementwise passes against a copy of as many bytes, measured in the run.
        assert (r["copy_fraction"] is not None) == (r["op"] == "confidence_map")
        if r["copy_fraction"] is not None:
            assert r["copy_fraction"] > 0
    assert {c["op"] for c in meta["cpu_copy_bandwidth_gbs"]} == {"confidence_map"}
    assert "instance_prior_loss" in capsys.readouterr().out


def test_loop_provider_matches_kernels():
    x = losses.make_inputs(losses.Size(2, 40, 60, K=6), torch.float64, "cpu")
    import desc_ops
    from loop_reference import instance_prior_loss_loop, instance_stats_loop
    got = instance_stats_loop(x["ids"], 6, x["depth"])
    want = desc_ops.instance_stats(x["ids"], 6, x["depth"])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, equal_nan=True)
    torch.testing.assert_close(instance_prior_loss_loop(x["depth"], x["ids"], x["heights"], x["focal"]).double(),
                               desc_ops.instance_prior_loss(x["depth"], x["ids"], x["heights"], x["focal"]),
                               rtol=1e-6, atol=1e-6)


def test_cpu_timing_takes_turns_and_starts_each_block_with_an_untimed_call(monkeypatch):
    """time_cpu times the providers of a row in turns, round after round, and each
    block of timed calls follows one untimed call of the same provider, so that no
    provider inherits the cache state another left."""
    log = []

    class Timer:
        def __init__(self, stmt, globals, num_threads):
            self.run = globals["run"]

        def timeit(self, number):
            log.append(("block", self.run.name))
            for _ in range(number):
                self.run()
            return types.SimpleNamespace(mean=1e-3)

    def provider(name):
        def run():
            log.append(("call", name))
        run.name = name
        return run

    monkeypatch.setattr(losses.tbench, "Timer", Timer)
    times = losses.time_cpu({"a": provider("a"), "b": provider("b")}, budget_s=0.005, block_s=1e-12, min_rounds=3)
    blocks = [i for i, entry in enumerate(log) if entry[0] == "block"]
    assert [log[i][1] for i in blocks] == ["a", "b"] * 5
    assert all(log[i - 1] == ("call", log[i][1]) for i in blocks)
    assert set(times) == {"a", "b"} and all(t == (1.0, 1.0, 1.0) for t in times.values())
