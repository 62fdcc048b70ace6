import math

import pytest
import torch

from latentlm.nn.rope import RotaryEmbedding, apply_rope


def naive_rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate each channel pair (2i, 2i+1) by angle pos * base^(-2i/hd), one 2x2 rotation at a time (float64).

    x: (B, T, H, hd)."""
    B, T, H, hd = x.shape
    out = x.double().clone()
    for b in range(B):
        for t in range(T):
            pos = float(positions[b if positions.shape[0] > 1 else 0, t])
            for i in range(hd // 2):
                theta = pos * base ** (-2 * i / hd)
                c, s = math.cos(theta), math.sin(theta)
                a, bb = x[b, t, :, 2 * i].double(), x[b, t, :, 2 * i + 1].double()
                out[b, t, :, 2 * i] = a * c - bb * s
                out[b, t, :, 2 * i + 1] = bb * c + a * s
    return out


@pytest.mark.parametrize("fractional", [False, True])
def test_rope_matches_naive_rotation(fractional):
    B, T, H, hd = 2, 7, 3, 8
    x = torch.randn(B, T, H, hd)
    if fractional:
        positions = torch.rand(B, T).cumsum(-1) * 3  # increasing, non-integer, per row
    else:
        positions = torch.stack([torch.arange(T), torch.arange(T) + 5])
    rope = RotaryEmbedding(hd, max_seq_len=32)
    got = apply_rope(x, rope(positions))
    torch.testing.assert_close(got.double(), naive_rope(x, positions), atol=2e-5, rtol=0)


def test_integer_table_equals_direct_computation():
    rope = RotaryEmbedding(16, max_seq_len=100)
    pos = torch.arange(100)[None]
    from_table = rope(pos)  # integer: from the table
    computed = rope(pos.float())  # float: computed on the fly
    torch.testing.assert_close(torch.view_as_real(from_table), torch.view_as_real(computed), atol=1e-5, rtol=0)


def test_scores_depend_only_on_relative_position():
    """<R(m) q, R(n) k> must be a function of m - n, fractional offsets included."""
    hd = 16
    rope = RotaryEmbedding(hd, max_seq_len=64)
    q, k = torch.randn(1, 1, 1, hd), torch.randn(1, 1, 1, hd)

    def dot(m, n):
        qm = apply_rope(q, rope(torch.tensor([[m]])))
        kn = apply_rope(k, rope(torch.tensor([[n]])))
        return (qm * kn).sum().item()

    assert dot(3.25, 1.0) == pytest.approx(dot(10.25, 8.0), abs=1e-4)
    assert dot(3.25, 1.0) != pytest.approx(dot(3.25, 2.0), abs=1e-3)
