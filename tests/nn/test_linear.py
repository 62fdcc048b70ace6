import pytest
import torch
import torch.nn.functional as F

from latentlm.nn.linear import SMALL_ROWS, Linear


@pytest.mark.parametrize("rows", [1, 2, 7, SMALL_ROWS, SMALL_ROWS + 1, 300])
def test_linear_equals_f_linear_for_every_row_count(rows):
    layer = Linear(24, 40)
    x = torch.randn(rows, 1, 24, requires_grad=True)
    y = layer(x)
    ref = F.linear(x.double(), layer.weight.double())
    torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=0)
    assert y.is_contiguous()
    y.square().sum().backward()
    gx, gw = x.grad.clone(), layer.weight.grad.clone()
    x.grad = None
    layer.weight.grad = None
    F.linear(x, layer.weight).square().sum().backward()
    torch.testing.assert_close(gx, x.grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(gw, layer.weight.grad, atol=1e-4, rtol=1e-5)
