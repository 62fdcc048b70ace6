"""Bubble maps: where a Thoughtbubbles model spends its streams, beside how hard each token was.

For a text: streams of each token after every fork layer (a heatmap) and the model's per-token loss (bars), as a
PNG and a self-contained HTML page. Alignment: the streams of token t compute the prediction of token t+1, so
they are drawn above -log p(x_{t+1} | x_<=t). One passage is far too few tokens for a correlation (its null band
is wide and its tokens are dependent), so the map carries no per-passage statistic: it shows the whole-val-split
allocation statistics of latentlm.eval.allocation (`latentlm eval RUN --allocation --reference GPT_RUN`) when
they are given, and says so when they are not. Works with any model that has `fork_map(input_ids)`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from latentlm.errors import InputError  # noqa: E402


def allocation_line(allocation: dict | None) -> str:
    """One line of the whole-val-split statistics (the `summary` of allocation_analysis), or what to run."""
    if not allocation or allocation.get("spearman_ref_entropy") is None:
        return "allocation statistics: none yet (latentlm eval RUN --allocation --reference GPT_RUN)"
    a = allocation
    lo, hi = a["ci95"]
    plo, phi = a.get("partial_ci95", [None, None])
    text = (
        f"val split, fork {a['layer']}: Spearman(streams, reference entropy) {a['spearman_ref_entropy']:+.3f} "
        f"[{lo:+.3f}, {hi:+.3f}], log-frequency partialled out {a['partial_on_logfreq']:+.3f}"
    )
    if plo is not None:
        text += f" [{plo:+.3f}, {phi:+.3f}]"
    if a.get("within_window") is not None:
        wlo, whi = a["within_window_ci95"]
        text += f", within-window {a['within_window']:+.3f} [{wlo:+.3f}, {whi:+.3f}]"
    return text + " (95% cluster bootstrap)"


def bubble_map(model, tokenizer, text: str, out_dir: str | Path, allocation: dict | None = None) -> dict:
    if not hasattr(model, "fork_map"):
        raise InputError(
            f"this run's model ({type(model).__name__}) has no fork maps; --bubbles needs a thoughtbubbles run"
        )
    ids = tokenizer.encode(text)[: model.config.max_seq_len]
    if len(ids) < 3:
        raise InputError("--bubbles needs a text of at least 3 tokens")
    x = torch.tensor([ids])
    fm = model.fork_map(x)
    loss = -model.score(x)[0, 1:].numpy()  # loss of predicting token t+1, paired with token t's streams
    layers = sorted(fm)
    streams = np.stack([fm[layer]["streams"][0, :-1].numpy() for layer in layers])  # (F, T-1)
    pieces = [tokenizer.decode([i]) for i in ids]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "tokens": len(ids),
        "fork_layers": layers,
        "mean_streams": [float(s.mean()) for s in streams],
        "allocation": allocation,
        "statistics": allocation_line(allocation),
    }
    _png(streams, loss, pieces[:-1], layers, result, out_dir / "bubble_map.png")
    _html(streams, loss, pieces, layers, result, out_dir / "bubble_map.html")
    result["png"], result["html"] = str(out_dir / "bubble_map.png"), str(out_dir / "bubble_map.html")
    return result


def _png(streams, loss, pieces, layers, result, path: Path) -> None:
    T = streams.shape[1]
    fig, (a1, a2) = plt.subplots(
        2, 1, figsize=(max(8, 0.28 * T), 4.5), sharex=True, gridspec_kw={"height_ratios": [len(layers), 2]}
    )
    im = a1.imshow(streams, aspect="auto", cmap="Blues", vmin=1, vmax=max(2, streams.max()), interpolation="nearest")
    a1.set_yticks(range(len(layers)), [f"fork {layer}" for layer in layers])
    a1.set_title("streams per token\n" + result["statistics"], fontsize=8)
    fig.colorbar(im, ax=a1, pad=0.01)
    a2.bar(range(T), loss, color="C3")
    a2.set_ylabel("next-token loss")
    a2.set_xticks(range(T), [p.replace("\n", "\\n") for p in pieces], rotation=90, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _html(streams, loss, pieces, layers, result, path: Path) -> None:
    top = max(2.0, float(streams.max()))
    cells = []
    for t, piece in enumerate(pieces):
        if t < streams.shape[1]:
            level = (streams[-1, t] - 1) / (top - 1)
            tip = "; ".join(f"fork {layer}: {int(streams[i, t])} streams" for i, layer in enumerate(layers))
            tip += f"; loss of next token {loss[t]:.2f} nats"
            style = f"background: rgba(30, 100, 220, {0.1 + 0.8 * level:.2f})"
        else:
            tip, style = "last token", ""
        cells.append(f'<span class="tok" style="{style}" title="{html.escape(tip)}">{html.escape(piece)}</span>')
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>bubble map</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} .tok{{white-space:pre-wrap;border-radius:3px;
padding:1px 0}} pre{{background:#f4f4f4;padding:.5em}}</style></head><body>
<h2>Thoughtbubbles bubble map</h2>
<p>Colour: streams of each token at the last fork layer (darker = more). Hover a token for every fork layer and the
loss of the next token.</p>
<p>{html.escape(result["statistics"])}</p>
<p>{"".join(cells)}</p>
<pre>{html.escape(json.dumps({k: v for k, v in result.items() if k not in ("png", "html")}, indent=1))}</pre>
</body></html>"""
    path.write_text(page, encoding="utf-8")
