"""`latentlm demo` (`make demo`): the spec configs/compare/demo.yaml run through the comparison harness
(latentlm.compare): the tiny GPT, Free Transformer and Thoughtbubbles trained on the embedded corpus at the same
training tokens, scored by the same evaluator (held-out bits per byte, the causality probe), one seed, then
runs/demo/summary.md = the harness's compare.md (labelled one seed) + wall times + a sample.

Adding a model to the demo is one arm in configs/compare/demo.yaml. `--only NAME...` trains only those arms; the
summary still lists every arm that has a finished run.
"""

from __future__ import annotations

from pathlib import Path

from latentlm.shipped import configs_dir

DEMO_SPEC = configs_dir() / "compare" / "demo.yaml"  # configs/ ships inside the package: a checkout and a wheel alike
SAMPLE_PROMPT = "ROMEO:\n"


def run_demo(out_root: str | Path = "runs/demo", only: list[str] | None = None, spec: str | Path = DEMO_SPEC) -> Path:
    from latentlm.compare import run_compare
    from latentlm.nn import SamplingConfig
    from latentlm.train.checkpoint import load_run

    out_root = Path(out_root)
    res = run_compare(spec, out_root, arms=only or None)
    walls = []
    first_run = None
    for name, arm in res["arms"].items():
        for seed, run in arm["runs"].items():
            first_run = first_run or (name, seed, Path(run["run_dir"]))
            train_s = (run.get("train") or {}).get("wall_s")
            walls.append(f"{name} {train_s:.0f} s" if train_s is not None else f"{name} -")
    lines = [(out_root / "compare.md").read_text().rstrip(), ""]
    if walls:
        lines += [f"Training wall time per run (when it was trained): {', '.join(walls)}.", ""]
    if first_run is not None:
        name, seed, run_dir = first_run
        model, tok = load_run(run_dir)
        prompt = _ids(tok, SAMPLE_PROMPT)
        new = max(1, min(120, model.config.max_seq_len - prompt.shape[1]))
        ids = model.generate(prompt, new, SamplingConfig(temperature=0.8, top_k=50, seed=0))
        lines += [
            f"Sample from `{name}` seed {seed} (temperature 0.8, top-k 50, seed 0):",
            "",
            "```",
            tok.decode(ids[0].tolist()),
            "```",
            "",
        ]
    text = "\n".join(lines)
    (out_root / "summary.md").write_text(text)
    print(text)
    return out_root


def _ids(tok, text):
    import torch

    return torch.tensor([tok.encode(text)])
