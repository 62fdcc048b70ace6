"""Allocation analysis of Thoughtbubbles: do forks go where the model is uncertain?

On every window of the val split (consecutive non-overlapping windows of seq_len tokens, as in perplexity.py),
for each fork layer:
- x: the streams of token t after that fork layer, and its p-mass (sum of p = exp(c) over those streams);
- y: the predictive entropy at position t of a reference model (a GPT run, same tokenizer) and of the model
  itself, H(p(. | x_<=t)) in nats. Alignment: the streams of token t compute the prediction of token t+1, so
  they are paired with the entropy of that prediction;
- z: log(1 + count of token x_t in the train split) (unigram log-frequency), partialled out.
Statistics (latentlm.eval.stats): pooled Spearman and partial Spearman on z with a cluster bootstrap over
windows (tokens of one window are dependent), and within-window Spearman (the mean over windows of each window's
rank correlation, bootstrapped over windows), which removes between-passage differences.

Selection table at equal budget: val loss with the learned ranking of candidates, a random ranking, the worst
(lowest-c) ranking, and one stream per token (kappa = 1 at eval; causal mode: cap 1), beside the reference.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch

from latentlm.errors import InputError
from latentlm.eval.stats import bootstrap_ci, spearman, spearman_ci


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = logits.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)  # (B, T) nats


def check_reference(model, tokenizer, reference, ref_tokenizer, ref_name: str = "the reference run") -> None:
    from latentlm.models import variant_spec

    if "allocation" not in variant_spec(model.config).eval_extras:  # the variant's spec lists this evaluator
        raise InputError(
            f"--allocation needs a thoughtbubbles run with fork layers; this run's model is {type(model).__name__}"
        )
    if tokenizer.tok.get_vocab() != ref_tokenizer.tok.get_vocab():
        raise InputError(
            f"--reference {ref_name} uses another tokenizer ({ref_tokenizer.vocab_size} tokens vs "
            f"{tokenizer.vocab_size}); allocation pairs tokens one to one, so use a reference trained with the same "
            "tokenizer (same data.corpus, data.tokenizer and data.vocab_size)"
        )


@torch.no_grad()
def collect(model, reference, windows, log_freq: np.ndarray) -> dict:
    """Per-token arrays over all windows: streams/p-mass per fork layer, entropies, log-frequency, window id."""
    model.eval()
    if reference is not None:
        reference.eval()
    rec: dict = {"window": [], "ref_entropy": [], "own_entropy": [], "log_freq": [], "layers": {}}
    w0 = 0
    for ids in windows:
        B, T = ids.shape
        fm, logits = model.fork_map(ids, return_logits=True)
        rec["own_entropy"].append(_entropy(logits).flatten().numpy())
        if reference is not None:
            rec["ref_entropy"].append(_entropy(reference(ids).logits).flatten().numpy())
        rec["log_freq"].append(log_freq[ids.numpy()].flatten())
        rec["window"].append(np.repeat(np.arange(w0, w0 + B), T))
        w0 += B
        for layer, m in fm.items():
            d = rec["layers"].setdefault(layer, {"streams": [], "p_mass": []})
            d["streams"].append(m["streams"].flatten().numpy())
            d["p_mass"].append(m["p_mass"].flatten().numpy())
    out = {k: np.concatenate(v) if v else None for k, v in rec.items() if k != "layers"}
    out["layers"] = {layer: {k: np.concatenate(v) for k, v in d.items()} for layer, d in rec["layers"].items()}
    return out


def _ci(d: dict) -> dict:
    return {"rho": _num(d["rho"]), "ci95": [_num(v) for v in d["ci95"]]}


def _num(v) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def within_window(x, y, window, n_boot: int, seed: int) -> dict:
    """Mean over windows of the per-window Spearman (windows where either side is constant are skipped)."""
    rhos = []
    for w in np.unique(window):
        m = window == w
        r = spearman(x[m], y[m])
        if math.isfinite(r):
            rhos.append(r)
    if not rhos:
        return {"rho": None, "ci95": [None, None], "windows": 0}
    lo, hi = bootstrap_ci(np.asarray(rhos), n_boot=n_boot, seed=seed)
    return {"rho": float(np.mean(rhos)), "ci95": [lo, hi], "windows": len(rhos)}


def allocation_stats(rec: dict, n_boot: int = 500, seed: int = 0) -> dict:
    """Correlations of streams / p-mass with the entropies, per fork layer (see the module docstring)."""
    g, z = rec["window"], rec["log_freq"]
    ys = {k: rec[k] for k in ("ref_entropy", "own_entropy") if rec.get(k) is not None}
    layers = {}
    for layer, xs in sorted(rec["layers"].items()):
        entry = {"mean_streams": float(xs["streams"].mean()), "mean_p_mass": float(xs["p_mass"].mean())}
        for xname, x in xs.items():
            if np.all(x == x[0]):
                entry[xname] = {"constant": True, "value": float(x[0])}
                continue
            res = {"constant": False, "log_freq": _ci(spearman_ci(x, z, groups=g, n_boot=n_boot, seed=seed))}
            for yname, y in ys.items():
                res[yname] = {
                    "pooled": _ci(spearman_ci(x, y, groups=g, n_boot=n_boot, seed=seed)),
                    "partial_on_logfreq": _ci(spearman_ci(x, y, z, groups=g, n_boot=n_boot, seed=seed)),
                    "within_window": within_window(x, y, g, n_boot, seed),
                }
            entry[xname] = res
        layers[str(layer)] = entry
    return layers


@contextmanager
def _config(model, **changes):
    old = {k: getattr(model.config, k) for k in changes}
    for k, v in changes.items():
        setattr(model.config, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(model.config, k, v)


def selection_table(model, make_windows, token_bytes, reference=None, seed: int = 0) -> dict:
    """Val loss / bits per byte with learned, random and worst-ranked survivors at the model's budget, and with
    one stream per token. Each entry is the exact next-token likelihood of that pruned model (global budgets keep
    their leak)."""
    from latentlm.eval.perplexity import evaluate_windows

    c, rule = model.config, model.fork_rule  # the rule fixes which ablations exist; c holds their numbers

    def ev():
        r = evaluate_windows(model, make_windows(), token_bytes)
        return {"loss": r["loss"], "bits_per_byte": r["bits_per_byte"]}

    out = {"budget": c.budget, "budget_mode": c.budget_mode}
    with _config(model, ranking="learned"):
        out["learned"] = ev()
    for mode in ("random", "worst"):
        if rule.ranked:
            torch.manual_seed(seed)
            with _config(model, ranking=mode):
                out[mode] = ev()
        else:
            out[mode] = None  # the causal budget keeps candidates by threshold, not by rank
    if not rule.budgeted:  # the duplicated-tokens baseline has no budget to shrink
        out["one_stream"] = None
    else:
        with _config(model, budget=1.0, causal_cap=1, ranking="learned"):
            out["one_stream"] = ev()
    if reference is not None:
        r = evaluate_windows(reference, make_windows(), token_bytes)
        out["reference"] = {"loss": r["loss"], "bits_per_byte": r["bits_per_byte"]}
    return out


def allocation_analysis(
    model,
    tokenizer,
    cfg,
    reference=None,
    ref_tokenizer=None,
    max_batches: int | None = None,
    n_boot: int = 500,
    seed: int = 0,
    selection: bool = True,
    reference_name: str | None = None,
) -> dict:
    """The whole analysis on the run's val split; `reference` is a model with the same tokenizer (or None)."""
    from latentlm.data import load_split, shard_dir
    from latentlm.data.shards import eval_windows

    if reference is not None:
        check_reference(model, tokenizer, reference, ref_tokenizer or tokenizer, reference_name or "the reference run")
    else:
        check_reference(model, tokenizer, None, tokenizer)
    if cfg.data.reasoning is not None:
        raise InputError("--allocation reads a text corpus's val split; this run trained on reasoning data")
    shards = shard_dir(cfg)
    val, train = load_split(shards, "val"), load_split(shards, "train")
    log_freq = np.log1p(np.bincount(np.asarray(train, dtype=np.int64), minlength=tokenizer.vocab_size))
    batch = max(1, cfg.train.batch_size // cfg.train.grad_accum)

    def make_windows():
        return eval_windows(val, cfg.data.seq_len, batch, max_batches)

    rec = collect(model, reference, make_windows(), log_freq)
    layers = allocation_stats(rec, n_boot, seed)
    out = {
        "split": "val",
        "reference": reference_name,
        "tokens": int(len(rec["window"])),
        "windows": int(rec["window"].max() + 1),
        "n_boot": n_boot,
        "entropy": "nats, of the next-token distribution at position t (paired with token t's streams)",
        "log_freq": "log(1 + count of token x_t in the train split)",
        "layers": layers,
    }
    if selection:
        out["selection"] = selection_table(model, make_windows, tokenizer.token_bytes(), reference, seed)
    out["summary"] = summary(layers, out.get("selection"))
    return out


def summary(layers: dict, selection: dict | None) -> dict:
    """The headline numbers: streams after the last fork layer whose stream counts vary, vs reference entropy."""
    varying = [k for k, v in layers.items() if not v["streams"].get("constant")]
    out = {"layer": None, "spearman_ref_entropy": None, "ci95": [None, None], "partial_on_logfreq": None}
    if varying:
        key = varying[-1]
        ref = layers[key]["streams"].get("ref_entropy")
        out["layer"] = int(key)
        if ref is not None:
            out.update(
                spearman_ref_entropy=ref["pooled"]["rho"],
                ci95=ref["pooled"]["ci95"],
                partial_on_logfreq=ref["partial_on_logfreq"]["rho"],
                partial_ci95=ref["partial_on_logfreq"]["ci95"],
                within_window=ref["within_window"]["rho"],
                within_window_ci95=ref["within_window"]["ci95"],
            )
    if selection is not None:
        out["selection"] = {
            k: None if selection.get(k) is None else selection[k]["loss"]
            for k in ("learned", "random", "worst", "one_stream")
        }
    return out


def print_summary(res: dict) -> None:
    def ci(d):
        lo, hi = d["ci95"]
        return "n/a" if d["rho"] is None else f"{d['rho']:+.3f} [{lo:+.3f}, {hi:+.3f}]"

    print(
        f"allocation on {res['tokens']} val tokens ({res['windows']} windows; 95% CIs: cluster bootstrap over windows)"
    )
    for layer, e in res["layers"].items():
        st = e["streams"]
        if st.get("constant"):
            print(f"fork {layer}: {st['value']:g} streams for every token (constant: no correlation)")
            continue
        parts = [f"fork {layer}: mean streams {e['mean_streams']:.2f}", f"~log-freq {ci(st['log_freq'])}"]
        for y in ("ref_entropy", "own_entropy"):
            if y in st:
                parts.append(
                    f"~{y} {ci(st[y]['pooled'])}, partial {ci(st[y]['partial_on_logfreq'])}, "
                    f"within-window {ci(st[y]['within_window'])}"
                )
        print("  ".join(parts))
    sel = res.get("selection")
    if sel:
        shown = {k: f"{v['loss']:.4f}" for k, v in sel.items() if isinstance(v, dict)}
        print("selection (val loss, nats/token): " + ", ".join(f"{k} {v}" for k, v in shown.items()))
