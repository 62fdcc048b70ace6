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
