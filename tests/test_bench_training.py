"""The training bench: recipes interleaved by time, and the side-by-side comparison issue 14 asks for."""

from __future__ import annotations

import dataclasses

import torch

from c1p1.bench_training import TARGET_LOSS, interleave, report
from c1p1.trained import QUICK_RECIPE

TINY = dataclasses.replace(QUICK_RECIPE, name="anchor", n_layers=1, d_model=16, n_heads=2, block_size=8, batch_size=4,
                           max_steps=6, warmup_steps=2, eval_every=3, eval_batches=2)


def test_interleave_measures_each_run_at_the_anchors_time():
    data = torch.arange(400) % 11  # (400,)
    longer = dataclasses.replace(TINY, name="longer", max_steps=12)
    anchor, other = interleave([TINY, longer], data[:300], data[300:], 11, "cpu")
    assert anchor["at_anchor"] is None and [step for step, _ in anchor["curve"]] == [3, 6]
    seconds, step, val = other["at_anchor"]
    assert 0 < step <= longer.max_steps and seconds <= other["seconds"] and val > 0
    lines = report([anchor, other])
    assert "longer vs anchor: at the anchor's time" in "\n".join(lines)
    assert f"target at most {TARGET_LOSS:.2f}" in lines[-1] and "tokens/s" in lines[1]


def test_the_induction_bench_trains_from_the_recipe_not_the_cache(monkeypatch):
    from c1p1 import bench, induction

    monkeypatch.setitem(induction.RECIPE, "steps", 4)
    monkeypatch.setattr(induction, "induction_model", None)  # the bench must not go through the cache
    lines = bench.time_induction()
    assert f"4 steps of {induction.RECIPE['batch']} sequences" in lines[1] and "ms a step" in lines[1]
    assert "from step None of 4" in lines[2], "four steps cannot learn the repeated half"
    assert "best induction score (layer 1) 0." in lines[3]
