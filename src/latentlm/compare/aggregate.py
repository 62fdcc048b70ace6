"""Aggregation over seeds: per-arm mean ± SD, paired differences between arms with 95 % intervals.

Every interval comes from `latentlm.eval.stats`: `mean_sd` per arm, `paired_diff` (paired Student t over the
seeds both arms finished; same seed = same initial weights draw and same data order) between arms, and the
Wilson interval each accuracy carries per run. A difference is called significant only where its interval
excludes 0; with one seed there is no interval and no claim. An arm is named `better` only where the interval
excludes 0 over at least MIN_CLAIM_SEEDS matched seeds (the project's research standard): with two seeds the
interval is still reported, and flagged as too few to claim.
"""

from __future__ import annotations

from latentlm.eval.stats import mean_sd, paired_diff

MIN_CLAIM_SEEDS = 3  # fewer matched seeds: the interval is shown, no arm is called better

STATS_METHOD = (
    "per arm: mean ± sample SD over seeds (latentlm.eval.stats.mean_sd); between arms: paired differences over "
    "matched seeds (same seed = same initialisation draw and data order) with a two-sided 95 % Student-t interval, "
    "n-1 degrees of freedom (latentlm.eval.stats.paired_diff); accuracies per run: 95 % Wilson interval "
    "(latentlm.eval.stats.wilson). Significant = the interval excludes 0; an arm is called better only with "
    "significance over >= 3 matched seeds."
)


def run_values(rec: dict) -> dict[str, float]:
    """Flat metric name -> value of one finished run record."""
    m = rec.get("metrics") or {}
    tr = rec.get("train") or {}
    out: dict[str, float] = {}
    val = m.get("val") or {}
    if val.get("bits_per_byte") is not None:
        out["val_bpb"] = val["bits_per_byte"]
        out["val_loss"] = val["loss"]
    for name, r in (m.get("heldout") or {}).items():
        out[f"heldout_bpb:{name}"] = r["bits_per_byte"]
    for task, r in (m.get("choice") or {}).items():
        out[f"choice_acc_norm:{task}"] = r["acc_norm"]
    if m.get("reasoning"):
        r = m["reasoning"]
        out["reasoning_acc"] = r["accuracy"]
        for k in REASONING_EXTRAS:
            if r.get(k) is not None:
                out[f"reasoning_{k}"] = r[k]
    for k, v in ((tr.get("last_phase") or {}).get("means") or {}).items():
        out[f"last_phase:{k}"] = v
    if m.get("leak"):
        out["leak_max_abs_dlogp"] = m["leak"]["max_abs_dlogp"]
    for k in ("tokens_per_s", "train_flops", "tokens_seen", "params", "steps", "flops_per_token"):
        if tr.get(k) is not None:
            out[k] = tr[k]
    return out


REASONING_EXTRAS = (
    "generated_tokens",
    "latent_steps",
    "terminated_frac",
    "latent_norm_ratio",
    "successive_latent_cosine",
)


def is_quality(metric: str) -> bool:
    return metric in ("val_bpb", "reasoning_acc") or metric.startswith(("heldout_bpb:", "choice_acc_norm:"))


def lower_is_better(metric: str) -> bool:
    return "bpb" in metric or "loss" in metric


def summarise(records: dict[str, dict[int, dict]]) -> dict[str, dict[str, dict]]:
    """arm -> metric -> {mean, sd, n, values: {seed: value}}."""
    out: dict[str, dict[str, dict]] = {}
    for arm, by_seed in records.items():
        per: dict[str, dict[int, float]] = {}
        for seed, rec in sorted(by_seed.items()):
            for k, v in run_values(rec).items():
                per.setdefault(k, {})[seed] = v
        out[arm] = {}
        for k, vals in per.items():
            mean, sd = mean_sd(list(vals.values()))
            out[arm][k] = {"mean": mean, "sd": sd, "n": len(vals), "values": vals}
    return out


def paired_table(summary: dict[str, dict[str, dict]], order: list[str]) -> list[dict]:
    """For every pair (a, b) of arms in `order` (a first) and every quality metric: b - a over matched seeds."""
    rows = []
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            if a not in summary or b not in summary:
                continue
            for metric in sorted(set(summary[a]) & set(summary[b])):
                if not is_quality(metric):
                    continue
                va, vb = summary[a][metric]["values"], summary[b][metric]["values"]
                seeds = sorted(set(va) & set(vb))
                if not seeds:
                    continue
                d = paired_diff([vb[s] for s in seeds], [va[s] for s in seeds])
                better = None
                if d["significant"] and len(seeds) >= MIN_CLAIM_SEEDS:
                    lower = d["mean_diff"] < 0
                    better = b if lower == lower_is_better(metric) else a
                rows.append({"a": a, "b": b, "metric": metric, "seeds": seeds, **d, "better": better})
    return rows


def oriented_pairs(paired: list[dict], pairs: list[tuple[str, str]], metric: str, min_seeds: int = 2) -> list[dict]:
    """The rows of a grid's paired table (`run_compare(...)["paired"]`, which holds B − A in its own arm order) for
    the requested (a, b) pairs, each as a − b: {a, b, mean_diff, ci95, n_seeds, significant}. Pairs the table does
    not hold, or holds over fewer than `min_seeds` matched seeds (no interval), are left out."""
    table = {(p["a"], p["b"]): p for p in paired if p["metric"] == metric}
    out = []
    for a, b in pairs:
        if (b, a) in table:
            p, sign = table[(b, a)], 1
        elif (a, b) in table:
            p, sign = table[(a, b)], -1
        else:
            continue
        if p["n"] < min_seeds:
            continue
        lo, hi = p["ci95"]
        ci = [lo, hi] if sign == 1 else [0.0 - hi, 0.0 - lo]  # 0.0 - x: no "-0.000" for a zero difference
        out.append({"a": a, "b": b, "mean_diff": 0.0 + sign * p["mean_diff"], "ci95": ci, "n_seeds": p["n"],
                    "significant": p["significant"]})  # fmt: skip
    return out
