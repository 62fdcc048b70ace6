"""`latentlm report RUN_DIR... [--out DIR]`: one markdown comparison across runs, plus PNG charts.

Reads each run's config.yaml, train_summary.json and results.json (written by `latentlm train` and
`latentlm eval`). Bits per byte is the headline metric because it compares across tokenizers; FLOPs per token and
total training FLOPs sit beside it so compute-matched comparisons are read off directly (a bits-per-byte vs
training-FLOPs chart shows which runs are better at equal compute).

Runs are named by a unique label derived from their paths (the folder name, with as many parent folders as it
takes to tell runs apart: `a/gpt`, `b/gpt`). A partial evaluation (`eval --max-batches`, `--limit`) is used only
where no full one exists, and is marked: `*` on the value, its scope in the notes.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from latentlm.errors import InputError
from latentlm.results import is_partial, read_results


def labels(run_dirs: list[Path]) -> list[str]:
    """Shortest unique trailing paths: ['x/a/gpt', 'y/b/gpt', 'c/ft'] -> ['a/gpt', 'b/gpt', 'ft']."""
    parts = [Path(d).resolve().parts for d in run_dirs]
    depth = [1] * len(parts)
    for _ in range(max(map(len, parts), default=1)):
        names = ["/".join(p[-k:]) for p, k in zip(parts, depth)]
        clash = {n for n in names if names.count(n) > 1}
        if not clash:
            return names
        depth = [k + 1 if n in clash and k < len(p) else k for p, k, n in zip(parts, depth, names)]
    return [str(Path(d)) for d in run_dirs]


def _scope(key: str) -> str:
    return key[key.index("[") + 1 : -1] if is_partial(key) else ""


def _pick_val(results: dict) -> tuple[dict | None, str]:
    """The full validation entry, else the first partial one with its scope."""
    if isinstance(results.get("val"), dict):
        return results["val"], ""
    for key, res in results.items():
        if key.startswith("val[") and isinstance(res, dict):
            return res, _scope(key)
    return None, ""


def collect(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise InputError(f"{run_dir} is not a run directory (no config.yaml); train it with `latentlm train`")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    summary_file = run_dir / "train_summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    results = read_results(run_dir)
    val, val_scope = _pick_val(results)
    if val is None:
        val, val_scope = summary.get("val") or {}, "during training (eval.batches)" if summary.get("val") else ""
    tasks = {}
    for key, res in results.items():
        if not isinstance(res, dict):
            continue
        mark = f" [{_scope(key)}]" if is_partial(key) else ""
        base = key.split("[", 1)[0]
        if base.startswith("choice:"):
            tasks[base.split(":", 1)[1] + mark] = res.get("acc_norm")
        elif base == "lm_eval" or base.startswith("lm_eval:"):
            for task, metrics in res.get("results", {}).items():
                for m in ("acc_norm,none", "acc,none", "exact_match,none", "bits_per_byte,none"):
                    if m in metrics:
                        tasks[f"{task} ({m.split(',')[0]}){mark}"] = metrics[m]
                        break
        elif base.startswith("reasoning"):
            tasks[base + mark] = res.get("accuracy")
    note = val.get("note", "")
    if val_scope:
        note = f"{note}; *partial: {val_scope}" if note else f"*partial: {val_scope}"
    return {
        "name": run_dir.name,
        "dir": str(run_dir),
        "variant": cfg["model"]["variant"],
        "params": summary.get("params"),
        "flops_per_token": summary.get("flops_per_token"),
        "train_flops": summary.get("train_flops"),
        "tokens_per_s": summary.get("tokens_per_s"),
        "tokens_seen": summary.get("tokens_seen"),
        "bpb": val.get("bits_per_byte"),
        "val_loss": val.get("loss"),
        "note": note,
        "partial": val_scope,
        "leak": (results.get("leak") or {}).get("max_abs_dlogp"),
        "tasks": tasks,
    }


def _num(x, fmt="{:.3g}"):
    return "-" if x is None else fmt.format(x)


def build_report(run_dirs: list[str | Path], out_dir: str | Path, title: str = "latentlm comparison") -> Path:
    if not run_dirs:
        raise InputError("latentlm report needs at least one run directory")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"report --out {out_dir} is a file; give a folder for report.md and its charts")
    rows = [collect(Path(d)) for d in run_dirs]
    for r, label in zip(rows, labels([Path(d) for d in run_dirs])):
        r["name"] = label
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create report --out {out_dir} ({e.strerror or e}); give a writable folder") from None
    base = rows[0]["flops_per_token"]
    lines = [
        f"# {title}",
        "",
        "Bits per byte: held-out split through each model's `score()` (the likelihood column says what that is).",
        "FLOPs: training FLOPs per token (forward + backward, from `model.flops_per_token`); x = ratio to the first run.",
        "Leak: max |change of log p| (nats) at positions <= t when the tokens after t change (`eval --leak`); a causal "
        "model has 0.",
        "",
        "| run | variant | params | FLOPs/token | x | train FLOPs | tokens/s | val bits/byte | leak | likelihood |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = r["flops_per_token"] / base if r["flops_per_token"] and base else None
        lines.append(
            f"| {r['name']} | {r['variant']} | {_num(r['params'] and r['params'] / 1e6, '{:.2f}M')} | "
            f"{_num(r['flops_per_token'] and r['flops_per_token'] / 1e6, '{:.1f}M')} | {_num(ratio, '{:.2f}')} | "
            f"{_num(r['train_flops'], '{:.2e}')} | {_num(r['tokens_per_s'], '{:.0f}')} | "
            f"{_num(r['bpb'], '{:.4f}')}{'*' if r['partial'] else ''} | "
            f"{_num(r['leak'], '{:.1e}')} | {r['note']} |"
        )
    task_names = sorted({t for r in rows for t in r["tasks"]})
    if task_names:
        lines += [
            "",
            "## Task accuracies",
            "",
            "| run | " + " | ".join(task_names) + " |",
            "|---|" + "---:|" * len(task_names),
        ]
        for r in rows:
            lines.append(f"| {r['name']} | " + " | ".join(_num(r["tasks"].get(t), "{:.3f}") for t in task_names) + " |")
    charts = _charts(rows, task_names, out)
    lines += [""] + [f"![{c.stem}]({c.name})" for c in charts] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps(rows, indent=1))
    return path


def _charts(rows, task_names, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latentlm.viz.plots import bars

    charts = []
    have = [r for r in rows if r["bpb"] is not None]
    if have:
        charts.append(
            bars(
                {r["name"]: r["bpb"] for r in have},
                out / "report_bpb.png",
                "val bits per byte",
                "held-out bits per byte (lower is better)",
            )
        )
    pts = [r for r in have if r["train_flops"]]
    if pts:
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, r in enumerate(pts):
            ax.scatter(r["train_flops"], r["bpb"], color=f"C{i}", s=40)
            ax.annotate(r["name"], (r["train_flops"], r["bpb"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("training FLOPs")
        ax.set_ylabel("val bits per byte")
        ax.set_title("quality vs compute (down-left is better)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "report_bpb_vs_flops.png", dpi=120)
        plt.close(fig)
        charts.append(out / "report_bpb_vs_flops.png")
    tps = {r["name"]: r["tokens_per_s"] for r in rows if r["tokens_per_s"]}
    if tps:
        charts.append(bars(tps, out / "report_tokens_per_s.png", "tokens / s", "training throughput"))
    if task_names:
        fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(task_names)), 4))
        width = 0.8 / len(rows)
        for i, r in enumerate(rows):
            ax.bar(
                [j + i * width for j in range(len(task_names))],
                [r["tasks"].get(t) or 0 for t in task_names],
                width,
                label=r["name"],
                color=f"C{i}",
            )
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(task_names))], task_names, rotation=15, fontsize=8)
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "report_tasks.png", dpi=120)
        plt.close(fig)
        charts.append(out / "report_tasks.png")
    return charts
