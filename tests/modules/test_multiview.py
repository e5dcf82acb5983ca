"""MultiViewProjector: V learned projections of one representation."""

from __future__ import annotations

import pytest
import torch

from personakit.modules import MultiViewProjector, MultiViewProjectorConfig
from personakit.testing import assert_config_matches


@pytest.mark.parametrize(("views", "dim", "out_dim"), [(1, 8, None), (3, 8, 4), (4, 6, 10)])
def test_shapes(views, dim, out_dim):
    proj = MultiViewProjector(views, dim, out_dim)
    out = proj(torch.randn(5, dim))
    assert out.shape == (5, views, out_dim or dim)


def test_each_view_is_its_own_affine_map():
    torch.manual_seed(0)
    proj = MultiViewProjector(3, 6, 4)
    x = torch.randn(2, 6)
    out = proj(x)
    for v in range(3):
        assert torch.allclose(out[:, v], x @ proj.weight[v].T + proj.bias[v], atol=1e-6)
    assert not torch.allclose(out[:, 0], out[:, 1])


def test_square_views_start_near_identity():
    torch.manual_seed(0)
    proj = MultiViewProjector(2, 8, init_noise=0.0)
    x = torch.randn(3, 8)
    assert torch.allclose(proj(x), x.unsqueeze(1).expand(3, 2, 8))


def test_bad_input():
    with pytest.raises(ValueError, match="num_views"):
        MultiViewProjector(0, 4)
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        MultiViewProjector(2, 4)(torch.randn(3, 5))


def test_config():
    assert_config_matches(MultiViewProjectorConfig)
    assert MultiViewProjectorConfig(num_views=3, dim=4).build()(torch.randn(1, 4)).shape == (1, 3, 4)
