"""The static-shape decode step (models/decoder.py StaticDecode, nn/kv_cache.py KVCache.write) against full recompute.

Teacher-forced: a fixed continuation is fed one token at a time through the static step, and every step's logits
must equal the full forward's logits at that position (the independent reference: no cache at all). Rows are
left-padded to different lengths, so the key mask and the per-row RoPE positions are exercised too.
"""

import pytest
import torch

from latentlm.models.decoder import StaticDecode
from latentlm.models.free_transformer import Config as FTConfig
from latentlm.models.free_transformer import Model as FT
from latentlm.models.free_transformer.model import _ZPlan
from latentlm.models.gpt import GPT
from tests.conftest import tiny_gpt_config


def padded_batch(vocab: int, lengths: list[int], total: int):
    """Left-padded prompts of the given lengths, then a shared continuation up to `total` columns."""
    T = max(lengths)
    ids = torch.randint(1, vocab, (len(lengths), total))
    mask = torch.ones(len(lengths), total, dtype=torch.long)
    for r, n in enumerate(lengths):
        ids[r, : T - n] = 0
        mask[r, : T - n] = 0
    return ids, mask, T


def static_logits(model, ids, mask, T, **latent):
    """Logits after the prompt and after each forced token, through StaticDecode: (B, total - T, V).
    `latent`: the variant's per-call decoding state (the Free Transformer's Z plan)."""
    shapes, buffers = set(), (None, None)
    step = model.static_step

    def spy(tok, pos, slot, key_mask, cache, **kw):
        shapes.add((tok.shape, pos.shape, slot.shape, key_mask.shape, cache.k.shape))
        return step(tok, pos, slot, key_mask, cache, **kw)

    with torch.inference_mode():
        dec = StaticDecode(model, ids[:, :T], mask[:, :T], ids.shape[1], **latent)
        dec.step = spy
        buffers = (dec.cache.k.data_ptr(), dec.cache.v.data_ptr())
        out = [dec(None)] + [dec(ids[:, t]) for t in range(T, ids.shape[1] - 1)]
        assert (dec.cache.k.data_ptr(), dec.cache.v.data_ptr()) == buffers  # written in place, never reallocated
    assert len(shapes) == 1  # every step had the same shapes: traceable once, capturable as one graph
    return torch.stack(out, 1)


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_static_decode_equals_full_recompute_gpt(kv_heads):
    torch.manual_seed(0)
    model = GPT(tiny_gpt_config(n_kv_heads=kv_heads, vocab_size=97)).eval()
    ids, mask, T = padded_batch(97, [6, 3, 5], 20)
    got = static_logits(model, ids, mask, T)
    with torch.no_grad():
        full = model(ids[:, :-1], attention_mask=mask[:, :-1]).logits[:, T - 1 :]
    torch.testing.assert_close(got, full, atol=2e-5, rtol=0)
    # greedy generation (which runs this step) equals greedy full recompute, row by row
    prompt = torch.randint(0, 97, (2, 5))
    out = model.generate(prompt, 12)
    ref = prompt
    for _ in range(12):
        with torch.no_grad():
            ref = torch.cat([ref, model(ref).logits[:, -1:].argmax(-1)], 1)
    assert torch.equal(out, ref)


def test_static_decode_equals_full_recompute_free_transformer():
    torch.manual_seed(1)
    cfg = FTConfig(vocab_size=64, d_model=32, n_layers=4, n_heads=4, max_seq_len=64, latent_bits=5)
    model = FT(cfg).eval()
    with torch.no_grad():
        model.post_sampler.normal_()  # Z visibly changes the output
    ids, mask, T = padded_batch(64, [5, 2], 16)
    codes = model.prior_codes(ids.shape)
    plan = _ZPlan(model, None, None, codes)  # the codes generate() would draw, fixed for the recompute
    got = static_logits(model, ids, mask, T, plan=plan)
    with torch.no_grad():
        full = model(ids[:, :-1], attention_mask=mask[:, :-1], z_codes=codes[:, :-1]).logits[:, T - 1 :]
    torch.testing.assert_close(got, full, atol=2e-5, rtol=0)


def test_static_decode_overflow_is_a_clear_error():
    model = GPT(tiny_gpt_config()).eval()
    with torch.inference_mode():
        dec = StaticDecode(model, torch.randint(0, 64, (1, 3)), None, 4)
        dec(None)
        dec(torch.tensor([1]))
        with pytest.raises(ValueError, match=r"KV cache overflow.*max_len=4"):
            dec(torch.tensor([2]))


@pytest.mark.slow
def test_compiled_static_step_matches_eager():
    torch.manual_seed(2)
    model = GPT(tiny_gpt_config(vocab_size=97)).eval()
    ids, mask, T = padded_batch(97, [4, 6], 14)
    eager = static_logits(model, ids, mask, T)
    model.compile_decode = True
    with torch.inference_mode():
        dec = StaticDecode(model, ids[:, :T], mask[:, :T], ids.shape[1])
        got = torch.stack([dec(None)] + [dec(ids[:, t]) for t in range(T, ids.shape[1] - 1)], 1)
    torch.testing.assert_close(got, eager, atol=1e-5, rtol=0)
