"""Interop figures: lm-eval parity (our adapter vs lm-eval's HFLM on the exported model) and HF export round trips.

For a trained run (default runs/demo/gpt) and fresh tiny thoughtbubbles / free_transformer models:
- export -> AutoModelForCausalLM.from_pretrained(trust_remote_code=True): max |logits - ours|, greedy HF generate == ours;
- the same loglikelihood / loglikelihood_rolling requests through LatentLMEvalLM and HFLM: max |difference|, and
  the accuracy of both on the first N items of a shipped multiple-choice task through lm_eval.simple_evaluate.

    python experiments/interop_parity.py [--run runs/demo/gpt] [--limit 100]
Writes experiments/results/interop_parity.md.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.hf.conftest.make_run builds the fresh runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=str(REPO / "runs/demo/gpt"))
    ap.add_argument("--limit", type=int, default=100)
    args = ap.parse_args()

    import lm_eval
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from latentlm import load
    from latentlm.data.corpora import data_root
    from latentlm.eval.choice import prepare_task
    from latentlm.eval.harness import LatentLMEvalLM, render_tasks
    from latentlm.hf.export import export_run

    tmp = Path(tempfile.mkdtemp())
    lines = ["# Interop parity (export round trip, lm-eval adapter vs HFLM)", ""]

    # export round trips
    runs = {"gpt (trained demo run)": Path(args.run)}
    from tests.hf.conftest import make_run

    for name, kw in {
        "thoughtbubbles (fresh)": {"variant": "thoughtbubbles", "budget": 1.5},
        "free_transformer (fresh)": {"variant": "free_transformer", "latent_bits": 6},
    }.items():
        make_run(tmp / name.split()[0], **kw)
        runs[name] = tmp / name.split()[0]
    lines += ["| run | max abs logits difference (HF vs ours) | HF greedy generate == ours |", "|---|---:|---|"]
    for name, run in runs.items():
        model, tok = load(run)
        out = export_run(run, tmp / f"hf_{run.name}")
        hf = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
        ids = torch.randint(1, min(model.vocab_size, 90), (4, 24), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            diff = (hf(input_ids=ids).logits - model.scoring_logits(ids)).abs().max().item()
            same = (
                "n/a (prior Z: HF recompute uses score's Z)"
                if "free" in name
                else str(
                    torch.equal(
                        hf.generate(ids[:, :8], max_new_tokens=16, do_sample=False),
                        model.generate(ids[:, :8], 16, eos_token_id=tok.eos_id),
                    )
                )
            )
        lines.append(f"| {name} | {diff:.2e} | {same} |")

    # lm-eval parity on the trained GPT
    model, tok = load(args.run)
    out = export_run(args.run, tmp / "hf_parity")
    hflm = HFLM(
        pretrained=AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval(),
        tokenizer=AutoTokenizer.from_pretrained(out, trust_remote_code=True),
        batch_size=8,
        max_length=model.config.max_seq_len,
    )
    ours = LatentLMEvalLM(model, tok, batch_size=8)
    pairs = [
        ("ROMEO:\nBut soft, what light", " through yonder window breaks?"),
        ("To be, or not to be,", " that is the question"),
        ("KING HENRY:\n", "Once more unto the breach"),
        ("", "Now is the winter of our discontent"),
    ]
    reqs = [Instance("loglikelihood", {}, p, 0) for p in pairs]
    ll = [abs(a[0] - b[0]) for a, b in zip(ours.loglikelihood(reqs), hflm.loglikelihood(reqs))]
    greedy_same = all(a[1] == b[1] for a, b in zip(ours.loglikelihood(reqs), hflm.loglikelihood(reqs)))
    docs = [
        Instance("loglikelihood_rolling", {}, ("Shall I compare thee to a summer's day? Thou art more lovely.",), 0)
    ]
    roll = abs(ours.loglikelihood_rolling(docs)[0] - hflm.loglikelihood_rolling(docs)[0])
    prepare_task("piqa", data_root())
    include = render_tasks(data_root(), "shakespeare", tmp / "tasks")
    tm = TaskManager(include_path=str(include), include_defaults=False)
    acc = {}
    for name, lm in (("latentlm adapter", ours), ("lm-eval HFLM", hflm)):
        res = lm_eval.simple_evaluate(model=lm, tasks=["latentlm_piqa"], limit=args.limit, task_manager=tm)
        acc[name] = (res["results"]["latentlm_piqa"]["acc,none"], res["results"]["latentlm_piqa"]["acc_norm,none"])
    lines += [
        "",
        f"lm-eval on `{args.run}` (trained demo GPT):",
        "",
        f"- loglikelihood, {len(pairs)} requests: max |ours - HFLM| = {max(ll):.2e}; is_greedy identical: {greedy_same}",
        f"- loglikelihood_rolling: |ours - HFLM| = {roll:.2e}",
        f"- latentlm_piqa (first {args.limit} items) acc / acc_norm: "
        + "; ".join(f"{k} {v[0]:.3f} / {v[1]:.3f}" for k, v in acc.items()),
        "",
    ]
    (REPO / "experiments/results/interop_parity.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
