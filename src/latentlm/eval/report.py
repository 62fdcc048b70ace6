"""`latentlm report RUN_DIR... [--out DIR]`: one markdown comparison across runs, plus PNG charts.

Reads each run's config.yaml, train_summary.json and results.json (written by `latentlm train` and
`latentlm eval`). Bits per byte is the headline metric because it compares across tokenizers; FLOPs per token and
total training FLOPs sit beside it so compute-matched comparisons are read off directly (a bits-per-byte vs
training-FLOPs chart shows which runs are better at equal compute).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from latentlm.errors import InputError
from latentlm.results import read_results


def collect(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise InputError(f"{run_dir} is not a run directory (no config.yaml); train it with `latentlm train`")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    summary_file = run_dir / "train_summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    results = read_results(run_dir)
    val = results.get("val") or summary.get("val") or {}
    tasks = {}
    for key, res in results.items():
        if key.startswith("choice:"):
            tasks[key.split(":", 1)[1]] = res.get("acc_norm")
        elif key == "lm_eval":
            for task, metrics in res.get("results", {}).items():
                for m in ("acc_norm,none", "acc,none", "exact_match,none", "bits_per_byte,none"):
                    if m in metrics:
                        tasks[f"{task} ({m.split(',')[0]})"] = metrics[m]
                        break
        elif key.startswith("reasoning"):
            tasks[key] = res.get("accuracy")
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
        "note": val.get("note", ""),
        "leak": (results.get("leak") or {}).get("max_abs_dlogp"),
        "tasks": tasks,
    }


def _num(x, fmt="{:.3g}"):
    return "-" if x is None else fmt.format(x)


def build_report(run_dirs: list[str | Path], out_dir: str | Path, title: str = "latentlm comparison") -> Path:
    if not run_dirs:
        raise InputError("latentlm report needs at least one run directory")
    rows = [collect(Path(d)) for d in run_dirs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
            f"{_num(r['train_flops'], '{:.2e}')} | {_num(r['tokens_per_s'], '{:.0f}')} | {_num(r['bpb'], '{:.4f}')} | "
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
