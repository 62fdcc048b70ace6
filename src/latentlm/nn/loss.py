"""The language-model loss: the label convention, `IGNORE_INDEX`, the loss helpers, and the fused output head +
cross-entropy that never materialises the (N, V) logits.

Label convention (one, everywhere in latentlm): `labels` are *pre-shifted targets aligned with input_ids*:
labels[:, t] is the token position t predicts (input_ids[:, t + 1] for plain text), IGNORE_INDEX where nothing is
learned (padding, prompts, the last position). Data sources build them so, every model's forward takes them so,
and `lm_loss` scores them without shifting. Only the Hugging Face boundary (hf/modeling.py) receives HF-style labels
(labels == input_ids, the model shifts); it converts them with `shift_labels` and then uses the same `lm_loss`.

`linear_cross_entropy(h, W, labels)` = F.cross_entropy(h @ W.T, labels, ignore_index=IGNORE_INDEX) (mean over kept
targets), computed over chunks of rows. Each chunk's logits live only while that chunk is processed: its
log-sum-exp gives the loss, and, when a gradient is needed, softmax - onehot is turned at once into the chunk's
input gradient (g @ W) and accumulated into the weight gradient (g.T @ h), so backward only scales the two stored
gradients by the incoming scalar. The head's three GEMMs are the same as unfused; what goes away is writing and
re-reading three N x V tensors (logits, log-softmax, its gradient): 134 MB each at N = 4096, V = 8192.

Each row's reduction is computed exactly as in the unfused path (same logsumexp over the same V values), so the
loss agrees to float rounding of the chunked matmul; tests/nn/test_loss.py checks loss and both gradients against
F.cross_entropy in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
"""The label value no loss counts; PyTorch's and Hugging Face's default, the one spelling of it in latentlm."""
CHUNK_BYTES = 8 * 2**20  # one chunk of fp32 logits: big enough for efficient GEMMs, small enough to stay in cache


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (fp32) of (..., V) logits against pre-shifted targets (...), IGNORE_INDEX skipped."""
    return F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten(), ignore_index=IGNORE_INDEX)


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """HF-style labels (B, T) (labels == input_ids; the model shifts) -> latentlm's pre-shifted targets (B, T):
    targets[:, t] = labels[:, t + 1], and the last position, which predicts nothing known, is IGNORE_INDEX."""
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def count_targets(labels: torch.Tensor) -> int:
    """The number of labels a loss counts (not IGNORE_INDEX). Reads the tensor: call it on host batches."""
    return int((labels != IGNORE_INDEX).sum())


def chunk_rows(vocab: int, dtype: torch.dtype = torch.float32) -> int:
    return max(16, CHUNK_BYTES // (vocab * torch.finfo(dtype).bits // 8))


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, rows: int):
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        N = h.shape[0]
        valid = labels != IGNORE_INDEX
        n_valid = valid.sum()
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h) if want_h else None
        grad_w = torch.zeros_like(weight) if want_w else None
        for s in range(0, N, rows):
            hc, yc, vc = h[s : s + rows], labels[s : s + rows], valid[s : s + rows]
            logits = torch.mm(hc, weight.t())  # (r, V)
            safe = yc.clamp(min=0)
            target = logits.gather(1, safe[:, None]).squeeze(1)
            top = logits.amax(dim=-1, keepdim=True)
            e = logits.sub_(top).exp_()  # exp(logits - max), in place: the only exp pass over the chunk
            z = e.sum(dim=-1)
            lse = top.squeeze(1) + z.log()  # = logsumexp(logits)
            total += torch.where(vc, lse - target, 0.0).sum()
            if want_h or want_w:
                g = e.mul_((vc / z)[:, None])  # softmax, zeroed on ignored rows (no gradient)
                g.scatter_add_(1, safe[:, None], -vc[:, None].to(g.dtype))  # - onehot
                if want_h:
                    torch.mm(g, weight, out=grad_h[s : s + rows])
                if want_w:
                    grad_w.addmm_(g.t(), hc)
        ctx.save_for_backward(grad_h, grad_w, n_valid)
        return total / n_valid  # 0 / 0 = nan when every target is ignored, as F.cross_entropy

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, n_valid = ctx.saved_tensors
        scale = grad_out / n_valid
        return (
            None if grad_h is None else grad_h * scale.to(grad_h.dtype),
            None if grad_w is None else grad_w * scale.to(grad_w.dtype),
            None,
            None,
        )


def linear_cross_entropy(
    h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, rows: int | None = None
) -> torch.Tensor:
    """Mean cross-entropy of logits h @ weight.T against labels (IGNORE_INDEX skipped). h (..., D), labels (...)."""
    h2 = h.reshape(-1, h.shape[-1])
    rows = rows or chunk_rows(weight.shape[0], h.dtype)
    return _LinearCrossEntropy.apply(h2, weight, labels.reshape(-1), rows)
