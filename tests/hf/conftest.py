"""A run directory from a freshly built model, without training (for export and harness tests)."""

import pytest
import torch

from latentlm.config import RunConfig, build
from latentlm.data.tokenizer import char_tokenizer
from latentlm.models import VARIANTS
from latentlm.train.checkpoint import save_checkpoint
from latentlm.train.optim import build_optimizer


def make_run(run_dir, variant: str = "gpt", **model_kw):
    tok = char_tokenizer()
    fields = dict(variant=variant, vocab_size=tok.vocab_size, d_model=32, n_layers=4, n_heads=4, max_seq_len=48)
    fields.update(model_kw)
    cfg = build(RunConfig, {"model": fields, "data": {"tokenizer": "chars", "seq_len": 32}})
    torch.manual_seed(0)
    model = VARIANTS[cfg.model.variant].model(cfg.model)
    for name, p in model.named_parameters():  # decisive scores, so forks and latents matter
        if "score.weight" in name or "post_sampler" in name:
            torch.nn.init.normal_(p, 0, 1.0)
    save_checkpoint(run_dir, 0, model, build_optimizer(model, cfg.train), {"step": 0}, cfg, tok, keep=1)
    return model.eval(), tok


@pytest.fixture
def run_factory(tmp_path):
    return lambda name, variant="gpt", **kw: (tmp_path / name, *make_run(tmp_path / name, variant, **kw))
