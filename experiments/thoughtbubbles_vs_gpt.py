"""Thoughtbubbles against its baselines: a thin spec over the comparison harness, then TB's allocation analysis.

    python experiments/thoughtbubbles_vs_gpt.py [--out DIR] [--probes] [--smoke] [--publish DIR]

1. The grid is `configs/compare/thoughtbubbles_vs_gpt.yaml` (7 arms x 3 seeds), run by `latentlm.compare.run_compare`
   exactly as `latentlm compare configs/compare/thoughtbubbles_vs_gpt.yaml --out DIR` would: every run in its own
   folder DIR/runs/ARM/seed_N, never resumed under another config, finished runs reused when their config hash
   matches; val and held-out bits/byte, the unigram trivial baseline, the causality probe (leak flag), paired
   differences with 95 % intervals and charts in DIR/compare.md and DIR/compare.json.
2. Post-step over the finished runs: `latentlm.eval.allocation` on tb_k2 of every seed, reference = the
   param-matched GPT of the same seed (DIR/allocation/tb_k2-seed_N.json; the selection table on the first seed).
3. DIR/thoughtbubbles_vs_gpt.md and .json: the harness's report followed by the allocation tables.

`--probes` also runs `configs/compare/thoughtbubbles_probes.yaml` (one seed each) into DIR/probes and analyses each
probe's allocation against the main grid's GPT of seed 0. `--smoke` checks the pipeline end to end in minutes:
2 seeds, a few steps, 2 val batches, the first 20 kB of the held-out text, its own DIR (never a result).
`--publish DIR` copies the report, its JSON and charts there (e.g. experiments/results; refused with --smoke).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from latentlm.compare import run_compare  # noqa: E402
from latentlm.compare.spec import load_spec, read_yaml_strict  # noqa: E402

SPEC = REPO / "configs/compare/thoughtbubbles_vs_gpt.yaml"
PROBES = REPO / "configs/compare/thoughtbubbles_probes.yaml"
NAME = "thoughtbubbles_vs_gpt"
N_BOOT = 300
SMOKE = {"steps": 4, "seeds": [0, 1], "val_batches": 2, "heldout_bytes": 20_000, "n_boot": 20}


def smoke_spec(spec: dict, out: Path) -> dict:
    """The same grid, shrunk: a few steps (per-arm step ratios kept), two seeds, two val batches, a short held-out."""
    spec = copy.deepcopy(spec)
    spec["name"] += "_smoke"
    spec["title"] = "SMOKE RUN (a pipeline check, not a result): " + spec["title"]
    if len(spec["seeds"]) > 1:
        spec["seeds"] = SMOKE["seeds"]
    base = spec["overrides"]["train.max_steps"]
    for key in ("train.max_steps", "eval.every"):
        spec["overrides"][key] = SMOKE["steps"]
    for arm in spec["arms"].values():
        over = arm.get("overrides") or {}
        if "train.max_steps" in over:
            over["train.max_steps"] = over["eval.every"] = max(
                1, round(SMOKE["steps"] * over["train.max_steps"] / base)
            )
    spec.setdefault("eval", {})["val_batches"] = SMOKE["val_batches"]
    short = []
    for i, full in enumerate(load_spec(spec, REPO).heldout):  # resolved (package:NAME/PATH included)
        path = out.parent / f"{out.name}-heldout{i}" / full.name  # beside the grid folder, not in it
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(full.read_text(encoding="utf-8")[: SMOKE["heldout_bytes"]], encoding="utf-8")
        short.append(str(path))
    spec["heldout"] = short
    return spec


def allocation(tb_dir: str, ref_dir: str, out: Path, smoke: bool, selection: bool, ref_name: str) -> dict:
    """latentlm.eval.allocation on one finished TB run (reused when its checkpoint is unchanged)."""
    from latentlm.eval.allocation import allocation_analysis
    from latentlm.train.checkpoint import find_checkpoint, load_run, sha256_file

    sha = sha256_file(find_checkpoint(tb_dir) / "model.safetensors")
    if out.is_file():
        old = json.loads(out.read_text())
        if old.get("checkpoint_sha256") == sha and old.get("reference_dir") == ref_dir:
            return old
    model, tok = load_run(tb_dir)
    ref, ref_tok = load_run(ref_dir)
    t0 = time.perf_counter()
    res = allocation_analysis(
        model,
        tok,
        model.run_config,
        ref,
        ref_tok,
        max_batches=SMOKE["val_batches"] if smoke else None,
        n_boot=SMOKE["n_boot"] if smoke else N_BOOT,
        selection=selection,  # four more val passes: the first seed only (CPU time)
        reference_name=ref_name,
    )
    res.update(wall_s=time.perf_counter() - t0, run_dir=tb_dir, reference_dir=ref_dir, checkpoint_sha256=sha)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return res


def legacy_unigram() -> dict:
    """The unigram trivial baseline on the windows the old script scored (its table in experiments/results is kept):
    the whole val split, and the first 12 x 16 windows of 128 tokens of the held-out article; add-one train-split
    token frequencies, the grid's tokenizer; bits per byte over the predicted tokens (each window's first token
    is not predicted), as the harness's unigram row."""
    import numpy as np

    from latentlm.compare.spec import plan_runs
    from latentlm.data import load_split, load_tokenizer, shard_dir

    spec = load_spec(read_yaml_strict(SPEC), REPO)
    cfg = plan_runs(spec, REPO / "runs/_plan_only")[1][0].cfg  # nothing is written: only the resolved config
    tok = load_tokenizer(cfg)  # prepares the corpus on first use
    train = np.asarray(load_split(shard_dir(cfg), "train"), dtype=np.int64)
    logp = np.log2(
        (np.bincount(train, minlength=tok.vocab_size)[: tok.vocab_size] + 1.0) / (len(train) + tok.vocab_size)
    )
    T = cfg.data.seq_len

    def bpb(tokens, n_windows=None):
        n = len(tokens) // T if n_windows is None else min(n_windows, len(tokens) // T)
        win = np.asarray(tokens[: n * T], dtype=np.int64).reshape(n, T)[:, 1:]
        return {"bits_per_byte": float(-logp[win].sum() / tok.token_bytes()[win].sum()), "tokens": int(win.size)}

    held = spec.heldout[0]
    return {
        "val": bpb(np.asarray(load_split(shard_dir(cfg), "val"))),
        "heldout": {"corpus": held.name, **bpb(tok.encode(held.read_text(encoding="utf-8")), 12 * 16)},
    }


def _f(v, fmt="+.3f"):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _ci(ci, fmt="+.3f"):
    return "n/a" if not ci or ci[0] is None or math.isnan(ci[0]) else f"[{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def allocation_md(per_seed: dict[int, dict]) -> list[str]:
    lines = ["", "## Allocation (TB k=2; reference = the param-matched GPT of the same seed)", ""]
    if not per_seed:
        return lines + ["No finished tb_k2 / gpt pair yet."]
    first = per_seed[min(per_seed)]
    lines += [
        f"Val split ({first['tokens']:,} tokens in {first['windows']} windows), per token: streams after each fork "
        "layer and their p-mass (sum of p = exp(c)) against the reference GPT's predictive entropy and the model's "
        "own, with log(1 + train count of the token) partialled out; 95 % CIs from a cluster bootstrap over windows "
        f"({first['n_boot']} draws). Within-window: the mean of each window's Spearman, bootstrapped over windows. "
        "These intervals measure uncertainty within one trained model, not across seeds.",
        "",
        "| seed | fork layer | x | mean | ~ log-freq | ~ ref entropy (pooled) | partial on log-freq | within-window "
        "| ~ own entropy (pooled) | partial on log-freq |",
        "|---:|---:|---|---:|---|---|---|---|---|---|",
    ]
    for s, res in sorted(per_seed.items()):
        for layer, e in res["layers"].items():
            for x in ("streams", "p_mass"):
                st = e[x]
                mean = e["mean_streams"] if x == "streams" else e["mean_p_mass"]
                if st.get("constant"):
                    lines.append(f"| {s} | {layer} | {x} | {mean:.3f} | constant ({st['value']:g} for every token) "
                                 "| | | | | |")  # fmt: skip
                    continue

                def c(d):
                    return f"{_f(d['rho'])} {_ci(d['ci95'])}"

                ref, own = st["ref_entropy"], st["own_entropy"]
                lines.append(
                    f"| {s} | {layer} | {x} | {mean:.3f} | {c(st['log_freq'])} | {c(ref['pooled'])} | "
                    f"{c(ref['partial_on_logfreq'])} | {c(ref['within_window'])} | {c(own['pooled'])} | "
                    f"{c(own['partial_on_logfreq'])} |"
                )
    seed, sel = next(((s, r["selection"]) for s, r in sorted(per_seed.items()) if r.get("selection")), (None, None))
    if sel:
        lines += [
            "",
            f"**Selection at equal budget** (seed {seed}; the same trained weights, only which candidates survive the "
            "top-k changes; one stream = kappa 1 at eval):",
            "",
            "| survivors | val loss (nats/token) | val bits/byte |",
            "|---|---:|---:|",
        ]
        for k in ("learned", "random", "worst", "one_stream", "reference"):
            if sel.get(k):
                name = "reference GPT (same seed)" if k == "reference" else k
                lines.append(f"| {name} | {sel[k]['loss']:.4f} | {sel[k]['bits_per_byte']:.4f} |")
    return lines


def probes_md(res: dict, alloc: dict[str, dict]) -> list[str]:
    lines = [
        "",
        "## Attempts to make allocation adaptive (one seed each; single runs, no claims)",
        "",
        "| run | val bits/byte | vs tb_k2 | streams ~ ref entropy (last varying fork layer) | partial on log-freq "
        "| within-window |",
        "|---|---:|---:|---|---|---|",
    ]
    base = res["arms"]["tb_k2"]["summary"].get("val_bpb", {}).get("mean")
    for arm, a in res["arms"].items():
        v = a["summary"].get("val_bpb", {}).get("mean")
        if v is None:
            lines.append(f"| {arm} | not run | | | | |")
            continue
        sm = (alloc.get(arm) or {}).get("summary") or {}
        lines.append(
            f"| {arm} | {v:.4f} | {_f(None if base is None else v - base, '+.4f')} | "
            f"{_f(sm.get('spearman_ref_entropy'))} {_ci(sm.get('ci95'))} (fork {sm.get('layer')}) | "
            f"{_f(sm.get('partial_on_logfreq'))} {_ci(sm.get('partial_ci95'))} | "
            f"{_f(sm.get('within_window'))} {_ci(sm.get('within_window_ci95'))} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help=f"grid folder (default runs/compare/{NAME}[_smoke])")
    ap.add_argument("--probes", action="store_true", help="also the one-seed adaptivity probes (OUT/probes)")
    ap.add_argument("--smoke", action="store_true", help="2 seeds, a few steps: a pipeline check, not a result")
    ap.add_argument("--publish", type=Path, help="copy the report, JSON and charts into this folder")
    ap.add_argument("--legacy-unigram", action="store_true", help="print the unigram baseline of the old table")
    args = ap.parse_args()
    if args.legacy_unigram:
        print(json.dumps(legacy_unigram(), indent=1))
        return
    if args.smoke and args.publish and args.publish.resolve() == (REPO / "experiments/results").resolve():
        ap.error("--publish experiments/results with --smoke would overwrite the results with a pipeline check")
    out = args.out or REPO / "runs/compare" / (NAME + ("_smoke" if args.smoke else ""))
    spec = read_yaml_strict(SPEC)
    if args.smoke:
        spec = smoke_spec(spec, out)
    t0 = time.perf_counter()
    res = run_compare(spec, out, base_dir=REPO)
    per_seed = {}
    tb, gpt = res["arms"]["tb_k2"]["runs"], res["arms"]["gpt"]["runs"]
    for i, seed in enumerate(s for s in map(str, res["seeds"]) if s in tb and s in gpt):
        print(f"== allocation tb_k2 seed {seed} (reference gpt seed {seed})", flush=True)
        per_seed[int(seed)] = allocation(
            tb[seed]["run_dir"],
            gpt[seed]["run_dir"],
            out / "allocation" / f"tb_k2-seed_{seed}.json",
            args.smoke,
            selection=i == 0,
            ref_name=f"gpt seed {seed}",
        )
    lines = (out / "compare.md").read_text().splitlines() + allocation_md(per_seed)
    report = {"compare": res, "allocation": {s: {**r["summary"], "run_dir": r["run_dir"]} for s, r in per_seed.items()}}
    if args.probes:
        pspec = read_yaml_strict(PROBES)
        if args.smoke:
            pspec = smoke_spec(pspec, out / "probes")
        pres = run_compare(pspec, out / "probes", base_dir=REPO)
        palloc = {}
        ref = gpt.get(str(pres["seeds"][0]))
        for arm, a in pres["arms"].items():
            run = a["runs"].get(str(pres["seeds"][0]))
            if run and ref:
                print(f"== allocation {arm} (reference gpt seed {pres['seeds'][0]})", flush=True)
                palloc[arm] = allocation(
                    run["run_dir"], ref["run_dir"], out / "probes/allocation" / f"{arm}.json", args.smoke, False, "gpt"
                )
        lines += probes_md(pres, palloc)
        report["probes"] = {"compare": pres, "allocation": {k: v["summary"] for k, v in palloc.items()}}
    cmd = "python experiments/thoughtbubbles_vs_gpt.py" + " --smoke" * args.smoke + " --probes" * args.probes
    lines += ["", "## Command", "", f"    {cmd}   # {time.perf_counter() - t0:.0f} s this invocation", ""]
    (out / f"{NAME}.md").write_text("\n".join(lines))
    (out / f"{NAME}.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {out / f'{NAME}.md'} and .json", flush=True)
    if args.publish:
        args.publish.mkdir(parents=True, exist_ok=True)
        text = "\n".join(lines)
        for png in sorted(out.glob("compare_*.png")):
            shutil.copy(png, args.publish / f"{NAME}_{png.name}")
            text = text.replace(f"({png.name})", f"({NAME}_{png.name})")
        (args.publish / f"{NAME}.md").write_text(text)
        (args.publish / f"{NAME}.json").write_text(json.dumps(report, indent=1, default=str))
        print(f"published into {args.publish}", flush=True)


if __name__ == "__main__":
    main()
