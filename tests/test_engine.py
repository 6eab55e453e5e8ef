"""The check engine itself: the CPU preflight that keeps learner code from a GPU's device-side asserts.

There is no GPU here, so the preflight is forced on (``preflight_needed`` says yes for the CPU): the
learner's code then runs twice on the CPU, first in the twin the engine builds for the preflight,
then in the module it judges. That is enough to check the order (the preflight first, the judged
call only when the preflight ran cleanly) and that every message is the one the CPU-only run gives.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import C1P1_tests as tests
from c1p1.checks import learner
from c1p1.checks.core import CheckFailed
from c1p1.parts import Embed, LayerNorm, MultiHeadAttention, PosEmbed, get_log_probs, per_head_to_linear

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def preflight(monkeypatch):
    """Force the preflight on, and record what runs: ("preflight",) then each forward's module id."""
    events: list[tuple] = []
    monkeypatch.setattr(learner, "preflight_needed", lambda devices: True)
    original = learner._preflight

    def recorded(*args, **kwargs):
        events.append(("preflight",))
        return original(*args, **kwargs)

    monkeypatch.setattr(learner, "_preflight", recorded)
    return events


def recording_embed(events: list[tuple], body):
    def forward(self, tokens):
        events.append(("forward", id(self)))
        return body(self, tokens)

    return type("Embed", (Embed,), {"forward": forward})


def message(check, thing) -> str:
    with pytest.raises(CheckFailed) as info:
        check(thing)
    return str(info.value)


def test_the_preflight_is_needed_only_off_the_cpu():
    assert not learner.preflight_needed({torch.device("cpu")})
    assert not learner.preflight_needed({torch.device("meta"), torch.device("cpu")})
    assert learner.preflight_needed({torch.device("cuda", 0), torch.device("cpu")})


def test_each_judged_call_follows_a_clean_preflight_in_a_twin(reference, preflight, capsys):
    tests.test_embed(recording_embed(preflight, lambda s, t: s.W_E[t]))
    assert "test_embed passed" in capsys.readouterr().out
    assert len(preflight) == 9  # three cases: preflight, the twin's forward, the judged module's forward
    for i in range(0, 9, 3):
        (first,), (_, twin), (_, judged) = preflight[i : i + 3]
        assert first == "preflight" and twin != judged


def test_an_index_error_stops_in_the_preflight_with_the_cpu_message(reference, preflight):
    wrong = recording_embed(preflight, lambda s, t: s.W_E[t + 1])
    forced = message(tests.test_embed, wrong)
    assert len(preflight) == 2 and preflight[0] == ("preflight",)  # the judged module never ran
    assert "raised IndexError" in forced and "without adding 1 to the ids" in forced


def test_an_index_error_gets_the_same_message_either_way(reference, monkeypatch):
    def by_token(self, tokens):
        return self.W_pos[tokens]  # token ids up to 50256 index 1024 rows

    wrong = type("PosEmbed", (PosEmbed,), {"forward": by_token})
    plain = message(tests.test_pos_embed, wrong)
    monkeypatch.setattr(learner, "preflight_needed", lambda devices: True)
    assert message(tests.test_pos_embed, wrong) == plain


def layer_norm(forward):
    return type("LayerNorm", (LayerNorm,), {"forward": forward})


def mha(forward):
    return type("MultiHeadAttention", (MultiHeadAttention,), {"forward": forward})


def _write_w(self, x):
    self.w *= 1.0
    return LayerNorm.forward(self, x)


def _subtract_in_place(self, x):
    x -= x.mean(-1, keepdim=True)
    return LayerNorm.forward(self, x)


def _mha_write(self, x):
    self.out_proj.bias.add_(0.0)
    return MultiHeadAttention.forward(self, x)


def _gather_next(logits, tokens):
    lp = logits.log_softmax(-1)  # (batch, posn, d_vocab)
    return lp[:, :-1].gather(-1, (tokens[:, 1:] + lp.shape[-1])[..., None])[..., 0]  # every id out of range


def _mask_in_place(self, attn_scores):
    q, k = attn_scores.shape[-2:]
    future = torch.ones(q, k, dtype=torch.bool, device=attn_scores.device).triu(1)  # (query_pos, key_pos)
    return attn_scores.masked_fill_(future, float("-inf"))


MISTAKES = {
    "a write into the weights": (lambda: tests.test_layer_norm, lambda: layer_norm(_write_w)),
    "an in-place input": (lambda: tests.test_layer_norm, lambda: layer_norm(_subtract_in_place)),
    "a tuple": (lambda: tests.test_layer_norm, lambda: layer_norm(lambda s, x: (LayerNorm.forward(s, x), x))),
    "a MultiHeadAttention writing into its weights": (lambda: tests.test_multihead_attention, lambda: mha(_mha_write)),
    "a gather out of range": (lambda: tests.test_get_log_probs, lambda: _gather_next),
    "an in-place mask": (lambda: tests.test_causal_mask, lambda: _mask_in_place),
    "an error in a conversion": (lambda: tests.test_per_head_to_linear, lambda: lambda W, b, kind: W[99]),
    "a transposed embedding": (lambda: tests.test_embed, lambda: recording_embed([], lambda s, t: F.embedding(t, s.W_E.T))),
}


@pytest.mark.parametrize("name", MISTAKES)
def test_every_message_is_the_cpu_message(name, reference, monkeypatch):
    check, thing = (make() for make in MISTAKES[name])
    plain = message(check, thing)
    monkeypatch.setattr(learner, "preflight_needed", lambda devices: True)
    assert message(check, thing) == plain


def test_an_error_that_only_mixes_devices_in_the_preflight_is_not_the_learners(reference, preflight, capsys):
    """A function that reads a tensor still on the GPU fails on the CPU copies: the judged run decides."""
    calls = []

    def log_probs(logits, tokens):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Expected all tensors to be on the same device, but found at least two devices")
        return get_log_probs(logits, tokens)

    tests.test_get_log_probs(log_probs)
    assert "test_get_log_probs passed" in capsys.readouterr().out


def test_a_tensor_made_on_the_wrong_device_gets_the_device_advice(reference):
    def forward(self, x):
        raise RuntimeError("Expected all tensors to be on the same device, but found at least two devices, "
                           "cuda:0 and cpu!")

    text = message(tests.test_layer_norm, layer_norm(forward))
    assert "raised RuntimeError: Expected all tensors to be on the same device" in text
    assert "Likely cause: a tensor created inside forward without device=" in text


def test_a_method_bound_to_a_module_is_copied_to_the_cpu():
    host = LayerNorm.__new__(LayerNorm)
    torch.nn.Module.__init__(host)
    host.w = torch.nn.Parameter(torch.ones(3))
    twin = learner.on_cpu(host.forward)
    assert twin.__self__ is not host and twin.__func__ is LayerNorm.forward
    assert learner.on_cpu(per_head_to_linear) is per_head_to_linear


def test_no_check_names_a_device():
    """Everything a check builds goes to the reference's device; the preflight's CPU is named once."""
    named = []
    for path in sorted((ROOT / "c1p1" / "checks").glob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"""["'](cpu|cuda)["']|\.(cpu|cuda)\(\)""", line):
                named.append(f"{path.name}:{number}: {line.strip()}")
    assert named == ['learner.py:38: PREFLIGHT = torch.device("cpu")']


def test_the_preflight_leaves_the_random_stream_alone(reference, monkeypatch):
    """Dropout in the judged call draws the same numbers with or without the preflight (the message quotes them)."""

    def dropout_on_output(self, x):
        return self.dropout(MultiHeadAttention.forward(self, x))

    plain = message(tests.test_multihead_attention, mha(dropout_on_output))
    monkeypatch.setattr(learner, "preflight_needed", lambda devices: True)
    assert message(tests.test_multihead_attention, mha(dropout_on_output)) == plain
