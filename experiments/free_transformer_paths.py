"""A CPU-sized stand-in for the Free Transformer's downstream claim ("a latent plan helps reasoning").

Task (latentlm.data.graph_paths): answer-only path finding in ProsQA-style layered graphs; the answer is a
start -> target path, several are valid, each is checked edge by edge. Three arms, equal tokens (same steps,
batch and sequences, same seed -> same data order), 3 seeds:
- `ft`: configs/free_transformer/paths.yaml (Free Transformer; generation with prior Z, every Z_t uniform),
- `gpt`: the same config with model.latent=false (the baseline GPT the FT is built on),
- `gpt_deeper`: model.latent=false and one more layer (about the FT's parameter count: the FT adds an encoder
  block, a readout and the 2^H x D post-sampler table).
Metric: pass@1 on the same held-out graphs at temperature 0 and at temperature 1, with Wilson 95 % intervals.
Trivial baseline: a uniformly random walk along the listed edges. The claim "FT beats the deeper GPT" is
supported only where FT's interval lies above the deeper GPT's on every seed.

    python experiments/free_transformer_paths.py [--steps 400] [--seeds 0 1 2] [--n 512]
    python experiments/free_transformer_paths.py --write
Runs go to runs/ft_paths<tag>/<arm>_s<seed>/ (fresh, never resumed); results to
experiments/results/free_transformer_paths<tag>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from latentlm.config import load_config
from latentlm.data.graph_paths import GraphPathTask, check_path, pass_at_1
from latentlm.eval.stats import paired_diff, wilson
from latentlm.train.checkpoint import load_run
from latentlm.train.trainer import train

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/free_transformer/paths.yaml"
OUT = REPO / "experiments/results"
ARMS = {"gpt": ["--model.latent=false"], "gpt_deeper": ["--model.latent=false", "--model.n_layers=5"], "ft": []}


def test_examples(task: GraphPathTask, n: int) -> list[dict]:
    return [task.sample(np.random.default_rng([0, 2, i])) for i in range(n)]  # one fixed held-out set for all runs


def random_walk(ex: dict, rng: np.random.Generator) -> bool:
    succ: dict[str, list[str]] = {}
    for u, v in ex["edges"]:
        succ.setdefault(u, []).append(v)
    path = [ex["start"]]
    while path[-1] != ex["target"] and path[-1] in succ:
        nxt = succ[path[-1]]
        path.append(nxt[rng.integers(len(nxt))])
    return check_path("".join(path), ex)


def run_one(arm: str, seed: int, steps: int, tag: str, n: int) -> dict:
    run_dir = REPO / f"runs/ft_paths{tag}/{arm}_s{seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # fresh: never resumed
    over = [
        f"--train.out_dir={run_dir}",
        f"--train.max_steps={steps}",
        f"--train.seed={seed}",
        f"--eval.every={steps}",
        "--train.resume=false",
        "--log.progress=false",
        *ARMS[arm],
    ]
    if arm == "ft":
        over.append(f"--model.kappa_anneal_steps={max(steps // 2, 1)}")
    cfg = load_config(CONFIG, over)
    t0 = time.perf_counter()
    summary = train(cfg)
    wall = time.perf_counter() - t0
    model, tok = load_run(run_dir)
    task = GraphPathTask()
    exs = test_examples(task, n)
    res = {"arm": arm, "seed": seed, "steps": steps, "n": n, "params": summary["params"]}
    res.update(tokens=summary["tokens_seen"], val_loss=summary["val"]["loss"], wall_train_s=wall)
    for temp in (0.0, 1.0):
        ok, answers = pass_at_1(model, tok, task, exs, temp, seed=seed)
        k = int(sum(ok))
        res[f"T{temp:g}"] = {"correct": k, "rate": k / n, "ci95": list(wilson(k, n)), "flags": [int(x) for x in ok]}
        res[f"T{temp:g}"]["samples"] = [
            {"prompt": task.prompt(ex).strip(), "answer": a, "ok": bool(o)} for ex, a, o in zip(exs[:8], answers, ok)
        ]
    if arm == "ft":  # is Z used at all? (posterior vs prior CE on the answer tokens, MI)
        d = model.diagnostics(tok, cfg, "val", 4)
        res["latent"] = {k: d[k] for k in ("ce_posterior", "ce_prior", "ce_gap_nats", "mi_bits", "bias_bits", "dead")}
    (run_dir / "result.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: res[k] for k in ("arm", "seed", "wall_train_s")} | {"T0": res["T0"]["rate"]}), flush=True)
    return res


def write_results(tag: str, n_default: int):
    rows = [json.loads(p.read_text()) for p in sorted((REPO / f"runs/ft_paths{tag}").glob("*/result.json"))]
    if not rows:
        raise SystemExit("no finished runs")
    n = rows[0]["n"]
    task = GraphPathTask()
    exs = test_examples(task, n)
    rng = np.random.default_rng(0)
    walk = sum(random_walk(ex, rng) for ex in exs)
    by = {(r["arm"], r["seed"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    machine = {"rows": [], "random_walk": {"rate": walk / n, "ci95": list(wilson(walk, n)), "n": n}, "claims": {}}
    lines = [
        "# Free Transformer vs GPT: answer-only path finding (reasoning stand-in)",
        "",
        "| arm | seed | params | tokens | val loss (answer tokens) | pass@1 T=0 [95% CI] | pass@1 T=1 [95% CI] |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["arm"], r["seed"])):
        t0, t1 = r["T0"], r["T1"]
        machine["rows"].append(
            {k: r[k] for k in ("arm", "seed", "steps", "params", "tokens", "val_loss", "wall_train_s")}
            | ({"latent": r["latent"]} if "latent" in r else {})
            | {"pass_T0": t0["rate"], "pass_T0_ci95": t0["ci95"], "pass_T1": t1["rate"], "pass_T1_ci95": t1["ci95"]}
        )
        lines.append(
            f"| {r['arm']} | {r['seed']} | {r['params']:,} | {r['tokens']:,} | {r['val_loss']:.4f} "
            f"| {t0['rate']:.3f} [{t0['ci95'][0]:.3f}, {t0['ci95'][1]:.3f}] "
            f"| {t1['rate']:.3f} [{t1['ci95'][0]:.3f}, {t1['ci95'][1]:.3f}] |"
        )
    w = machine["random_walk"]
    lines.append(
        f"| random walk along edges | — | — | — | — | {w['rate']:.3f} [{w['ci95'][0]:.3f}, {w['ci95'][1]:.3f}] | |"
    )
    lines += ["", "Paired over seeds (same seed = same data order and held-out graphs), FT minus baseline:", ""]
    lines += ["| comparison | T | mean diff | 95% CI (paired t) | FT interval above baseline's on every seed |"]
    lines += ["|---|---:|---:|---:|---|"]
    for base in ("gpt", "gpt_deeper"):
        for T in ("T0", "T1"):
            have = [s for s in seeds if ("ft", s) in by and (base, s) in by]
            if len(have) < 2:
                continue
            a = [by[("ft", s)][T]["rate"] for s in have]
            b = [by[(base, s)][T]["rate"] for s in have]
            d = paired_diff(a, b)
            above = all(by[("ft", s)][T]["ci95"][0] > by[(base, s)][T]["ci95"][1] for s in have)
            machine["claims"][f"ft_vs_{base}_{T}"] = d | {"ft_above_on_every_seed": above, "seeds": have}
            lines.append(
                f"| FT − {base} | {T[1:]} | {d['mean_diff']:+.3f} | [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] "
                f"| {'yes' if above else 'no'} |"
            )
    lines += ["", "Is Z used by the FT (val answer tokens, diagnostics.py)?", ""]
    for r in sorted(rows, key=lambda r: r["seed"]):
        if "latent" in r:
            z = r["latent"]
            lines.append(
                f"- seed {r['seed']}: CE posterior Z {z['ce_posterior']:.4f} vs prior Z {z['ce_prior']:.4f} "
                f"(gap {z['ce_gap_nats']:.4f} nats/token), MI {z['mi_bits']:.3f} bits, bias {z['bias_bits']:.3f} bits"
                f"{' — DEAD LATENT' if z['dead'] else ''}"
            )
    lines += ["", "Samples (held-out graphs 0-3, seed 0, T = 1):", ""]
    for arm in ARMS:
        r = by.get((arm, seeds[0]))
        if r:
            for s in r["T1"]["samples"][:4]:
                lines.append(
                    f"- {arm}: `{s['prompt']}` -> `{s['answer'].strip()}` ({'valid' if s['ok'] else 'invalid'})"
                )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"free_transformer_paths{tag}.json").write_text(json.dumps(machine, indent=1))
    (OUT / f"free_transformer_paths{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="*", default=list(ARMS))
    ap.add_argument("--n", type=int, default=512, help="held-out graphs")
    ap.add_argument("--tag", default="")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.write:
        write_results(args.tag, args.n)
        return
    for seed in args.seeds:
        for arm in args.arms:
            run_one(arm, seed, args.steps, args.tag, args.n)


if __name__ == "__main__":
    main()
