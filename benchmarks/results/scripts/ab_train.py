"""Paired A/B of the training step: each change toggled alone against all-new, interleaved."""

import json
import sys

sys.path.insert(0, "benchmarks")
import torch
import torch.nn.functional as F
from _measure import load_note, paired, speed_ratio

from latentlm.config import TrainConfig
from latentlm.models.gpt import GPT, GPTConfig
from latentlm.nn import attention as attn_mod
from latentlm.nn import mlp as mlp_mod
from latentlm.nn import norm as norm_mod
from latentlm.nn.rope import apply_rope
from latentlm.train.optim import build_optimizer

torch.manual_seed(0)
m = GPT(GPTConfig(vocab_size=8192, d_model=384, n_layers=6, n_heads=6, max_seq_len=416)).train()
opt = build_optimizer(m, TrainConfig(lr=1e-4))
x = torch.randint(0, 8192, (16, 257))
new_norm, new_mlp, new_attn = norm_mod.RMSNorm.forward, mlp_mod.SwiGLU.forward, attn_mod.Attention.forward


def old_norm(self, x):
    return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def old_mlp(self, x):
    gate, up = self.w13(x).split(self.hidden, dim=-1)
    return self.w2(F.silu(gate) * up)


def old_attn(self, x, ctx, kv=None):
    B, T, _ = x.shape
    H, Hkv, hd = self.n_heads, self.n_kv_heads, self.head_dim
    qkv = self.wqkv(x).view(B, T, H + 2 * Hkv, hd)
    q, k = apply_rope(qkv[:, :, : H + Hkv], ctx.rope).split((H, Hkv), dim=2)
    v = qkv[:, :, H + Hkv :]
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    y = attn_mod.attend(q, k, v, causal=ctx.causal)
    return self.wo(y.transpose(1, 2).reshape(B, T, self.q_dim))


def run(norm=True, mlp=True, attn=True):
    def step():
        norm_mod.RMSNorm.forward = new_norm if norm else old_norm
        mlp_mod.SwiGLU.forward = new_mlp if mlp else old_mlp
        attn_mod.Attention.forward = new_attn if attn else old_attn
        loss = m(x[:, :-1], labels=x[:, 1:]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


print(load_note())
t = paired(
    {
        "new": run(),
        "old_norm": run(norm=False),
        "old_mlp": run(mlp=False),
        "old_qkv": run(attn=False),
        "old_all": run(False, False, False),
    },
    reps=int(sys.argv[1]) if len(sys.argv) > 1 else 5,
)
out = {k: [round(v, 3) for v in speed_ratio(t, "new", k)] for k in t if k != "new"}
print("gain of each change (old/new step time, median, IQR):", json.dumps(out))
print("new step s", [round(v, 2) for v in t["new"]])
print(load_note())
