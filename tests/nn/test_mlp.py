import torch
import torch.nn.functional as F

from latentlm.nn.mlp import SwiGLU, gate_product


def test_gate_product_gradients_equal_autograd_of_the_split_form():
    torch.manual_seed(0)
    ab = torch.randn(3, 5, 14, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gate_product(t, 7), (ab,))
    g = torch.randn(3, 5, 7, dtype=torch.float64)
    (got,) = torch.autograd.grad(gate_product(ab, 7), ab, g)
    a, b = ab.split(7, -1)
    (ref,) = torch.autograd.grad(F.silu(a) * b, ab, g)
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=0)


def test_swiglu_forward_is_w2_silu_gate_times_up_with_and_without_grad():
    torch.manual_seed(1)
    mlp = SwiGLU(8, 6)
    x = torch.randn(2, 4, 8)
    gate, up = (x @ mlp.w13.weight.t()).split(6, -1)
    ref = (F.silu(gate) * up) @ mlp.w2.weight.t()
    torch.testing.assert_close(mlp(x), ref, atol=1e-6, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), ref, atol=1e-6, rtol=0)
