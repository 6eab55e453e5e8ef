"""What a learner can pass a check by mistake, and the one clear message each gets.

Every message must name the problem (keywords), and show no traceback and no path inside torch.
The learner's classes here are LayerNorm- and Attention-style classes built on c1p1.parts.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import C1P1_tests as tests
from c1p1.checks import core
from c1p1.checks.core import CheckFailed
from c1p1.config import Config
from c1p1.parts import Attention, LayerNorm

TORCH_DIR = str(__import__("pathlib").Path(torch.__file__).resolve().parent)


def clear(message: str) -> str:
    """One readable message: no traceback, no file inside torch or site-packages."""
    assert "Traceback" not in message, message
    assert 'File "' not in message, message
    assert TORCH_DIR not in message and "site-packages" not in message, message
    return message


def rejected(check, thing, *keywords: str) -> str:
    with pytest.raises(CheckFailed) as info:
        check(thing)
    message = clear(str(info.value))
    for word in keywords:
        assert word.lower() in message.lower(), f"expected {word!r} in the message:\n{message}"
    return message


def layer_norm(forward):
    """A LayerNorm whose forward is `forward(self, x, out)`, where `out` is the correct output."""

    def method(self, x):
        return forward(self, x, LayerNorm.forward(self, x))

    return type("LayerNorm", (LayerNorm,), {"forward": method})


def needs(name: str):
    if not hasattr(tests, name):
        pytest.skip(f"{name} is not written yet")
    return getattr(tests, name)


# ----------------------------------------------------------------------------- what is passed


def test_an_instance_instead_of_the_class(reference):
    message = rejected(tests.test_layer_norm, LayerNorm(Config()), "instance", "class itself")
    assert "tests.test_layer_norm(LayerNorm)" in message


def test_a_function_instead_of_a_class(reference):
    def LayerNormFunction(x):  # a learner's name
        return x

    rejected(tests.test_layer_norm, LayerNormFunction, "function", "class LayerNorm", "nn.Module")


def test_a_class_that_is_not_a_module(reference):
    class LayerNormPlain:
        pass

    rejected(tests.test_layer_norm, LayerNormPlain, "not an nn.Module", "class LayerNorm(nn.Module)")


def test_a_class_instead_of_a_function_in_the_engine():
    with pytest.raises(CheckFailed) as info:
        core.expect_function(LayerNorm, "get_log_probs", "test_get_log_probs")
    assert "the class LayerNorm" in clear(str(info.value)) and "function get_log_probs" in str(info.value)


def test_get_log_probs_given_a_class(reference):
    check = needs("test_get_log_probs")
    rejected(check, LayerNorm, "class", "function get_log_probs")


def test_the_class_where_the_method_is_wanted_is_accepted_or_explained(reference, capsys):
    """Passing Attention where Attention.apply_causal_mask is wanted either works or gets a sentence."""
    check = needs("test_causal_mask")
    try:
        check(Attention)
    except CheckFailed as failure:
        assert "apply_causal_mask" in clear(str(failure))
    else:
        assert "test_causal_mask passed" in capsys.readouterr().out


def test_an_instance_where_the_method_is_wanted_is_accepted_or_explained(reference, capsys):
    check = needs("test_causal_mask")
    try:
        check(Attention(Config()))
    except CheckFailed as failure:
        assert "apply_causal_mask" in clear(str(failure))
    else:
        assert "test_causal_mask passed" in capsys.readouterr().out


# ----------------------------------------------------------------------------- building it


def test_a_constructor_with_the_wrong_signature(reference):
    class LayerNormByHand(LayerNorm):
        def __init__(self, d_model, eps):
            super().__init__(Config(d_model=d_model, layer_norm_eps=eps))

    rejected(tests.test_layer_norm, LayerNormByHand, "cannot be called", "(d_model, eps)",
             "def __init__(self, cfg: Config)")


def test_an_error_in_init_shows_the_learners_line(reference):
    class LayerNormBadInit(LayerNorm):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.w = nn.Parameter(torch.ones(cfg.d_model, cfg.d_modle))

    message = rejected(tests.test_layer_norm, LayerNormBadInit, "__init__ raised AttributeError", "d_modle")
    assert "self.w = nn.Parameter(torch.ones(cfg.d_model, cfg.d_modle))" in message


def test_misnamed_parameters_are_listed_with_their_shapes(reference):
    class LayerNormTorchNames(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(cfg.d_model))
            self.bias = nn.Parameter(torch.zeros(cfg.d_model))

        def forward(self, x):
            return x

    message = rejected(tests.test_layer_norm, LayerNormTorchNames, "do not match", "missing", "unexpected")
    assert "w (768,)" in message and "b (768,)" in message  # what was expected, with its shape
    assert "weight (768,)" in message and "bias (768,)" in message  # what was found


def test_a_missing_parameter_is_listed(reference):
    class LayerNormNoBias(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.w = nn.Parameter(torch.ones(cfg.d_model))

        def forward(self, x):
            return x

    message = rejected(tests.test_layer_norm, LayerNormNoBias, "missing:    b (768,)")
    assert "unexpected" not in message


def test_attention_with_misnamed_and_transposed_weights(reference):
    check = needs("test_attention")

    class AttentionOwnNames(Attention):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.W_q = self.W_Q
            del self.W_Q
            self.W_O = nn.Parameter(torch.empty(cfg.n_heads, cfg.d_model, cfg.d_head))

    message = rejected(check, AttentionOwnNames, "missing", "W_Q (12, 768, 64)", "unexpected", "W_q (12, 768, 64)")
    assert "W_O" in message and "(12, 64, 768)" in message


# ----------------------------------------------------------------------------- what forward returns


def test_a_wrong_output_shape_names_the_dimensions(reference):
    message = rejected(tests.test_layer_norm, layer_norm(lambda s, x, out: out[..., :700]), "shape")
    assert "(batch=1, posn=35, d_model=700)" in message  # what it gave
    assert "(batch=1, posn=35, d_model=768)" in message  # what it should give


def test_a_dropped_dimension(reference):
    message = rejected(tests.test_layer_norm, layer_norm(lambda s, x, out: out.mean(-1)), "shape")
    assert "(batch=1, posn=35, d_model=768)" in message


def test_a_tuple_is_returned(reference):
    rejected(tests.test_layer_norm, layer_norm(lambda s, x, out: (out, x.mean(-1))), "tuple of 2 items",
             "one tensor")


def test_nothing_is_returned(reference):
    rejected(tests.test_layer_norm, layer_norm(lambda s, x, out: None), "NoneType", "return")


def with_nan(s, x, out):
    out = out.clone()
    out[0, 3, 5] = float("nan")
    out[0, 9, 1] = float("inf")
    return out


def test_nan_or_inf_says_where(reference):
    message = rejected(tests.test_layer_norm, layer_norm(with_nan), "2 NaN or inf")
    assert "batch 0, position 3, feature 5" in message


def test_the_wrong_dtype(reference):
    rejected(tests.test_layer_norm, layer_norm(lambda s, x, out: out.double()), "dtype torch.float64",
             "torch.float32", ".to(x.dtype)")


def test_the_wrong_device(reference):
    """Simulated with the meta device: the output does not live where the reference does."""
    rejected(tests.test_layer_norm, layer_norm(lambda s, x, out: out.to("meta")), "is on meta",
             f"reference is on {reference.device.type}", "device=x.device")


def test_the_input_modified_in_place(reference):
    def subtract_in_place(self, x):
        x -= x.mean(-1, keepdim=True)
        return LayerNorm.forward(self, x)

    rejected(tests.test_layer_norm, type("LayerNorm", (LayerNorm,), {"forward": subtract_in_place}),
             "changed its input tensor in place", "x = x - ...")


def test_a_parameter_written_in_place(reference):
    def scale_in_place(self, x):
        self.w *= 1.0  # even a write that changes no value is a write into the weights
        return LayerNorm.forward(self, x)

    rejected(tests.test_layer_norm, type("LayerNorm", (LayerNorm,), {"forward": scale_in_place}),
             "wrote into its parameter w", "x = x + y")


def test_a_write_into_the_lent_reference_weights_is_undone(reference):
    """DemoTransformer's check lends the module GPT-2's own tensors; `residual +=` on W_pos's view reached them."""
    from c1p1.parts import DemoTransformer

    def forward(self, tokens):
        residual = self.pos_embed(tokens)  # for one sequence: a view of W_pos
        residual += self.embed(tokens)
        for block in self.blocks:
            residual = block(residual)
        return self.unembed(self.ln_final(residual))

    w_pos = reference.params()["pos_embed.W_pos"].clone()  # (n_ctx, d_model)
    rejected(tests.test_demo_transformer, type("DemoTransformer", (DemoTransformer,), {"forward": forward}),
             "wrote into its parameter pos_embed.W_pos", "view of the parameter", "reloaded")
    assert torch.equal(reference.params()["pos_embed.W_pos"], w_pos)
    tests.test_demo_transformer(DemoTransformer)  # a correct model still passes afterwards


def test_an_exception_in_forward_shows_the_learners_line(reference):
    def forward(self, x):
        scale = self.w.unsqueeze(0) @ x  # a learner's mistake: matrix product of mismatched shapes
        return x * scale

    message = rejected(tests.test_layer_norm, type("LayerNorm", (LayerNorm,), {"forward": forward}),
                       "LayerNorm.forward raised RuntimeError")
    assert "scale = self.w.unsqueeze(0) @ x" in message  # the learner's own line, nothing from torch
    assert "test_bad_input.py" in message


def test_a_not_implemented_error_is_not_done(reference):
    def forward(self, x):
        raise NotImplementedError()

    with pytest.raises(core.NotDoneYet) as info:
        tests.test_layer_norm(type("LayerNorm", (LayerNorm,), {"forward": forward}))
    assert "YOUR CODE HERE" in clear(str(info.value))
