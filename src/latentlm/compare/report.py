"""compare.md: the arms table (mean ± SD over seeds), trivial baselines, paired differences with 95 % intervals,
per-run rows (run folder, checkpoint hash), and charts (viz/plots.py)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from latentlm.compare.aggregate import MIN_CLAIM_SEEDS, REASONING_EXTRAS, lower_is_better


def _f(x, fmt="{:.3f}") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def _ms(s: dict | None, fmt="{:.3f}") -> str:
    """mean ± SD (n) of a summary entry."""
    if not s:
        return "-"
    if s["n"] == 1:
        return f"{_f(s['mean'], fmt)} (1 seed)"
    return f"{_f(s['mean'], fmt)} ± {_f(s['sd'], fmt)} ({s['n']})"


def _metric_title(m: str) -> str:
    if m == "val_bpb":
        return "val bits/byte"
    if m.startswith("heldout_bpb:"):
        return f"held-out {m.split(':', 1)[1]} bits/byte"
    if m.startswith("choice_acc_norm:"):
        return f"{m.split(':', 1)[1]} acc_norm"
    if m == "reasoning_acc":
        return "reasoning accuracy"
    return m


def _flag_md(flags: dict) -> str:
    out = []
    if flags.get("leak"):
        out.append("**⚠ likelihood leaks**")
    if flags.get("prior_z"):
        out.append("**prior-Z estimate**")
    return " ".join(out)


def _val_extent(res: dict) -> str:
    vb = res["spec"]["eval"].get("val_batches")
    return "the whole validation split" if vb is None else f"the first {vb} batches of the validation split"


def _budget_line(res: dict) -> str:
    b = res["budget"]
    first = next(iter(res["arms"].values()))
    if b["rule"] == "tokens":
        total = b["tokens"] or first["max_steps"] * first["tokens_per_step"]
        return f"Equal budget: **same training tokens** ({total:,} per run; max_steps = tokens // tokens per step)."
    if b["rule"] == "flops":
        total = b["flops"] or first["max_steps"] * first["tokens_per_step"] * first["flops_per_token"]
        return (
            f"Equal budget: **same training FLOPs** ({total:.3g} per run from each model's `flops_per_token`; "
            "max_steps = FLOPs // (FLOPs per token x tokens per step))."
        )
    return "No equal-budget rule: each arm trains for its own config's train.max_steps."


def write_report(res: dict, out: Path, records: dict[str, dict[int, dict]]) -> Path:
    arms = res["arms"]
    names = list(arms)
    quality = []
    for a in names:
        for m in arms[a]["summary"]:
            if m not in quality and (m == "val_bpb" or m.startswith(("heldout_bpb:", "choice_acc_norm:"))
                                     or m == "reasoning_acc"):  # fmt: skip
                quality.append(m)
    n_seeds = len(res["seeds"])
    lines = [
        f"# {res['title'] or 'latentlm compare: ' + res['name']}",
        "",
        f"Grid `{res['name']}`: {len(names)} arms x {n_seeds} seed{'s' if n_seeds > 1 else ''} "
        f"({', '.join(map(str, res['seeds']))}). {_budget_line(res)}",
        "",
    ]
    if n_seeds == 1:
        lines += [
            "**One seed per arm**: no intervals can be computed; differences between arms below are single runs, "
            "not claims (seed-to-seed spread on tiny models can exceed them).",
            "",
        ]
    if res["missing"]:
        lines += [f"**Not finished (left out below)**: {', '.join(res['missing'])}.", ""]
    lines += [
        f"Intervals: {res['stats_method']}",
        "",
        f"Bits per byte: each run's own `score()` on {_val_extent(res)} (and on the whole of each held-out corpus, "
        "tokenized with the run's own tokenizer); the *likelihood* column says what that score is. A likelihood "
        f"that leaks (causality probe above {res['leak_tolerance_nats']:g} nats, or a non-causal scoring rule) or "
        "is a prior-Z estimate is flagged here and on every chart.",
        "",
        "## Arms (mean ± SD over seeds)",
        "",
    ]
    head = ["arm", "variant", "params", "steps", "tokens", "train FLOPs", "tokens/s"]
    head += [_metric_title(m) for m in quality if "bpb" in m] + ["leak max abs dlogp", "likelihood"]
    lines += ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 3) + "---|"]
    for a in names:
        s = arms[a]["summary"]
        params = s.get("params", {}).get("mean")
        row = [
            a + (f" ({arms[a]['label']})" if arms[a]["label"] else ""),
            arms[a]["variant"],
            _f(params and params / 1e6, "{:.2f}M"),
            str(arms[a]["max_steps"]),
            _f(s.get("tokens_seen", {}).get("mean"), "{:,.0f}"),
            _f(s.get("train_flops", {}).get("mean"), "{:.3g}"),
            _ms(s.get("tokens_per_s"), "{:.0f}"),
        ]
        row += [_ms(s.get(m)) for m in quality if "bpb" in m]
        row += [
            _ms(s.get("leak_max_abs_dlogp"), "{:.2g}"),
            f"{arms[a]['score_note'] or '-'} {_flag_md(arms[a]['flags'])}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    baselines = _trivial_baselines(arms, records, quality)
    for label, vals in baselines:
        lines.append("| " + " | ".join([label, "-", "-", "-", "-", "-", "-"] + vals + ["-", "trivial baseline"]) + " |")
    acc = [m for m in quality if "bpb" not in m]
    if acc:
        lines += ["", "## Accuracies (mean ± SD over seeds; 95 % Wilson interval of each run)", ""]
        lines += ["| arm | " + " | ".join(_metric_title(m) for m in acc) + " |", "|---|" + "---:|" * len(acc)]
        for a in names:
            cells = []
            for m in acc:
                wil = [_wilson_of(rec, m) for rec in records[a].values()]
                w = "; ".join(f"[{lo:.3f}, {hi:.3f}]" for lo, hi in wil if lo is not None)
                cells.append(f"{_ms(arms[a]['summary'].get(m))} {w}")
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
        chance = [_chance(records, m) for m in acc]
        lines.append("| chance (trivial baseline) | " + " | ".join(_f(c) for c in chance) + " |")
    extras = [k for k in REASONING_EXTRAS if any(f"reasoning_{k}" in arms[a]["summary"] for a in names)]
    if extras:
        lines += ["", "## Reasoning generations (mean ± SD over seeds)", ""]
        lines += ["| arm | " + " | ".join(k.replace("_", " ") for k in extras) + " |", "|---|" + "---:|" * len(extras)]
        for a in names:
            s = arms[a]["summary"]
            lines.append(f"| {a} | " + " | ".join(_ms(s.get(f"reasoning_{k}"), "{:.2f}") for k in extras) + " |")
    lines += ["", "## Paired differences (B − A over matched seeds, 95 % paired-t interval)", ""]
    if not res["paired"]:
        lines.append("No pair of arms has a finished seed in common yet.")
    else:
        lines += ["| B − A | metric | mean diff | 95 % CI | seeds | reading |", "|---|---|---:|---|---:|---|"]
        for p in res["paired"]:
            lo, hi = p["ci95"]
            if p["n"] < 2:
                reading = "one seed: no interval, no claim"
            elif p["significant"]:
                word = "lower" if p["mean_diff"] < 0 else "higher"
                if p["n"] < MIN_CLAIM_SEEDS:
                    reading = f"{p['b']} {word}: CI excludes 0, but {p['n']} seeds are too few to claim (need 3)"
                else:
                    reading = f"**{p['b']} {word}**" + (f" **({p['better']} better)**" if p["better"] else "")
                    reading += ": CI excludes 0"
            else:
                reading = "no difference shown: CI includes 0"
            if p.get("caveat") and "bpb" in p["metric"]:
                reading += f" (⚠ {p['caveat']}: not a like-for-like score)"
            lines.append(
                f"| {p['b']} − {p['a']} | {_metric_title(p['metric'])} | {p['mean_diff']:+.4f} | "
                f"[{_f(lo, '{:+.4f}')}, {_f(hi, '{:+.4f}')}] | {p['n']} | {reading} |"
            )
    lines += ["", "## Runs", ""]
    head = (
        ["arm", "seed", "run folder", "steps", "train s"] + [_metric_title(m) for m in quality] + ["checkpoint sha256"]
    )
    lines += ["| " + " | ".join(head) + " |", "|---|---:|---|---:|---:|" + "---:|" * len(quality) + "---|"]
    for a in names:
        for seed, rec in sorted(records[a].items()):
            vals = arms[a]["summary"]
            row = [
                a,
                str(seed),
                f"`{os.path.relpath(rec['run_dir'], out)}`",
                str((rec.get("train") or {}).get("steps", "-")),
                _f((rec.get("train") or {}).get("train_time_s"), "{:.0f}"),
            ]
            row += [_f(vals.get(m, {}).get("values", {}).get(seed), "{:.4f}") for m in quality]
            row.append(
                f"`{rec['checkpoint']['sha256'][:16]}`"
                + (" (metrics from an older eval spec)" if rec["stale_eval"] else "")
            )
            lines.append("| " + " | ".join(row) + " |")
    if n_seeds == 1:  # the header says so once; no "(1 seed)" in every cell
        lines = [line.replace(" (1 seed)", "") for line in lines]
    charts = _charts(res, out, records, quality)
    lines += ["", "## Charts", ""] + [f"![{c.stem}]({c.name})" for c in charts] + [""]
    path = out / "compare.md"
    tmp = out / ".compare.md.tmp"
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)
    return path


def _wilson_of(rec: dict, metric: str):
    m = rec.get("metrics") or {}
    if metric.startswith("choice_acc_norm:"):
        r = (m.get("choice") or {}).get(metric.split(":", 1)[1]) or {}
        return tuple(r.get("acc_norm_ci95") or (None, None))
    if metric == "reasoning_acc":
        return tuple((m.get("reasoning") or {}).get("accuracy_ci95") or (None, None))
    return (None, None)


def _chance(records, metric):
    for by_seed in records.values():
        for rec in by_seed.values():
            if metric.startswith("choice_acc_norm:"):
                r = ((rec.get("metrics") or {}).get("choice") or {}).get(metric.split(":", 1)[1])
                if r:
                    return r.get("chance")
    return None


def _trivial_baselines(arms, records, quality) -> list[tuple[str, list[str]]]:
    """A unigram row per distinct tokenizer (train-split token frequencies, add-one), on the same windows."""
    seen: dict[tuple, str] = {}
    rows = []
    for a in arms:
        rec = next(iter(records[a].values()), None)
        if rec is None:
            continue
        m = rec.get("metrics") or {}
        vals = []
        for q in quality:
            if "bpb" not in q:
                continue
            if q == "val_bpb":
                vals.append((m.get("val") or {}).get("unigram_bpb"))
            else:
                vals.append(((m.get("heldout") or {}).get(q.split(":", 1)[1]) or {}).get("unigram_bpb"))
        key = tuple(None if v is None else round(v, 6) for v in vals)
        if all(v is None for v in key) or key in seen:
            continue
        seen[key] = a
        rows.append((f"unigram (tokenizer of {a})", [_f(v) for v in vals]))
    return rows


def _charts(res: dict, out: Path, records, quality) -> list[Path]:
    from latentlm.viz.plots import bars, forest, loss_band, scatter_errors

    arms = res["arms"]
    have = [a for a in arms if records[a]]
    charts = []
    notes = {a: arms[a]["score_note"] for a in have}
    flags = {a: arms[a]["flags"] for a in have}
    err_word = "error bars: SD over seeds; dots: seeds" if len(res["seeds"]) > 1 else "one seed: no error bars"
    for m in [q for q in quality if "bpb" in q or "acc" in q]:
        arms_m = [a for a in have if m in arms[a]["summary"]]
        if not arms_m:
            continue
        s = {a: arms[a]["summary"][m] for a in arms_m}
        better = "lower" if lower_is_better(m) else "higher"
        slug = m.replace(":", "_").replace("/", "_")
        charts.append(
            bars(
                {a: s[a]["mean"] for a in arms_m},
                out / f"compare_{slug}.png",
                _metric_title(m),
                f"{res['name']}: {_metric_title(m)} ({better} is better; {err_word})",
                errors={a: s[a]["sd"] for a in arms_m},
                points={a: list(s[a]["values"].values()) for a in arms_m},
                flags=flags,
                notes={a: f"likelihood: {notes[a]}" for a in arms_m if "bpb" in m},
                zero_based=False,
            )
        )
    pts = []
    for a in have:
        s = arms[a]["summary"]
        if "train_flops" in s and "val_bpb" in s:
            pts.append({"name": a, "x": s["train_flops"]["mean"], "xerr": _nz(s["train_flops"]["sd"]),
                        "y": s["val_bpb"]["mean"], "yerr": _nz(s["val_bpb"]["sd"]), "flags": flags[a],
                        "note": notes[a]})  # fmt: skip
    if pts:
        charts.append(
            scatter_errors(
                pts,
                out / "compare_bpb_vs_flops.png",
                "training FLOPs (from flops_per_token x tokens seen)",
                "val bits per byte",
                f"{res['name']}: quality vs compute (down-left is better; {err_word.split(';')[0]})",
            )
        )
    curves = {a: [Path(r["run_dir"]) for _, r in sorted(records[a].items())] for a in have}
    if curves:
        charts.append(
            loss_band(
                curves,
                out / "compare_loss_curves.png",
                f"{res['name']}: train = each model's training loss, val = score() on eval.batches val batches",
            )
        )
    rows = [
        {
            "label": f"{p['b']} − {p['a']}",
            "mean": p["mean_diff"],
            "lo": p["ci95"][0],
            "hi": p["ci95"][1],
            "significant": p["significant"],
        }
        for p in res["paired"]
        if p["metric"] == "val_bpb"
    ]
    if rows:
        charts.append(
            forest(
                rows,
                out / "compare_paired_val_bpb.png",
                "difference in val bits/byte (B − A; < 0: B better)",
                f"{res['name']}: paired differences, 95 % paired-t interval over seeds",
            )  # fmt: skip
        )
    return charts


def _nz(x):
    return x if x is not None and isinstance(x, float) and math.isfinite(x) else None
