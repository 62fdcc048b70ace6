"""Thoughtbubbles against its baselines on the same data, steps and evaluator (tiny models, CPU).

Runs (configs/thoughtbubbles/): param-matched GPT, FLOP-matched GPT (depth 7), duplicated tokens (non-adaptive
parallel baseline), and thoughtbubbles with the global budget (authors' code) and the causal budget, each with
the residual and the distribution merge. Reports val bits per byte on the whole held-out split (through
score()), the leak probe (max |d log p| at positions <= t when tokens after t change), FLOPs per token, wall
time, and a bubble map of the main model.

    python experiments/thoughtbubbles_vs_gpt.py [--steps 600] [--quick]
Writes experiments/results/thoughtbubbles_vs_gpt.{md,png} and runs/tb_vs_gpt/<run>/.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from latentlm.config import load_config
from latentlm.eval.leak import measure_leak_on_run
from latentlm.eval.perplexity import evaluate
from latentlm.train.checkpoint import load_run
from latentlm.train.trainer import train
from latentlm.viz.bubbles import bubble_map
from latentlm.viz.plots import bars, loss_curves

REPO = Path(__file__).resolve().parents[1]
C = REPO / "configs/thoughtbubbles"
OUT = REPO / "experiments/results"
RUNS = [
    ("GPT, param-matched", C / "baseline_param_matched.yaml", []),
    ("GPT, FLOP-matched (7 layers)", C / "baseline_flop_matched.yaml", []),
    ("duplicated tokens", C / "baseline_duplicated.yaml", []),
    ("TB global, residual merge", C / "tiny.yaml", []),
    ("TB global, distribution merge", C / "tiny.yaml", ["--model.merge=distribution"]),
    ("TB causal, residual merge", C / "tiny.yaml", ["--model.budget_mode=causal"]),
    ("TB causal, distribution merge", C / "tiny.yaml", ["--model.budget_mode=causal", "--model.merge=distribution"]),
]
PASSAGE = (
    "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"
    "Arise, fair sun, and kill the envious moon,\nWho is already sick and pale with grief,"
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--quick", action="store_true", help="40 steps, 3 runs: a smoke run")
    args = ap.parse_args()
    runs, steps = (RUNS[:1] + RUNS[3:4] + RUNS[5:6], 40) if args.quick else (RUNS, args.steps)
    rows, dirs = [], {}
    for name, config, extra in runs:
        slug = name.lower().replace(",", "").replace("(", "").replace(")", "").replace(" ", "_")
        run_dir = REPO / "runs/tb_vs_gpt" / slug
        cfg = load_config(
            config,
            [
                f"--train.out_dir={run_dir}",
                f"--train.max_steps={steps}",
                "--train.resume=auto",
                "--log.progress=false",
                f"--eval.every={max(steps // 3, 1)}",
                *extra,
            ],
        )
        t0 = time.perf_counter()
        summary = train(cfg)
        wall = time.perf_counter() - t0
        model, tok = load_run(run_dir)
        val = evaluate(model, tok, cfg, "val")
        leak = measure_leak_on_run(model, tok, cfg)
        row = {
            "name": name,
            "params": summary["params"],
            "flops_per_token": summary["flops_per_token"],
            "tokens_per_s": summary["tokens_per_s"],
            "wall_s": wall,
            "val_bpb": val["bits_per_byte"],
            "val_loss": val["loss"],
            "leak_max": leak["max_abs_dlogp"],
            "leak_mean": leak["mean_abs_dlogp"],
            "streams": getattr(model, "stream_multipliers", lambda T: [1.0])(cfg.data.seq_len),
        }
        if name.startswith("TB"):
            bm = bubble_map(model, tok, PASSAGE, OUT / f"bubbles_{slug}")
            row.update(spearman=bm["spearman"], pearson=bm["pearson"], mean_streams=bm["mean_streams"])
        rows.append(row)
        dirs[name] = run_dir
        print(json.dumps(row), flush=True)
    write(rows, dirs, steps)


def write(rows, dirs, steps):
    OUT.mkdir(parents=True, exist_ok=True)
    bars(
        {r["name"]: r["val_bpb"] for r in rows},
        OUT / "thoughtbubbles_vs_gpt.png",
        "val bits per byte",
        f"tiny models, {steps} steps, Shakespeare",
    )
    loss_curves(dirs, OUT / "thoughtbubbles_vs_gpt_loss.png", "training and validation loss")
    machine = f"{platform.machine()} CPU, {torch.get_num_threads()} threads, fp32"
    lines = [
        "# Thoughtbubbles vs GPT baselines (tiny, CPU)",
        "",
        f"All runs: d_model 128, 4 heads, seq_len 128, batch 16, {steps} steps, lr 3e-3 cosine, the embedded Shakespeare",
        f"corpus with a 2,048-token BPE, one process on {machine}, one seed per run (wall time includes",
        "the evaluation). Thoughtbubbles: fork layers before blocks 1 and 2, budget 2 x T; global = top-k over the sequence",
        "(authors' code), causal = per-token threshold 0.5, cap 4. Val bits/byte: the whole held-out split through",
        "`score()`. Leak: max |delta log p| at positions <= t when the tokens after t are resampled (8 sequences x 8 cuts).",
        "",
        "| run | params | FLOPs/token | streams/token by block | tokens/s | wall (s) | val bits/byte | leak (max) | streams~loss (Spearman) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        sp = r.get("spearman")
        lines.append(
            f"| {r['name']} | {r['params'] / 1e6:.3f}M | {r['flops_per_token'] / 1e6:.1f}M | "
            f"{', '.join(f'{m:g}' for m in r['streams'])} | {r['tokens_per_s']:.0f} | {r['wall_s']:.0f} | "
            f"{r['val_bpb']:.4f} | {r['leak_max']:.2e} | {'' if sp is None and 'spearman' in r else (f'{sp:+.2f}' if sp is not None else '-')} |"
        )
    lines += [
        "",
        "![val bits per byte](thoughtbubbles_vs_gpt.png)",
        "",
        "![loss curves](thoughtbubbles_vs_gpt_loss.png)",
        "",
    ]
    for r in rows:
        if "mean_streams" in r:
            slug = r["name"].lower().replace(",", "").replace(" ", "_")
            lines.append(
                f"- {r['name']}: bubble map `bubbles_{slug}/bubble_map.png` / `.html` "
                f"(mean streams per fork layer {', '.join(f'{m:.2f}' for m in r['mean_streams'])})"
            )
    (OUT / "thoughtbubbles_vs_gpt.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
