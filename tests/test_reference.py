"""The reference loader: quick offline decisions, a faithful stand-in, the checkpoint path, TransformerLens names."""

from __future__ import annotations

import time

import pytest
import torch

from c1p1 import reference as ref_module
from c1p1.reference import REFERENCE_SENTENCE


def test_reference_sentence_is_35_tokens_with_bos_first(reference):
    tokens = reference.to_tokens(REFERENCE_SENTENCE)
    assert tuple(tokens.shape) == (1, 35)
    assert int(tokens[0, 0]) == reference.tokenizer.bos_token_id == 50256


def test_tokenizer_is_gpt2s_bpe(reference):
    assert len(reference.tokenizer) == 50257
    assert reference.tokenizer(" the")["input_ids"][-1] == 262  # GPT-2's id for " the"


def test_stand_in_randomises_biases_and_layernorm_weights(reference):
    if reference.is_real:
        pytest.skip("real GPT-2 loaded")
    p = reference.params()
    for name in ["blocks.0.ln1.w", "blocks.0.ln1.b", "blocks.3.attn.b_Q", "blocks.3.attn.b_O", "blocks.11.mlp.b_in", "ln_final.w"]:
        value = p[name]
        assert not torch.all(value == value.flatten()[0]), f"{name} is constant"
    assert p["blocks.0.ln1.w"].std() > 0.1 and p["blocks.0.attn.b_V"].std() > 0.05


def test_stand_in_is_gpt2_small_shaped(reference):
    shapes = {k: tuple(v.shape) for k, v in reference.params().items()}
    assert shapes["embed.W_E"] == (50257, 768) and shapes["pos_embed.W_pos"] == (1024, 768)
    assert shapes["blocks.11.attn.W_Q"] == (12, 768, 64) and shapes["blocks.11.attn.W_O"] == (12, 64, 768)
    assert shapes["blocks.0.mlp.W_in"] == (768, 3072) and shapes["unembed.W_U"] == (768, 50257)
    assert reference.model.cfg.n_layers == 12


def test_stand_in_is_seeded():
    a, b = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    ref_module.randomise_(a, seed=5)
    ref_module.randomise_(b, seed=5)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_stand_in_cache_gives_the_same_weights_and_survives_damage(tmp_path, monkeypatch):
    monkeypatch.setenv(ref_module.CACHE_ENV, str(tmp_path))
    path = ref_module.stand_in_cache_path()
    assert path.parent == tmp_path and not path.exists()
    fresh = ref_module.build_stand_in()  # draws the weights and writes the file
    assert path.is_file() and not list(tmp_path.glob("*.tmp"))
    cached = ref_module.build_stand_in()  # memory-maps the file
    assert cached.lm_head.weight is cached.transformer.wte.weight
    for (name, a), (_, b) in zip(fresh.state_dict().items(), cached.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    with torch.no_grad():
        cached.transformer.h[0].attn.c_attn.bias.zero_()  # a learner's in-place edit must not reach the file
    again = ref_module.build_stand_in()
    assert torch.equal(again.transformer.h[0].attn.c_attn.bias, fresh.transformer.h[0].attn.c_attn.bias)
    path.write_bytes(b"half a file")  # e.g. a disk that filled up: rebuilt, not trusted
    rebuilt = ref_module.build_stand_in()
    assert torch.equal(rebuilt.transformer.h[11].mlp.c_proj.weight, fresh.transformer.h[11].mlp.c_proj.weight)
    assert path.stat().st_size > 100_000_000


def test_stand_in_without_a_writable_cache_still_loads(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(ref_module.CACHE_ENV, str(blocker / "cache"))
    model = ref_module.build_stand_in()
    assert model.transformer.wte.weight.shape == (50257, 768)
    assert not (blocker / "cache").exists()


def test_offline_decision_is_immediate(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(ref_module.CHECKPOINT_ENV, raising=False)
    monkeypatch.delenv(ref_module.CHOICE_ENV, raising=False)
    monkeypatch.setattr(ref_module, "hub_cached", lambda: False)
    start = time.monotonic()
    kind, reason = ref_module.decide()
    assert kind == "stand-in" and "HF_HUB_OFFLINE" in reason
    assert time.monotonic() - start < 0.5


def test_a_hanging_network_costs_at_most_the_probe(monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(10)

    monkeypatch.setattr(ref_module.socket, "create_connection", hang)
    start = time.monotonic()
    assert ref_module.hub_reachable(seconds=1.0) is False
    assert time.monotonic() - start < 2.0


def test_unreachable_hub_falls_back_to_the_stand_in(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", ref_module.CHECKPOINT_ENV, ref_module.CHOICE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(ref_module, "hub_cached", lambda: False)
    monkeypatch.setattr(ref_module, "hub_reachable", lambda seconds=2.0: False)
    kind, reason = ref_module.decide()
    assert kind == "stand-in" and "did not answer" in reason
    monkeypatch.setenv(ref_module.CHOICE_ENV, "gpt2")
    with pytest.raises(RuntimeError, match="real GPT-2"):
        ref_module.decide()


def test_a_failed_download_falls_back_to_the_stand_in_and_says_why(monkeypatch, capsys):
    from transformers import GPT2LMHeadModel

    def broken(*args, **kwargs):
        raise OSError("Connection reset by peer\nmore detail nobody needs")

    monkeypatch.delenv(ref_module.CHOICE_ENV, raising=False)
    monkeypatch.setattr(ref_module, "_LOADED", {})
    monkeypatch.setattr(ref_module, "decide", lambda: ("gpt2", "download"))
    monkeypatch.setattr(GPT2LMHeadModel, "from_pretrained", broken)
    torch.manual_seed(0)
    loaded = ref_module.load_reference()
    drawn = torch.rand(3)  # (3,)
    torch.manual_seed(0)
    assert torch.equal(drawn, torch.rand(3)), "building the reference moved the learner's random stream"
    assert loaded.kind == "stand-in" and not loaded.is_real
    line = capsys.readouterr().out
    assert "GPT-2 could not be loaded from the Hugging Face hub: OSError: Connection reset by peer" in line
    assert "more detail" not in line and "meaningless" in line
    monkeypatch.setattr(ref_module, "_LOADED", {})
    monkeypatch.setenv(ref_module.CHOICE_ENV, "gpt2")  # insisting on GPT-2: the error is not hidden
    with pytest.raises(OSError, match="Connection reset"):
        ref_module.load_reference()


def test_local_checkpoint_path_loads_through_the_bridge(tmp_path, monkeypatch):
    """The real loading path, without network: save a small GPT-2 and load it as a classroom would."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=4, activation_function="gelu_new")
    torch.manual_seed(0)
    saved = GPT2LMHeadModel(config).eval()
    ref_module.randomise_(saved, seed=7)
    saved.save_pretrained(tmp_path)
    monkeypatch.setenv(ref_module.CHECKPOINT_ENV, str(tmp_path))
    monkeypatch.delenv(ref_module.CHOICE_ENV, raising=False)
    kind, detail = ref_module.decide()
    assert (kind, detail) == ("checkpoint", str(tmp_path))
    hf_model, source = ref_module.load_hf_model(kind, detail)
    assert "local checkpoint" in source
    bridge = ref_module.wrap(hf_model, ref_module.build_tokenizer(), torch.device("cpu"))
    tokens = bridge.to_tokens("Hello there, world")
    with torch.no_grad():
        expected = saved(tokens).logits
        got = bridge(tokens)
    assert torch.allclose(got, expected, atol=1e-4)
    params = bridge.get_params()
    assert tuple(params["blocks.1.attn.W_Q"].shape) == (4, 32, 8)
    assert torch.equal(params["blocks.0.ln1.w"], saved.transformer.h[0].ln_1.weight)


def test_missing_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        ref_module.load_hf_model("checkpoint", str(tmp_path))


def test_mps_only_with_a_warning(monkeypatch):
    monkeypatch.setenv(ref_module.DEVICE_ENV, "mps")
    with pytest.warns(UserWarning, match="MPS"):
        assert ref_module.pick_device().type == "mps"
    monkeypatch.delenv(ref_module.DEVICE_ENV)
    assert ref_module.pick_device().type in {"cpu", "cuda"}


def test_describe_is_honest_about_the_stand_in(reference):
    text = reference.describe()
    if reference.is_real:
        assert "real weights" in text or "checkpoint" in text
    else:
        assert "stand-in" in text and "meaningless" in text
