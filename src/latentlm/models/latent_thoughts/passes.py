"""Sequential latent passes over a pretrained Llama-family LM, batched with a per-row frontier.

A latent at position p is built from the model's outputs at p-1, so a row with k latents needs k+1 passes. Rows
advance independently: pass j runs, for every row, the segment from its (j-1)-th latent up to just before its j-th
(rows packed together, no padding). Passes per batch = max latents in any row + 1, not one
per distinct latent position of the batch (the union, as in the official Coconut / LT-Tuning code).

The K/V of all passes live in one preallocated buffer per layer that grows in place (`GrowingKV`), each row's real
tokens contiguous at its own length pointer; attention over it is an autograd function whose inputs include every
earlier pass's K/V block, so gradients flow through the whole multi-pass computation (full BPTT) without the cache
ever being copied or re-concatenated. Positions are never rewritten after a pass, which is what makes reading the
final buffer in backward exact. Within a pass the residual stream is packed (no padding tokens in any matmul).

The layer forward reuses the HF modules (norms, projections, RoPE, MLP); only attention is ours. Supported:
Llama-family architectures (llama, mistral, qwen2).
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from latentlm.errors import InputError

SUPPORTED = ("llama", "mistral", "qwen2")


class GrowingKV:
    """Per layer, a (B, max_len, kv_heads, hd) buffer in which each row's real tokens are written contiguously at the
    row's own length pointer: keys never include padding, and the buffer is written once, in place."""

    def __init__(self, n_layers, batch, kv_heads, head_dim, max_len, dtype, device):
        self.k = [torch.zeros(batch, max_len, kv_heads, head_dim, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.zeros_like(self.k[0]) for _ in range(n_layers)]
        self.blocks: list[list[tuple]] = [[] for _ in range(n_layers)]
        self.lens = torch.zeros(batch, dtype=torch.long, device=device)
        self.max_len = max_len

    def begin(self, rows: torch.Tensor, slots: torch.Tensor):
        """Cache columns of a pass's packed tokens, the rows' new lengths, and each row's (row, start, end, prior
        length) span in the packed order (a row's tokens are contiguous there)."""
        cols = self.lens[rows] + slots
        new_lens = self.lens.clone().index_add_(0, rows, torch.ones_like(rows))
        if int(new_lens.max()) > self.max_len:
            raise InputError(
                f"latent passes need {int(new_lens.max())} cache positions per row, {self.max_len} allocated"
            )
        rows_l, prior = rows.tolist(), self.lens.tolist()
        spans, start = [], 0
        for i in range(1, len(rows_l) + 1):
            if i == len(rows_l) or rows_l[i] != rows_l[start]:
                spans.append((rows_l[start], start, i, prior[rows_l[start]]))
                start = i
        return cols, new_lens, spans


def _row_mask(n: int, prior: int, device) -> torch.Tensor | None:
    """Bottom-right causal (1, 1, n, prior + n) float mask; None when one query may see every key."""
    if n == 1:
        return None
    keys = torch.arange(prior + n, device=device)
    allowed = keys[None, :] <= prior + torch.arange(n, device=device)[:, None]
    return torch.zeros(1, 1, n, prior + n, device=device).masked_fill(~allowed, float("-inf"))


def _attn(q, k, v, mask, scale):
    """(out, aux) of one row's attention; on CPU aux is the flash kernel's log-sum-exp (backward without recompute)."""
    if q.device.type == "cpu":
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, False, attn_mask=mask, scale=scale
        )
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, scale=scale, enable_gqa=k.shape[1] != q.shape[1]
    ), None


def _attn_backward(g, q, k, v, out, aux, mask, scale):
    if aux is not None:
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            g, q, k, v, out, aux, 0.0, False, attn_mask=mask, scale=scale
        )
    with torch.enable_grad():
        qc, kc, vc = (t.detach().requires_grad_() for t in (q, k, v))
        o = F.scaled_dot_product_attention(
            qc, kc, vc, attn_mask=mask, scale=scale, enable_gqa=kc.shape[1] != qc.shape[1]
        )
        return torch.autograd.grad(o, (qc, kc, vc), g)


def _row_tensors(q, k_buf, v_buf, b, s, e, prior):
    qb = q[s:e].transpose(0, 1)[None]  # (1, H, n, hd)
    L = prior + e - s
    kb = k_buf[b, :L].transpose(0, 1)[None]  # (1, Hkv, L, hd)
    vb = v_buf[b, :L].transpose(0, 1)[None]
    return qb, kb, vb


class _RowAttention(torch.autograd.Function):
    """Each row's new queries over exactly that row's cached keys; the inputs include every pass's packed K/V block,
    and the backward hands each block its share of the key/value gradient.

    The context keeps the layer's K/V buffers (plain tensors, written once under no_grad), never the GrowingKV: that
    holds the blocks, which are graph tensors whose history leads back to this node, and a node that refers to its
    own graph through a Python attribute is a reference cycle the collector cannot see, so every training step's
    buffers and attention outputs would stay alive (about 20 MB per Coconut step at batch 32)."""

    @staticmethod
    def forward(ctx, q, scale, k_buf, v_buf, spans, index, *blocks):
        outs, saved = [], []
        for b, s, e, prior in spans:
            qb, kb, vb = _row_tensors(q, k_buf, v_buf, b, s, e, prior)
            mask = _row_mask(e - s, prior, q.device)
            out, aux = _attn(qb, kb, vb, mask, scale)
            outs.append(out[0].transpose(0, 1))
            saved.append((out, aux, mask))
        ctx.save_for_backward(q)
        ctx.scale, ctx.k_buf, ctx.v_buf, ctx.spans, ctx.index, ctx.saved = scale, k_buf, v_buf, spans, index, saved
        return torch.cat(outs)

    @staticmethod
    def backward(ctx, grad_out):
        (q,) = ctx.saved_tensors
        k_buf, v_buf = ctx.k_buf, ctx.v_buf
        gq = torch.zeros_like(q)
        gk, gv = torch.zeros_like(k_buf), torch.zeros_like(v_buf)
        for (b, s, e, prior), (out, aux, mask) in zip(ctx.spans, ctx.saved):
            qb, kb, vb = _row_tensors(q, k_buf, v_buf, b, s, e, prior)
            g = grad_out[s:e].transpose(0, 1)[None].contiguous()
            dq, dk, dv = _attn_backward(g, qb, kb, vb, out, aux, mask, ctx.scale)
            gq[s:e] = dq[0].transpose(0, 1)
            gk[b, : prior + e - s] += dk[0].transpose(0, 1)
            gv[b, : prior + e - s] += dv[0].transpose(0, 1)
        grads = []
        for rows, cols in ctx.index:
            grads += [gk[rows, cols], gv[rows, cols]]
        return (gq, None, None, None, None, None, *grads)


def attend_growing(q, k, v, kv: GrowingKV, layer: int, rows, cols, spans, scale: float) -> torch.Tensor:
    """q, k, v packed (N, heads, hd); k and v are written at (rows, cols) of this layer's buffer -> (N, H, hd)."""
    with torch.no_grad():
        kv.k[layer][rows, cols] = k
        kv.v[layer][rows, cols] = v
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        kv.blocks[layer].append((rows, cols, k, v))
        flat = [t for *_, bk, bv in kv.blocks[layer] for t in (bk, bv)]
        index = [(r, c) for r, c, *_ in kv.blocks[layer]]
        return _RowAttention.apply(q, scale, kv.k[layer], kv.v[layer], spans, index, *flat)
    if len(spans) == kv.lens.shape[0] and all(e - s == 1 for _, s, e, _ in spans):  # decoding: one query per row
        S = int(kv.lens.max()) + 1
        K, V = kv.k[layer][:, :S].transpose(1, 2), kv.v[layer][:, :S].transpose(1, 2)
        valid = torch.arange(S, device=q.device)[None] <= kv.lens[:, None]  # (B, S): this row's keys
        out = F.scaled_dot_product_attention(
            q[:, :, None], K, V, attn_mask=valid[:, None, None, :], scale=scale, enable_gqa=K.shape[1] != q.shape[1]
        )  # (B, H, 1, hd)
        return out[:, :, 0]
    outs = []
    for b, s, e, prior in spans:
        qb, kb, vb = _row_tensors(q, kv.k[layer], kv.v[layer], b, s, e, prior)
        outs.append(_attn(qb, kb, vb, _row_mask(e - s, prior, q.device), scale)[0][0].transpose(0, 1))
    return torch.cat(outs)


class LlamaRunner:
    """Runs an HF Llama-family causal LM pass by pass over a GrowingKV."""

    def __init__(self, hf):
        mt = hf.config.model_type
        if mt not in SUPPORTED:
            raise InputError(f"latent passes support Llama-family models ({', '.join(SUPPORTED)}); this base is {mt!r}")
        self.hf = hf
        self.body = hf.model
        attn = self.body.layers[0].self_attn
        self.rotate = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        self.head_dim = attn.head_dim
        self.kv_heads = hf.config.num_key_value_heads

    def new_cache(self, batch: int, max_len: int) -> GrowingKV:
        w = self.body.embed_tokens.weight
        return GrowingKV(len(self.body.layers), batch, self.kv_heads, self.head_dim, max_len, w.dtype, w.device)

    def run(self, x: torch.Tensor, rows: torch.Tensor, slots: torch.Tensor, positions: torch.Tensor, kv: GrowingKV):
        """One pass over packed tokens: x (N, D) of rows (N,), the i-th new token of its row at slot i, at positions
        (N,) -> (hidden (N, D), logits (N, V)). No padding anywhere: every row attends to exactly its own keys."""
        N = x.shape[0]
        cols, new_lens, spans = kv.begin(rows, slots)
        cos, sin = self.body.rotary_emb(x[None], positions[None])  # (1, N, hd)
        h = x
        for i, layer in enumerate(self.body.layers):
            attn = layer.self_attn
            a = layer.input_layernorm(h)
            q = attn.q_proj(a).view(1, N, -1, self.head_dim).transpose(1, 2)  # (1, H, N, hd)
            k = attn.k_proj(a).view(1, N, -1, self.head_dim).transpose(1, 2)
            v = attn.v_proj(a).view(N, -1, self.head_dim)
            q, k = self.rotate(q, k, cos, sin)
            o = attend_growing(q[0].transpose(0, 1), k[0].transpose(0, 1), v, kv, i, rows, cols, spans, attn.scaling)
            h = h + attn.o_proj(o.reshape(N, -1))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        kv.lens = new_lens
        hidden = self.body.norm(h)
        return hidden, self.hf.lm_head(hidden)


def segments(latent_mask: torch.Tensor, lengths: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row: [(0, p1), (p1, p2), ..., (pk, len)] where p_i are its latent positions."""
    out = []
    for row, n in zip(latent_mask.tolist(), lengths.tolist()):
        cuts = [p for p, is_latent in enumerate(row[:n]) if is_latent]
        if cuts and cuts[0] == 0:
            raise InputError("a latent cannot be the first position of a sequence (nothing precedes it)")
        bounds = [0, *cuts, n]
        out.append(list(zip(bounds, bounds[1:])))
    return out


def frontier_forward(runner: LlamaRunner, input_ids, attention_mask, latent_mask, build_latent):
    """Logits (B, T, V) and final hidden states (B, T, D) with every latent position's input embedding replaced by
    build_latent(hidden at p-1, logits at p-1). Passes = max latents in a row + 1; each pass runs the rows' segments
    packed (no padded tokens in the matmuls), its latents built together."""
    B, T = input_ids.shape
    device = input_ids.device
    if attention_mask is not None and bool((attention_mask[:, 1:] > attention_mask[:, :-1]).any()):
        raise InputError("batches with latents must be right-padded (attention_mask ones, then zeros)")
    lengths = attention_mask.sum(1) if attention_mask is not None else torch.full((B,), T)
    segs = segments(latent_mask, lengths)
    n_pass = max(len(s) for s in segs)
    kv = runner.new_cache(B, T)
    tok_emb = runner.body.embed_tokens(input_ids)  # (B, T, D)
    index_of = torch.zeros(B, T, dtype=torch.long)  # (b, t) -> row of the concatenated packed outputs
    outs_h, outs_l, latents = [], [], []
    prev_h = prev_l = None
    done = 0
    for j in range(n_pass):
        rows, pos, slots, last, lat_rows = [], [], [], [], []
        for b, s in enumerate(segs):
            if j < len(s):
                a, e = s[j]
                index_of[b, a:e] = torch.arange(done + len(pos), done + len(pos) + e - a)
                rows += [b] * (e - a)
                pos += list(range(a, e))
                slots += list(range(e - a))
                last.append(len(pos) - 1)
                if j > 0:
                    lat_rows.append(b)
        rows_t, pos_t, slots_t = (torch.tensor(v, device=device) for v in (rows, pos, slots))
        x = tok_emb[rows_t, pos_t]  # (N_j, D)
        if lat_rows:  # segments that start at a latent: built from the previous pass's last outputs of those rows
            z = build_latent(prev_h[lat_rows], prev_l[lat_rows])  # (R, D)
            latents.append(z)
            starts = torch.tensor([i for i in range(len(rows)) if slots[i] == 0], device=device)
            x = x.index_put((starts,), z)
        h, lg = runner.run(x, rows_t, slots_t, pos_t, kv)
        outs_h.append(h)
        outs_l.append(lg)
        prev_index = torch.full((B,), 0, dtype=torch.long, device=device)
        prev_index[[r for r, s in enumerate(segs) if j < len(s)]] = torch.tensor(last, device=device)
        prev_h, prev_l = h[prev_index], lg[prev_index]  # (B, .) each row's last token of this pass
        done += len(pos)
    all_h, all_l = torch.cat(outs_h), torch.cat(outs_l)
    index_of = index_of.to(device)
    valid = (torch.arange(T, device=device)[None] < lengths.to(device)[:, None])[..., None]
    logits = all_l[index_of] * valid  # padding positions: zeros
    hidden = all_h[index_of] * valid
    return logits, hidden, n_pass, latents
