"""StyleExtractor: persona-queried multi-head attention + masked mean pooling (GRAG §3.3.1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from personakit.config import ConfigError
from personakit.modules import StyleExtractor, StyleExtractorConfig, concat_masked
from personakit.testing import assert_config_matches

D, H = 16, 2


def _inputs(seed: int = 0, b: int = 3, tp: int = 5, tc: int = 7):
    g = torch.Generator().manual_seed(seed)
    persona = torch.randn(b, tp, D, generator=g)
    context = torch.randn(b, tc, D, generator=g)
    pmask = torch.ones(b, tp, dtype=torch.long)
    cmask = torch.ones(b, tc, dtype=torch.long)
    pmask[1, 3:] = 0  # right padding
    cmask[2, :2] = 0  # left padding
    cmask[0, 4] = 0  # a hole in the middle
    return persona, pmask, context, cmask


def _extractor(seed: int = 0, **kwargs) -> StyleExtractor:
    torch.manual_seed(seed)
    return StyleExtractor(D, num_heads=H, **kwargs).eval()


def test_output_shape_and_repr():
    se = _extractor()
    out = se(*_inputs())
    assert out.shape == (3, D)
    assert se.extra_repr() == "d_model=16, num_heads=2, dropout=0.0"
    assert "d_model=16, num_heads=2" in repr(se)


def test_padding_values_change_nothing():
    se = _extractor()
    persona, pmask, context, cmask = _inputs()
    ref = se(persona, pmask, context, cmask)
    g = torch.Generator().manual_seed(9)
    # Overwrite the existing padding with garbage, then append more padding (garbage, inf and NaN included).
    persona2 = torch.where(pmask[..., None].bool(), persona, 1e4 * torch.randn(persona.shape, generator=g))
    context2 = torch.where(cmask[..., None].bool(), context, 1e4 * torch.randn(context.shape, generator=g))
    extra_p = torch.randn(3, 4, D, generator=g) * 100
    extra_c = torch.randn(3, 6, D, generator=g) * 100
    extra_c[0, 0, 0] = float("nan")
    extra_p[1, 1, 3] = float("inf")
    persona2 = torch.cat([persona2, extra_p], dim=1)
    context2 = torch.cat([context2, extra_c], dim=1)
    pmask2 = torch.cat([pmask, torch.zeros(3, 4, dtype=pmask.dtype)], dim=1)
    cmask2 = torch.cat([cmask, torch.zeros(3, 6, dtype=cmask.dtype)], dim=1)
    out = se(persona2, pmask2, context2, cmask2)
    assert torch.isfinite(out).all()
    # Identical up to float summation order inside the (longer) matrix products.
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_matches_torch_multihead_attention():
    se = _extractor()
    mha = nn.MultiheadAttention(D, H, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([se.q_proj.weight, se.k_proj.weight, se.v_proj.weight]))
        mha.in_proj_bias.copy_(torch.cat([se.q_proj.bias, se.k_proj.bias, se.v_proj.bias]))
        mha.out_proj.weight.copy_(se.out_proj.weight)
        mha.out_proj.bias.copy_(se.out_proj.bias)
    # Non-zero biases so the check covers them.
    with torch.no_grad():
        for lin in (se.q_proj, se.k_proj, se.v_proj, se.out_proj):
            lin.bias.normal_()
        mha.in_proj_bias.copy_(torch.cat([se.q_proj.bias, se.k_proj.bias, se.v_proj.bias]))
        mha.out_proj.bias.copy_(se.out_proj.bias)
    persona, pmask, context, cmask = _inputs()
    attended, _ = mha(persona, context, context, key_padding_mask=~cmask.bool(), need_weights=False)
    # plain-Python masked mean over persona positions
    expected = torch.stack([
        sum(attended[b, t] for t in range(persona.size(1)) if pmask[b, t]) / int(pmask[b].sum())
        for b in range(persona.size(0))
    ])
    torch.testing.assert_close(se(persona, pmask, context, cmask), expected, rtol=1e-5, atol=1e-6)


def test_empty_context_and_empty_persona_rows():
    se = _extractor()
    persona, pmask, context, cmask = _inputs()
    cmask[0] = 0
    pmask[2] = 0
    out = se(persona, pmask, context, cmask)
    assert torch.isfinite(out).all()
    assert torch.equal(out[2], torch.zeros(D))  # no persona tokens -> zero style
    # No context: attention output is zero, so the style is the output bias.
    torch.testing.assert_close(out[0], se.out_proj.bias.detach())


def test_none_masks_mean_all_valid():
    se = _extractor()
    persona, _, context, _ = _inputs()
    ones_p = torch.ones(persona.shape[:2])
    ones_c = torch.ones(context.shape[:2])
    torch.testing.assert_close(se(persona, None, context, None), se(persona, ones_p, context, ones_c))


def test_dropout_only_in_training_and_gradients_flow():
    se = _extractor(dropout=0.5)
    inputs = _inputs()
    assert torch.equal(se(*inputs), se(*inputs))
    se.train()
    torch.manual_seed(1)
    a = se(*inputs)
    b = se(*inputs)
    assert not torch.allclose(a, b)
    a.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in se.parameters())


def test_null_style_extractor_is_a_second_instance():
    """S_P = SE_P(E_P, [E_H; E_RG]) and S_G = SE_G(E_P, [E_H; E_RP]) with separate parameters."""
    se_p, se_g = _extractor(0), _extractor(1)
    g = torch.Generator().manual_seed(4)
    e_p, m_p = torch.randn(2, 3, D, generator=g), torch.ones(2, 3)
    e_h, m_h = torch.randn(2, 5, D, generator=g), torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    e_rg, m_rg = torch.randn(2, 4, D, generator=g), torch.ones(2, 4)
    e_rp, m_rp = torch.randn(2, 4, D, generator=g), torch.ones(2, 4)
    s_p = se_p(e_p, m_p, *concat_masked((e_h, m_h), (e_rg, m_rg)))
    s_g = se_g(e_p, m_p, *concat_masked((e_h, m_h), (e_rp, m_rp)))
    assert s_p.shape == s_g.shape == (2, D)
    assert not torch.allclose(s_p, s_g)
    assert not any(p is q for p in se_p.parameters() for q in se_g.parameters())


def test_concat_masked():
    a, b = torch.zeros(2, 3, 4), torch.ones(2, 2, 4)
    states, mask = concat_masked((a, torch.tensor([[1, 1, 0], [1, 0, 0]])), (b, None))
    assert states.shape == (2, 5, 4) and mask.dtype == torch.bool
    assert mask.tolist() == [[True, True, False, True, True], [True, False, False, True, True]]
    assert torch.equal(states[:, 3:], b)
    with pytest.raises(ValueError, match="part 1 mask"):
        concat_masked((a, None), (b, torch.ones(2, 3)))
    with pytest.raises(ValueError, match="at least one"):
        concat_masked()


def test_reset_parameters():
    se = _extractor()
    with torch.no_grad():
        se.q_proj.bias.fill_(3.0)
        se.k_proj.weight.fill_(7.0)
    se.reset_parameters()
    assert torch.equal(se.q_proj.bias, torch.zeros(D))
    assert se.k_proj.weight.abs().max() < 7.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="must divide d_model"):
        StyleExtractor(10, num_heads=3)
    with pytest.raises(ValueError, match="dropout"):
        StyleExtractor(16, num_heads=2, dropout=1.0)
    se = _extractor()
    persona, pmask, context, cmask = _inputs()
    with pytest.raises(ValueError, match="d_model=16"):
        se(persona[..., :8], pmask, context, cmask)
    with pytest.raises(ValueError, match="masks must be"):
        se(persona, pmask[:, :2], context, cmask)


def test_config_matches_and_builds(tmp_path):
    assert_config_matches(StyleExtractorConfig)
    cfg = StyleExtractorConfig(d_model=32, num_heads=4, dropout=0.1)
    se = cfg.build()
    assert isinstance(se, StyleExtractor) and se.num_heads == 4 and se.dropout == 0.1
    assert StyleExtractorConfig.from_yaml(cfg.to_yaml()) == cfg
    with pytest.raises(ConfigError, match="must divide d_model"):
        StyleExtractorConfig.from_dict({"d_model": 10, "num_heads": 3})
    with pytest.raises(ConfigError, match="dropout"):
        StyleExtractorConfig.from_dict({"d_model": 16, "dropout": 1.5})


def _output_and_grads(persona, pmask, context, cmask):
    se = _extractor()
    with torch.no_grad():  # non-zero biases, so padded positions project to something non-zero
        for lin in (se.q_proj, se.k_proj, se.v_proj, se.out_proj):
            lin.bias.normal_(generator=torch.Generator().manual_seed(3))
    persona = persona.clone().requires_grad_(True)
    context = context.clone().requires_grad_(True)
    out = se(persona, pmask, context, cmask)
    (out * torch.linspace(-1.0, 1.0, out.numel()).view_as(out)).sum().backward()
    grads = {name: p.grad for name, p in se.named_parameters()}
    return out.detach(), grads, persona.grad, context.grad


@pytest.mark.parametrize("fill", [float("nan"), float("inf"), -float("inf"), 1e30])
def test_padding_values_change_no_gradient(fill):
    persona, pmask, context, cmask = _inputs()
    cmask[1, :] = 0  # a row with an empty context too
    ppad, cpad = ~pmask.bool()[..., None], ~cmask.bool()[..., None]
    ref = _output_and_grads(persona.masked_fill(ppad, 0.0), pmask, context.masked_fill(cpad, 0.0), cmask)
    got = _output_and_grads(persona.masked_fill(ppad, fill), pmask, context.masked_fill(cpad, fill), cmask)
    assert torch.equal(got[0], ref[0])
    for name, grad in got[1].items():
        assert torch.isfinite(grad).all(), name
        assert torch.equal(grad, ref[1][name]), name
    for grad, pad in ((got[2], ppad), (got[3], cpad)):  # no gradient reaches a padded input
        assert torch.isfinite(grad).all()
        assert torch.equal(grad.masked_select(pad), torch.zeros(int(pad.sum()) * D))


def test_finite_padding_output_is_bit_identical_to_zero_padding():
    persona, pmask, context, cmask = _inputs()
    g = torch.Generator().manual_seed(11)
    ppad, cpad = ~pmask.bool()[..., None], ~cmask.bool()[..., None]
    ref = _output_and_grads(persona.masked_fill(ppad, 0.0), pmask, context.masked_fill(cpad, 0.0), cmask)
    got = _output_and_grads(torch.where(ppad, 1e3 * torch.randn(persona.shape, generator=g), persona), pmask,
                            torch.where(cpad, 1e3 * torch.randn(context.shape, generator=g), context), cmask)
    assert torch.equal(got[0], ref[0])
    assert all(torch.equal(got[1][name], ref[1][name]) for name in ref[1])
