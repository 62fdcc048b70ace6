"""`latentlm demo` (`make demo`): train the tiny models of DEMO_RUNS on the embedded corpus, evaluate them
through the same evaluator (held-out bits per byte and the causality probe), and write
runs/demo/{summary.md, loss_curves.png}.

Adding a model to the comparison is one line in DEMO_RUNS: (name, config path relative to the repo).
"""

from __future__ import annotations

import time
from pathlib import Path

from latentlm.config import load_config
from latentlm.results import merge_results
from latentlm.shipped import configs_dir

REPO = configs_dir().parent  # configs/ ships inside the package: a checkout and an installed wheel alike
DEMO_RUNS = [
    ("gpt", "configs/gpt/tiny.yaml"),
    ("free_transformer", "configs/free_transformer/tiny.yaml"),
    ("thoughtbubbles", "configs/thoughtbubbles/tiny.yaml"),
]
SAMPLE_PROMPT = "ROMEO:\n"


def run_demo(out_root: str | Path = "runs/demo", only: list[str] | None = None) -> Path:
    from latentlm.eval.leak import measure_leak_on_run
    from latentlm.eval.perplexity import evaluate
    from latentlm.eval.report import build_report
    from latentlm.nn import SamplingConfig
    from latentlm.train.checkpoint import load_run
    from latentlm.train.trainer import train
    from latentlm.viz.plots import loss_curves

    out_root = Path(out_root)
    rows, runs = [], {}
    for name, config in DEMO_RUNS:
        if only and name not in only:
            continue
        run_dir = out_root / name
        cfg = load_config(REPO / config, [f"--train.out_dir={run_dir}", "--train.resume=auto"])
        print(f"== demo: training {name} ({config}) -> {run_dir}", flush=True)
        t0 = time.perf_counter()
        summary = train(cfg)
        wall = time.perf_counter() - t0
        model, tok = load_run(run_dir)
        val = evaluate(model, tok, cfg, "val")  # the full validation split, same for every run
        merge_results(run_dir, "val", val)
        merge_results(run_dir, "leak", measure_leak_on_run(model, tok, cfg))  # the table's leak column
        runs[name] = run_dir
        rows.append((name, summary, val, wall))
    loss_curves(runs, out_root / "loss_curves.png", "demo: tiny models on Shakespeare")
    report = build_report(
        list(runs.values()), out_root, "latentlm demo: tiny models on the embedded Shakespeare corpus"
    )

    first = rows[0][0]
    model, tok = load_run(out_root / first)
    ids = model.generate(_ids(tok, SAMPLE_PROMPT), 120, SamplingConfig(temperature=0.8, top_k=50, seed=0))
    sample = tok.decode(ids[0].tolist())
    walls = ", ".join(f"{name} {wall:.0f} s" for name, _, _, wall in rows)
    text = "\n".join(
        [
            report.read_text().rstrip(),
            "",
            f"Wall time per run (train + eval): {walls}.",
            "",
            "![loss curves](loss_curves.png)",
            "",
            f"Sample from `{first}` (temperature 0.8, top-k 50, seed 0):",
            "",
            "```",
            sample,
            "```",
            "",
        ]
    )
    (out_root / "summary.md").write_text(text)
    print(text)
    return out_root


def _ids(tok, text):
    import torch

    return torch.tensor([tok.encode(text)])
