"""docs/existing_trainer.py, the example of adding DESC to a monodepth2-shaped
trainer, runs as the page shows it: source steps, then the DESC target terms."""
import importlib.util
import math
import os

import desc_ops
from desc_train.data import generate_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _example():
    spec = importlib.util.spec_from_file_location("existing_trainer", os.path.join(ROOT, "docs", "existing_trainer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_existing_trainer_example_runs(tmp_path, monkeypatch):
    generate_benchmark(str(tmp_path), {"source_train": 4, "target_train": 4}, seed=1, size=(32, 64), workers=1,
                       log=None)
    calls = []
    forward = desc_ops.DESCLoss.forward

    def counted(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        calls.append(set(out.terms))
        return out

    monkeypatch.setattr(desc_ops.DESCLoss, "forward", counted)
    history = _example().train(str(tmp_path), steps=4, warmup=2, batch_size=2, log=None)
    assert len(history) == 4 and all(math.isfinite(v) for v in history)
    assert calls == [{"consistency", "consistency@1", "consistency@2", "consistency@3", "instance_prior",
                      "smoothness", "smoothness@1", "smoothness@2", "smoothness@3"}] * 2
