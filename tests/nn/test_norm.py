import torch
import torch.nn.functional as F

from latentlm.nn.norm import RMSNorm


def test_rmsnorm_training_path_matches_rms_norm_values_and_gradients():
    torch.manual_seed(0)
    norm = RMSNorm(12, eps=1e-5).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 4, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: RMSNorm.forward(norm, a), (x, norm.weight))
    y = norm(x)
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, norm.weight), g)
    ref = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight  # the definition, autograd'd
    rx, rw = torch.autograd.grad(ref, (x, norm.weight), g)
    torch.testing.assert_close(y, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(gx, rx, atol=1e-10, rtol=0)
    torch.testing.assert_close(gw, rw, atol=1e-10, rtol=0)
    with torch.no_grad():  # the inference path (F.rms_norm) computes the same function
        torch.testing.assert_close(norm(x), F.rms_norm(x, (12,), norm.weight, 1e-5), atol=1e-12, rtol=0)
