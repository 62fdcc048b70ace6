import math

import pytest
import torch

from latentlm.config import TrainConfig
from latentlm.models.gpt import GPT
from latentlm.train.optim import build_optimizer, lr_at
from tests.conftest import tiny_gpt_config


def test_warmup_then_cosine_to_the_floor():
    cfg = TrainConfig(lr=1.0, min_lr_ratio=0.1, warmup_steps=10, max_steps=110, schedule="cosine")
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(110, cfg) == pytest.approx(0.1)
    lrs = [lr_at(s, cfg) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_wsd_holds_then_decays_linearly():
    cfg = TrainConfig(lr=2.0, min_lr_ratio=0.0, warmup_steps=5, max_steps=100, schedule="wsd", decay_fraction=0.2)
    assert all(lr_at(s, cfg) == 2.0 for s in range(5, 80))
    assert lr_at(89, cfg) == pytest.approx(2.0 * (1 - 10 / 20))
    assert lr_at(99, cfg) == pytest.approx(0.0)


def test_no_weight_decay_on_norms_and_tied_weights_counted_once():
    model = GPT(tiny_gpt_config())
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == model.num_params() and no_decay["weight_decay"] == 0.0
    assert any(p is model.tok_emb.weight for p in decay["params"])
    assert isinstance(opt, torch.optim.AdamW)


def test_update_equals_a_hand_written_adamw_in_float64():
    """The optimizer the trainer builds (fused kernel on CPU) against decoupled-weight-decay Adam written out."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    cfg = TrainConfig(lr=1e-2, weight_decay=0.1, beta1=0.9, beta2=0.95)
    opt = build_optimizer(model, cfg, no_decay_params=())  # a plain module: no variant spec
    ref = [(p.detach().double().clone(), p.dim() >= 2) for p in model.parameters()]
    m = [torch.zeros_like(p) for p, _ in ref]
    v = [torch.zeros_like(p) for p, _ in ref]
    for step in range(1, 6):
        loss = model(torch.randn(32, 8)).square().mean()
        loss.backward()
        for i, ((p, decays), q) in enumerate(zip(ref, model.parameters())):
            g = q.grad.double()
            p.mul_(1 - cfg.lr * (cfg.weight_decay if decays else 0.0))
            m[i] = cfg.beta1 * m[i] + (1 - cfg.beta1) * g
            v[i] = cfg.beta2 * v[i] + (1 - cfg.beta2) * g * g
            mhat, vhat = m[i] / (1 - cfg.beta1**step), v[i] / (1 - cfg.beta2**step)
            p.sub_(cfg.lr * mhat / (vhat.sqrt() + 1e-8))
        opt.step()
        opt.zero_grad(set_to_none=True)
        for (p, _), q in zip(ref, model.parameters()):
            torch.testing.assert_close(q.detach().double(), p, rtol=0, atol=1e-6)
            p.copy_(q.detach().double())  # follow the fp32 trajectory: compare one step at a time


def test_a_module_that_is_no_variant_needs_its_exemptions_named():
    """A peer model (HF, x-transformers) has no latentlm spec: build_optimizer says so, and () gives the plain rule."""
    peer = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 10))
    with pytest.raises(TypeError, match=r"Sequential is not a latentlm variant .* pass no_decay_params=\(\)"):
        build_optimizer(peer, TrainConfig())
    decay, no_decay = build_optimizer(peer, TrainConfig(), no_decay_params=()).param_groups
    assert [p.shape for p in decay["params"]] == [(10, 4), (10, 4)]  # the embedding and the linear's weight
    assert len(no_decay["params"]) == 3  # the norm's weight and bias, the linear's bias
