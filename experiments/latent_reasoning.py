"""Latent thoughts on a word-level tiny Llama trained from scratch: No-CoT, CoT-SFT, pause tokens, Coconut, LT-Tuning
(3 stages), LT-Tuning + adapter and Soft Thinking (training-free, on the CoT model), x 3 seeds, on tasks where a
chain matters.

The grid is a thin spec over the comparison harness (`latentlm.compare.run_compare`), one grid per task in
RUNS/<task>/compare (runs/ARM/seed_N, compare.json, compare.md), budget `none` (each arm its own steps):
    cot_base   a random Llama (--hidden, --layers, --heads; default d_model 128, 4 layers, 4 heads; tied embeddings)
               over the task's own word vocabulary (RUNS/<task>/init/<shape>/seed_N, made before it trains),
               CoT-fine-tuned for --base-steps (default: the task's own, 1,000 for perm; stage 0 of Coconut and of LT-Tuning), with train.seed = N + 100
               (seed_offset: its items are another draw than the methods'); --base-init starts it from an HF folder;
               --base-curriculum (hops) makes it a chain of arms cot_base_phase0 -> ... -> cot_base (init_from)
every method starts from that seed's cot_base (init_from: its base LM exported inside the cot_base run) and trains
--steps more optimizer steps with the shared trainer, train.seed = N:
    cot        more CoT-SFT                        nocot      question -> ### answer
    pause      <latent> x pause_tokens, plain      coconut    stages 1..max then all-latent (c = 1, optimizer reset)
    lt_tuning  stage 2 (hidden) 2/9, stage 3 (fusion, alpha 0.6) 7/9 of the steps (README's [1, 2, 7] epochs)
    lt_tuning_adapter  the same with the Linear-GELU-Linear-LayerNorm adapter
    soft_thinking      eval-only arm: the `cot` run decoding with soft concept tokens and cold stop, no training
    coconut_paper      Coconut on the paper's schedule: 5 epochs of the training set per stage (Coconut's ProsQA
                       config), the all-latent stage as long, whatever --steps says
    lt_tuning_forced   LT-Tuning with threshold 1.01: every response token is an insertion candidate, so <thinking>
                       goes in at up to (6, 8) random points even where the model is sure (the default inserts
                       nothing where the CoT base is confident everywhere)
    soft_thinking_nocold  eval-only: Soft Thinking without the entropy cold stop (only an argmax of ### ends it)
All are evaluated on the same `--test` held-out items (eval.reasoning_test_seed: one fixed set for every seed,
also written to RUNS/<task>/test.jsonl, which every training run excludes through data.reasoning_exclude), greedy,
with the evaluator of latentlm.eval.reasoning; seeds change the initialisation, the training sample and its order,
identically for every method (paired). Finished runs are reused when their config hash matches; a changed setting
(e.g. --steps) is refused by the harness (use another --runs). Statistics from latentlm.eval.stats (wilson,
mean_sd, paired_diff).

    python experiments/latent_reasoning.py --tasks hops --seeds 0 1 2            # train + evaluate
    python experiments/latent_reasoning.py --tasks hops --seeds 0 1 2 --report   # tables from finished runs
    python experiments/latent_reasoning.py --diagnose BASE_HF ...                 # does a CoT base look things up?
Results in experiments/results/latent_reasoning.{md,json} (--results elsewhere for smoke runs). Seeds can run in
parallel processes (one per seed, same --runs); then --report with every seed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(1, str(REPO))  # tests.tiny_llama: the random-init base model

from latentlm.compare import run_compare  # noqa: E402
from latentlm.compare.aggregate import oriented_pairs  # noqa: E402
from latentlm.config import parse_overrides  # noqa: E402
from latentlm.data.reasoning import parse_task, reasoning_examples, word_tokenizer  # noqa: E402
from latentlm.errors import LatentLMError  # noqa: E402
from latentlm.eval.reasoning import evaluate_reasoning, normalise  # noqa: E402
from latentlm.eval.stats import mean_sd, wilson  # noqa: E402

RUNS_DIR = [REPO / "runs" / "latent_reasoning"]
OUT = [REPO / "experiments" / "results"]  # --results changes it
TEST_SEED = 1000

# the tasks: data.reasoning name, Coconut's max_latent_stage (the paper: 6 for ProsQA/ProntoQA), max_seq_len
TASKS = {
    "perm": {"data": "perm", "max_stage": 5, "max_seq_len": 48},
    # every other state written: each of the 3 steps composes 2 operations, which the CoT base learns only partly
    "perm2": {"data": "perm:k=6,stride=2", "max_stage": 3, "max_seq_len": 48, "base_steps": 3000},
    "hops": {"data": "hops", "max_stage": 5, "max_seq_len": 160},
    "prosqa": {"data": "prosqa", "max_stage": 6, "max_seq_len": 384},  # paper shape: prompts up to ~290 tokens
    "prontoqa": {"data": "prontoqa:hops=5", "max_stage": 6, "max_seq_len": 256},
}
# the grid: method -> (model.method, extra overrides); soft_thinking is the eval-only arm over the cot run
GRID = {
    "cot": ("cot", {}),
    "nocot": ("nocot", {}),
    "pause": ("pause", {"model.pause_tokens": 6}),
    "coconut": ("coconut", {"model.c_thought": 1}),
    "lt_tuning": ("lt_tuning", {}),
    "lt_tuning_adapter": ("lt_tuning", {"model.adapter": True, "model.adapter_hidden": 256}),
    "soft_thinking": None,
    "coconut_paper": ("coconut", {"model.c_thought": 1}),
    "lt_tuning_forced": ("lt_tuning", {"model.lt_threshold": [1.01, 1.01]}),
    "soft_thinking_nocold": None,
}
EVAL_ONLY = {  # the eval-only arms: the cot run decoded otherwise
    "soft_thinking": {"from": "cot", "eval_overrides": {"model.latent_embedding": "soft"}, "eval": {"policy": "cold_stop"}},
    "soft_thinking_nocold": {"from": "cot", "eval_overrides": {"model.latent_embedding": "soft", "model.cold_stop_entropy": 0.0},
                             "eval": {"policy": "cold_stop"}},
}  # fmt: skip
PAPER_EPOCHS_PER_STAGE = 5  # Coconut's ProsQA / ProntoQA config (epochs_per_stage 5, c_thought 1)
MODEL = dict(hidden=128, layers=4, heads=4, kv_heads=4)  # --hidden / --layers / --heads override it
CONFIG = REPO / "configs" / "latent_thoughts" / "cot.yaml"  # every setting it has is overridden below
BASE_SEED_OFFSET = 100  # cot_base of seed N trains on the draw N + 100 (+ phase), the methods on N


BATCH = [32]


def shown(path) -> str:
    """A path as the results files print it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def common(task: dict, steps: int, n_train: int, lr: float, data: str | None = None) -> dict:
    """The overrides every run of a task shares (the harness sets out_dir, resume=false and train.seed)."""
    return {
        "model.variant": "latent_thoughts",
        "model.max_seq_len": task["max_seq_len"],
        "data.reasoning": data or task["data"],
        "data.tokenizer": "model",
        "data.reasoning_examples": n_train,
        "data.reasoning_exclude": test_file(task),  # no test question is ever trained on
        "data.seq_len": 8,
        "train.max_steps": steps,
        "train.ckpt_every": steps,
        "train.keep_checkpoints": 1,
        "train.batch_size": BATCH[0],
        "train.lr": lr,
        "train.warmup_steps": 20,
        "train.weight_decay": 0.01,
        "train.reset_optimizer_on_phase": True,
        "eval.every": 0,
        "log.every": 20,
        "log.progress": False,
        "log.tensorboard": False,
    }


def method_steps(name: str, task: dict, args) -> int:
    """A method's optimizer steps: --steps, or for coconut_paper 5 epochs per stage over stages 1..max and the
    all-latent stage."""
    return (task["max_stage"] + 1) * paper_stage_steps(args) if name == "coconut_paper" else args.steps


def paper_stage_steps(args) -> int:
    return max(1, round(PAPER_EPOCHS_PER_STAGE * args.train / args.batch))


def method_overrides(name: str, task: dict, steps: int, args=None) -> dict:
    method, extra = GRID[name]
    over = {"model.method": method, **extra}
    if method == "coconut":
        m = task["max_stage"]
        per = paper_stage_steps(args) if name == "coconut_paper" else max(1, steps // (m + 2))
        # stages 1..max, then the all-latent stage gets the rest
        over.update({"model.max_latent_stage": m, "model.stage_steps": [0, *[per] * m, steps - m * per]})
    if method == "lt_tuning":
        s2 = max(1, round(steps * 2 / 9))
        over["model.stage_steps"] = [0, s2, steps - s2]
    return over


def evaluate(model, tok, test, policy=None) -> dict:
    t0 = time.perf_counter()
    res = evaluate_reasoning(model, tok, test, batch_size=100, policy=policy, keep=8)
    res["eval_s"] = time.perf_counter() - t0
    return res


def init_dir(name: str, args) -> Path:
    """The random-init Llama of each seed (its shape and vocabulary sample in the name, so another shape is another
    folder, hence another config hash for cot_base); "{seed}" is filled in by the harness."""
    shape = f"d{MODEL['hidden']}_l{MODEL['layers']}_h{MODEL['heads']}_n{args.train}_t{args.test}"
    return RUNS_DIR[0] / name / "init" / shape / "seed_{seed}"


def make_inits(name: str, seeds, args) -> None:
    """Before cot_base trains: one random tiny Llama per seed over the task's words (tests/tiny_llama.py)."""
    from tests.tiny_llama import save_tiny_llama

    task = TASKS[name]
    for seed in seeds:
        d = Path(str(init_dir(name, args)).replace("{seed}", str(seed)))
        if (d / "config.json").is_file() and (d / "tokenizer.json").is_file():
            continue
        train_ex = reasoning_examples(task["data"], "train", args.train, seed)
        tok = word_tokenizer(train_ex + test_set(name, args.test) + vocab_pool(name))
        tmp = d.with_name(d.name + ".tmp")
        save_tiny_llama(tmp, tok, seed=seed, max_position_embeddings=task["max_seq_len"], tie_word_embeddings=True,
                        **MODEL)  # fmt: skip
        tmp.rename(d)


def base_arms(name: str, args) -> dict:
    """cot_base, or the chain of --base-curriculum phases ending in cot_base (each phase starts from the previous)."""
    task, arms = TASKS[name], {}
    phases = base_phases(name, args)
    extra = parse_overrides(args.base_override) if args.base_override else {}
    prev = None
    for p, (data, steps) in enumerate(phases):
        arm = "cot_base" if p == len(phases) - 1 else f"cot_base_phase{p}"
        n = args.base_train or steps * args.batch  # fresh items: each seen about once, nothing memorised
        over = common(task, steps, n, args.base_lr or args.lr, data)
        over.update({"model.method": "cot", "train.warmup_steps": min(200, steps // 10), **extra})
        spec = {"config": str(CONFIG), "overrides": over, "seed_offset": BASE_SEED_OFFSET + p}
        if arm != "cot_base":
            spec["eval"] = {"reasoning": False}  # an intermediate phase: only the finished base is scored
        if prev is None:
            over["model.base_model"] = (
                str(Path(args.base_init).resolve()) if args.base_init else str(init_dir(name, args))
            )
        else:
            spec["init_from"] = prev
        arms[arm], prev = spec, arm
    return arms


def grid_spec(name: str, args) -> dict:
    """The task's grid for run_compare: the CoT base arm(s), then every method from that seed's cot_base."""
    task = TASKS[name]
    test_set(name, args.test)  # written before any run trains: the runs exclude it
    arms = base_arms(name, args)
    for m in args.methods:
        if m in EVAL_ONLY:
            arms[m] = EVAL_ONLY[m]
            continue
        steps = method_steps(m, task, args)
        over = {**common(task, steps, args.train, args.lr), **method_overrides(m, task, steps, args)}
        arms[m] = {"config": str(CONFIG), "init_from": "cot_base", "overrides": over}
    return {
        "name": f"latent_reasoning_{name}",
        "title": f"Latent reasoning on {name}: a tiny Llama from scratch, every method from its seed's CoT base",
        "seeds": list(args.seeds),
        "budget": "none",
        "arms": arms,
        "baseline": "cot" if "cot" in arms else "cot_base",
        "eval": {
            "val_batches": 1,
            "leak": False,
            "reasoning": task["data"],
            "reasoning_limit": args.test,
            "reasoning_test_seed": TEST_SEED,
            "reasoning_batch": 100,
        },  # fmt: skip
    }


def grid_dir(name: str) -> Path:
    return RUNS_DIR[0] / name / "compare"


def run_task(name: str, args) -> dict:
    spec = grid_spec(name, args)
    make_inits(name, args.seeds, args)
    res = run_compare(spec, grid_dir(name))
    for arm, a in res["arms"].items():
        for seed, run in a["runs"].items():
            log(name, seed, arm, {**run["metrics"]["reasoning"], "train_s": (run["train"] or {}).get("wall_s")})
    return res


def base_steps(name: str, args) -> int:
    return args.base_steps or TASKS[name].get("base_steps", 1000)


def base_phases(name: str, args) -> list[tuple[str, int]]:
    """The CoT base's training phases [(data.reasoning, steps)]: `--base-curriculum 2:1500 5:4500` trains hops with
    1..2 hops for 1,500 steps, then 1..5 for 4,500 (hops only); `drill:N` is N steps of the look-up drill
    (data/hops_drill.py); `hops:chains=1,min_hops=1:600` any hops shape; without it, the task itself for
    --base-steps."""
    if not args.base_curriculum:
        return [(TASKS[name]["data"], base_steps(name, args))]
    if TASKS[name]["data"] != "hops":
        raise LatentLMError(f"--base-curriculum is for the hops task only (got {name})")
    out = []
    for item in args.base_curriculum:
        k, _, steps = item.rpartition(":")
        if k.startswith("hops:") and steps.isdigit():  # any hops shape, e.g. hops:chains=1,min_hops=1:600
            parse_task(k)  # an unknown option is an error here, not after the earlier phases trained
            out.append((k, int(steps)))
            continue
        if k == "drill" and steps.isdigit():  # look-up drill (data/hops_drill.py) as a jsonl file, fresh items
            from latentlm.data.hops_drill import write_drill

            path = RUNS_DIR[0] / name / f"drill_{len(out)}.jsonl"
            out.append((str(write_drill(path, int(steps) * args.batch * 10 // 9 + 100, 5000 + len(out))), int(steps)))
            continue
        if not (k.isdigit() and steps.isdigit() and 1 <= int(k) <= 5):
            raise LatentLMError(f"--base-curriculum: expected MAX_HOPS:STEPS with MAX_HOPS in 1..5, got {item!r}")
        out.append((f"hops:min_hops=1,max_hops={k}", int(steps)))
    return out


def lookup_diagnostic(base: Path, test) -> dict:
    """Teacher-forced next-token accuracy of a CoT base on hops items, by target kind: `lookup` (y of a step
    `x > y`: find the fact whose head is x, copy its tail), `copy` (x of a step: the start node or the previous y),
    `answer` (the node after ###), `format` (>, newlines, ###, end of text). Chance for a look-up is about 1/18."""
    from latentlm.data.tokenizer import Tokenizer
    from latentlm.models.latent_thoughts import Config, Model
    from latentlm.models.latent_thoughts.curriculum import encode_parts

    tok = Tokenizer.load(base)
    model = Model(Config(base_model=str(base), method="cot", max_seq_len=TASKS["hops"]["max_seq_len"])).eval()
    hits = {k: [0, 0] for k in ("lookup", "copy", "answer", "format")}
    with torch.no_grad():
        for ex in test:
            q, steps, ans = encode_parts(ex, tok)
            ids = q + [t for s in steps for t in s] + ans
            pred = model(torch.tensor([ids])).logits[0].argmax(-1).tolist()
            kinds = [k for _ in steps for k in ("copy", "format", "lookup", "format")] + ["format", "answer", "format"]
            for j, kind in enumerate(kinds):
                t = len(q) + j
                hits[kind][0] += int(pred[t - 1] == ids[t])
                hits[kind][1] += 1
    return {k: {"acc": a / n, "ci95": list(wilson(a, n)), "n": n} for k, (a, n) in hits.items()}


def diagnose(bases: list[str], args) -> None:
    """--diagnose: greedy test accuracy and teacher-forced accuracy by target kind of each CoT base (hops)."""
    from latentlm.data.tokenizer import Tokenizer
    from latentlm.models.latent_thoughts import Config, Model

    test, out = test_set("hops", args.test), {}
    for b in bases:
        model = Model(Config(base_model=b, method="cot", max_seq_len=TASKS["hops"]["max_seq_len"]))
        res = evaluate(model, Tokenizer.load(b), test)
        out[b] = {"greedy_acc": res["accuracy"], "greedy_ci95": list(res["accuracy_ci95"]), "n_test": res["n"],
                  "teacher_forced": lookup_diagnostic(Path(b), test[:200]), "samples": res["samples"][:3]}  # fmt: skip
        print(json.dumps({"base": b, **{k: v for k, v in out[b].items() if k != "samples"}}), flush=True)
    OUT[0].mkdir(parents=True, exist_ok=True)
    (OUT[0] / "latent_reasoning_base.json").write_text(json.dumps(out, indent=1))


def log(name, seed, method, res):
    keep = ("accuracy", "generated_tokens", "latent_steps", "terminated_frac", "train_s")
    print(json.dumps({"task": name, "seed": seed, "method": method, **{k: res.get(k) for k in keep}}), flush=True)


def test_set(name: str, n: int):
    """The held-out items, the same for every seed and method; also written to RUNS/<task>/test.jsonl, which every
    training run excludes (data.reasoning_exclude), so no test question is trained on (perm has only 5^6 questions)."""
    test = reasoning_examples(TASKS[name]["data"], "test", n, TEST_SEED)[:n]
    path = RUNS_DIR[0] / name / "test.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(json.dumps({"question": e.question, "steps": e.steps, "answer": e.answer}) + "\n" for e in test)
    if not path.is_file() or path.read_text() != rows:
        path.write_text(rows)
    TASKS[name]["test_file"] = str(path)
    return test


def test_file(task: dict) -> str:
    if "test_file" not in task:
        raise LatentLMError("the test set is written (test_set) before any run trains")
    return task["test_file"]


def vocab_pool(name: str):
    """Extra examples so that the vocabulary holds every symbol the generator can use (same for every seed)."""
    return reasoning_examples(TASKS[name]["data"], "val", 2000, 4242)


# --- report ---------------------------------------------------------------------------------------------------------


def trivial(name: str, test, n_train: int) -> dict:
    """first_option: always answer the first offered option (choice tasks); majority: the training set's most
    frequent option position / label / answer, applied to every test item."""
    base, _ = parse_task(TASKS[name]["data"])
    train = reasoning_examples(TASKS[name]["data"], "train", n_train, 0)
    if base == "prosqa":

        def first(ex):
            return ex.question.rsplit(" Is ", 1)[1].split(" a ", 1)[1].split(" or ")[0]

        gold_first = [normalise(ex.answer).endswith(f" {first(ex)}.") for ex in test]
        fo = sum(gold_first) / len(test)
        maj_first = sum(normalise(ex.answer).endswith(f" {first(ex)}.") for ex in train) >= len(train) / 2
        return {"first_option": fo, "majority": fo if maj_first else 1 - fo}
    if base == "prontoqa":
        fo = sum(ex.answer == "True" for ex in test) / len(test)  # "True or false": True is offered first
        top = Counter(ex.answer for ex in train).most_common(1)[0][0]
        return {"first_option": fo, "majority": sum(ex.answer == top for ex in test) / len(test)}
    top = Counter(ex.answer for ex in train).most_common(1)[0][0]
    return {"first_option": None, "majority": sum(ex.answer == top for ex in test) / len(test)}


ORDER = ["nocot", "pause", "cot", "coconut", "coconut_paper", "lt_tuning", "lt_tuning_adapter", "lt_tuning_forced",
         "soft_thinking", "soft_thinking_nocold"]  # fmt: skip
PAIRS = [
    ("cot", "nocot"),
    ("coconut", "cot"),
    ("lt_tuning", "coconut"),
    ("lt_tuning", "soft_thinking"),
    ("lt_tuning_adapter", "lt_tuning"),
    ("coconut", "nocot"),
    ("pause", "nocot"),
    ("soft_thinking", "cot"),
    ("coconut_paper", "cot"),
    ("coconut_paper", "coconut"),
    ("lt_tuning", "coconut_paper"),
    ("lt_tuning_forced", "cot"),
    ("lt_tuning_forced", "coconut_paper"),
    ("soft_thinking_nocold", "cot"),
    ("soft_thinking_nocold", "soft_thinking"),
]


def collect(name: str, args) -> dict | None:
    """The harness's aggregate of the task's grid (compare.json, rewritten from the run records), or None."""
    if not (grid_dir(name) / "grid.json").is_file():
        return None
    try:
        return run_compare(grid_spec(name, args), grid_dir(name), aggregate_only=True, log=lambda *a: None)
    except LatentLMError as e:
        if "holds no finished run" in str(e):
            return None
        raise


def method_row(arm: str, runs: dict, chain: list[dict]) -> dict:
    """One method's row from the harness's run records (seed -> run): the study's columns."""
    ss = sorted(runs, key=int)
    rs = {s: runs[s]["metrics"]["reasoning"] for s in ss}
    acc = [rs[s]["accuracy"] for s in ss]

    def mean(k):
        return sum(rs[s][k] or 0 for s in ss) / len(ss)

    lt = arm in GRID and GRID[arm] is not None and GRID[arm][0] == "lt_tuning"
    inserted = [thinking_in_training(Path(runs[s]["run_dir"])) for s in ss] if lt else []
    train_s = [sum((c.get(s, {}).get("train") or {}).get("wall_s") or 0 for c in chain) for s in ss]
    return {
        "seeds": [int(s) for s in ss],
        "acc": acc,
        "acc_mean": sum(acc) / len(acc),
        "acc_sd": mean_sd(acc)[1] if len(acc) > 1 else None,
        "acc_ci95_pooled": list(wilson(sum(sum(rs[s]["correct"]) for s in ss), sum(rs[s]["n"] for s in ss))),
        "gen_tokens_mean": mean("generated_tokens"),
        "latent_steps_mean": mean("latent_steps"),
        "terminated_frac": mean("terminated_frac"),
        "own_chance": _mean([rs[s].get("own_chance") for s in ss]),
        "latent_norm_ratio": _mean([rs[s]["latent_norm_ratio"] for s in ss]),
        "successive_latent_cosine": _mean([rs[s]["successive_latent_cosine"] for s in ss]),
        "thinking_in_training": _mean(inserted) if lt else None,
        "train_s_mean": sum(train_s) / len(train_s),
        "max_new_tokens": rs[ss[0]]["max_new_tokens"],
        "runs": {s: shown(Path(runs[s]["run_dir"])) for s in ss},
    }


def thinking_in_training(run_dir: Path) -> float | None:
    """Mean <thinking> tokens inserted per training example in LT-Tuning's last stage: the insertion points its
    curriculum chose, saved with the data position in the final checkpoint's trainer_state.json (0 when the model
    was confident everywhere; the latents_per_row training metric exists only for batches that hold a latent)."""
    state_file = (run_dir / "checkpoints" / "latest").resolve() / "trainer_state.json"
    if not state_file.is_file():
        return None
    data = json.loads(state_file.read_text()).get("data", {})
    ins = data.get("insertions")
    if data.get("insertion_stage") != 2 or not ins:
        return None
    return sum(c for points in ins.values() for _, c in points) / len(ins)


def paired_rows(res: dict) -> list[dict]:
    """PAIRS (a − b) of reasoning accuracy from the harness's paired table, over >= 2 matched seeds."""
    return oriented_pairs(res["paired"], PAIRS, "reasoning_acc")


def report(names, seeds, args) -> None:
    js, md = {"tasks": {}}, []
    for name in names:
        res = collect(name, args)
        if res is None:
            continue
        test = test_set(name, args.test)
        triv = trivial(name, test, args.train)
        base_chain = [a for a in res["arms"] if a.startswith("cot_base")]
        methods, runs = {}, {}
        for m in ["cot_base", *ORDER]:
            arm = res["arms"].get(m)
            if not arm or not arm["runs"]:
                continue
            chain = [res["arms"][a]["runs"] for a in base_chain] if m == "cot_base" else [arm["runs"]]
            methods[m] = method_row(m, arm["runs"], chain)
            runs[m] = {int(s): r["metrics"]["reasoning"] for s, r in arm["runs"].items()}
        js["tasks"][name] = {"n_test": len(test), "trivial": triv, "methods": methods, "paired": paired_rows(res),
                             "grid": shown(grid_dir(name))}  # fmt: skip
        md += table(name, js["tasks"][name], runs)
    OUT[0].mkdir(parents=True, exist_ok=True)
    js["setup"] = {"model": MODEL, "base_steps": {n: base_steps(n, args) for n in js["tasks"]}, "steps": args.steps, "n_train": args.train,
                   "lr": args.lr, "batch": args.batch, "base_seed_offset": BASE_SEED_OFFSET,
                   "command": " ".join(sys.argv)}  # fmt: skip
    (OUT[0] / "latent_reasoning_details.json").write_text(json.dumps(js, indent=1, default=float))
    keep = ("seeds", "acc", "acc_mean", "gen_tokens_mean", "latent_steps_mean", "terminated_frac")
    exact = {  # the schema of issue 15, nothing more; everything else is in latent_reasoning_details.json
        "tasks": {
            name: {
                "n_test": t["n_test"],
                "trivial": t["trivial"],
                "methods": {m: {k: r[k] for k in keep} for m, r in t["methods"].items()},
                "paired": [{k: p[k] for k in ("a", "b", "mean_diff", "ci95")} for p in t["paired"]],
            }
            for name, t in js["tasks"].items()
        }
    }
    (OUT[0] / "latent_reasoning.json").write_text(json.dumps(exact, indent=1, default=float))
    head = (
        (OUT[0] / "latent_reasoning_notes.md").read_text() if (OUT[0] / "latent_reasoning_notes.md").is_file() else ""
    )
    (OUT[0] / "latent_reasoning.md").write_text(head + "\n".join(md) + "\n")


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def f(x, spec="{:.3f}"):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else spec.format(x)


def table(name, t, runs):
    triv = t["trivial"]
    lines = [
        f"## {name} (n_test = {t['n_test']} per seed)",
        "",
        f"Trivial baselines: first option {f(triv['first_option'])} (– where the task offers no options), majority "
        f"{f(triv['majority'])} (the training set's most frequent answer, on the test set). *Own chance* is each "
        "method's chance level from its own answers: sum over answers a of P_predicted(a) x P_gold(a).",
        "",
        "| method | acc per seed | mean ± SD | pooled Wilson 95 % | own chance | gen. tokens | latent steps "
        "| <thinking> in training | terminated | latent/emb norm | cos(successive) | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m, r in t["methods"].items():
        lo, hi = r["acc_ci95_pooled"]
        lines.append(
            f"| {m} | {', '.join(f(a) for a in r['acc'])} | {f(r['acc_mean'])} ± {f(r['acc_sd'])} | "
            f"[{lo:.3f}, {hi:.3f}] | {f(r['own_chance'])} | {f(r['gen_tokens_mean'], '{:.1f}')} | {f(r['latent_steps_mean'], '{:.2f}')} | "
            f"{f(r['thinking_in_training'], '{:.2f}')} | {f(r['terminated_frac'])} | {f(r['latent_norm_ratio'], '{:.2f}')} | "
            f"{f(r['successive_latent_cosine'], '{:.2f}')} | {f(r['train_s_mean'], '{:.0f}')} |"
        )
    lines += ["", "Paired differences over seeds (a − b, mean and 95 % paired-t CI):", "",
              "| a | b | mean diff | 95 % CI | CI excludes 0 |", "|---|---|---:|---:|---|"]  # fmt: skip
    for p in t["paired"]:
        lines.append(
            f"| {p['a']} | {p['b']} | {p['mean_diff']:+.3f} | [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}] | "
            f"{'yes' if p['significant'] else 'no'} |"
        )
    lines += ["", "Samples (seed 0, first test items):", ""]
    for m in t["methods"]:
        per = runs[m]
        s0 = per[min(per)]
        for smp in s0["samples"][:2]:
            text = " ".join(smp["generated"][:150].replace("\n", "/").split())
            lines.append(f"- {m}: `{text}` → `{smp['predicted']}` (gold `{smp['gold']}`)")
    return lines + [""]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["perm"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=[m for m in GRID])
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--base-steps", type=int, default=None, help="the CoT base's steps (default: the task's own)")
    ap.add_argument("--steps", type=int, default=450)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--base-lr", type=float, default=None, help="the CoT base's lr (default --lr)")
    ap.add_argument("--base-train", type=int, default=None, help="items per base phase (default steps x batch)")
    ap.add_argument(
        "--base-curriculum", nargs="*", default=None, help="hops: MAX_HOPS:STEPS phases, e.g. 2:1500 5:4500"
    )
    ap.add_argument("--base-init", default=None, help="start the CoT base from this HF folder, not a random init")
    ap.add_argument("--base-override", action="append", default=[], help="an extra override of the base runs (repeat)")
    ap.add_argument("--base-only", action="store_true", help="train and evaluate the CoT base, no methods")
    ap.add_argument("--hidden", type=int, default=MODEL["hidden"], help="the tiny Llama's d_model")
    ap.add_argument("--layers", type=int, default=MODEL["layers"])
    ap.add_argument("--heads", type=int, default=MODEL["heads"], help="attention heads (= kv heads)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", default=str(RUNS_DIR[0]), help="where the runs go (RUNS/<task>/compare: the grid)")
    ap.add_argument("--results", default=str(OUT[0]), help="where the tables go (e.g. elsewhere for timing runs)")
    ap.add_argument("--diagnose", nargs="+", default=None, help="CoT base HF folders: look-up diagnostics (hops)")
    ap.add_argument("--report", action="store_true", help="only write the tables from finished runs")
    args = ap.parse_args()
    try:
        for t in args.tasks:
            if t not in TASKS:
                raise LatentLMError(f"unknown task {t!r}; known: {', '.join(TASKS)}")
        for m in args.methods:
            if m not in GRID:
                raise LatentLMError(f"unknown method {m!r}; known: {', '.join(GRID)}")
        for m in EVAL_ONLY:
            if m in args.methods and "cot" not in args.methods:
                raise LatentLMError(f"{m} decodes the cot run (no training of its own): add cot to --methods")
        torch.set_num_threads(1)
        RUNS_DIR[0] = Path(args.runs)
        OUT[0] = Path(args.results)
        BATCH[0] = args.batch
        MODEL.update(hidden=args.hidden, layers=args.layers, heads=args.heads, kv_heads=args.heads)
        if args.base_only:
            args.methods = []
        if args.diagnose:
            return diagnose(args.diagnose, args)
        if not args.report:
            for name in args.tasks:
                run_task(name, args)
        if not args.base_only:
            report(args.tasks, args.seeds, args)
    except LatentLMError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
