"""latentlm command line: thin verbs over library calls (everything here is also callable from Python).

latentlm train CONFIG [--train.lr=3e-4 ...]        one trainer for every variant (torchrun for DDP)
latentlm eval RUN_DIR [--corpus NAME]              held-out loss / perplexity / bits per byte
latentlm generate RUN_DIR --prompt TEXT            KV-cached sampling, streamed
latentlm export RUN_DIR OUT_DIR                    HF folder loadable with trust_remote_code
latentlm report RUN_DIR... [--out DIR]             comparison table and charts across runs
latentlm config VARIANT                            commented default YAML of a variant
latentlm data prepare NAME|PATH                    prepare a corpus (or task data) offline
latentlm demo                                      train, evaluate and compare the tiny models
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys

from latentlm.errors import InputError, LatentLMError


def cmd_train(args, extra: list[str]) -> int:
    from latentlm.config import load_config
    from latentlm.train.trainer import train

    summary = train(load_config(args.config, extra))
    print(json.dumps({k: summary[k] for k in ("steps", "tokens_seen", "tokens_per_s", "final_train_loss")}))
    return 0


def cmd_eval(args, extra: list[str]) -> int:
    from latentlm import load
    from latentlm.results import merge_results

    model, tok = load(args.run_dir)
    cfg = model.run_config
    if args.score_mode is not None:  # thoughtbubbles: score each position from its own prefix (no leak)
        if not hasattr(model.config, "score_mode"):
            raise InputError(f"--score-mode applies to thoughtbubbles runs; {args.run_dir} is {model.config.variant}")
        model.config.score_mode = args.score_mode
    specific = [
        args.leak,
        args.bubbles is not None,
        args.choice is not None,
        args.tasks is not None,
        args.reasoning is not None,
        args.allocation,
    ]
    if args.val or not any(specific):
        from latentlm.eval.perplexity import evaluate

        res = evaluate(model, tok, cfg, args.split, corpus=args.corpus, max_batches=args.max_batches)
        key = args.split if args.corpus in (None, cfg.data.corpus) else f"{args.split}:{args.corpus}"
        merge_results(args.run_dir, key, res)
        print(
            f"{res['corpus']} {args.split}: loss {res['loss']:.4f}  ppl {res['ppl']:.2f}  "
            f"bits/byte {res['bits_per_byte']:.4f}  ({res['tokens']} tokens; {res['note']})"
        )
    if args.choice is not None:
        from latentlm.data.corpora import data_root
        from latentlm.eval.choice import evaluate_choice

        for task in args.choice.split(","):
            res = evaluate_choice(model, tok, task, data_root(), limit=args.limit)
            merge_results(args.run_dir, f"choice:{task}", res)
            lo, hi = res["acc_norm_ci95"]
            print(
                f"{task}: acc {res['acc']:.3f}  acc_norm {res['acc_norm']:.3f} [95% CI {lo:.3f}-{hi:.3f}]  "
                f"(n={res['n']}, chance {res['chance']:.3f})"
            )
    if args.tasks is not None:
        try:
            from latentlm.eval.harness import run_tasks
        except ImportError:
            raise InputError("--tasks needs lm-eval: pip install 'latentlm[eval]' (make setup installs it)") from None
        res = run_tasks(model, tok, cfg, args.tasks.split(","), args.run_dir, limit=args.limit)
        merge_results(args.run_dir, "lm_eval", res)
        for task, metrics in res["results"].items():
            shown = {
                k.split(",")[0]: round(v, 4) for k, v in metrics.items() if isinstance(v, float) and "stderr" not in k
            }
            print(f"{task}: {shown}")
    if args.reasoning is not None:
        from latentlm.eval.reasoning import evaluate_run

        res = evaluate_run(model, tok, cfg, args.reasoning or None, args.limit, policy=args.policy)
        merge_results(args.run_dir, f"reasoning:{res['data']}", res)
        lo, hi = res["accuracy_ci95"]
        print(
            f"{res['data']}: accuracy {res['accuracy']:.3f} [95% CI {lo:.3f}-{hi:.3f}] (n={res['n']}), "
            f"{res['generated_tokens']:.1f} generated tokens, {res['latent_steps']:.1f} latent steps"
        )
    if args.leak:
        from latentlm.eval.leak import measure_leak_on_run

        res = measure_leak_on_run(model, tok, cfg)
        merge_results(args.run_dir, "leak", res)
        print(
            f"leak: max |d log p| at positions <= t when tokens after t change: {res['max_abs_dlogp']:.3g} "
            f"(mean {res['mean_abs_dlogp']:.3g}; {res['note']})"
        )
    if args.allocation:
        from latentlm.eval.allocation import allocation_analysis, print_summary

        ref, ref_tok = load(args.reference) if args.reference else (None, None)
        res = allocation_analysis(model, tok, cfg, ref, ref_tok, args.max_batches, reference_name=args.reference)
        merge_results(args.run_dir, "allocation", res)
        print_summary(res)
    if args.bubbles is not None:
        from pathlib import Path

        from latentlm.results import read_results
        from latentlm.viz.bubbles import bubble_map

        alloc = read_results(args.run_dir).get("allocation", {}).get("summary")
        res = bubble_map(model, tok, args.bubbles, Path(args.run_dir) / "bubbles", alloc)
        merge_results(args.run_dir, "bubbles", res)
        print(f"bubble map: {res['png']}  {res['html']}  {res['statistics']}")
    return 0


def cmd_generate(args, extra: list[str]) -> int:
    import torch

    from latentlm import load
    from latentlm.nn import SamplingConfig

    model, tok = load(args.run_dir)
    if args.trace and "return_trace" not in inspect.signature(model.generate).parameters:
        raise InputError(f"--trace shows latent steps; this run ({model.config.variant}) has none")
    # latent-thought runs format the prompt as their method expects (e.g. Coconut appends <bot>)
    prompt = torch.tensor([model.prompt_ids(args.prompt) if hasattr(model, "prompt_ids") else tok.encode(args.prompt)])
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    new: list[int] = []
    printed = ""
    print(args.prompt, end="", flush=True)

    def stream(tok_ids):
        nonlocal printed
        new.append(int(tok_ids[0]))
        text = tok.decode(new)
        if not text.endswith("\ufffd"):  # wait for a complete UTF-8 character
            print(text[len(printed) :], end="", flush=True)
            printed = text

    if args.trace:
        out = model.generate(
            prompt, args.max_new_tokens, sampling, eos_token_id=tok.eos_id, callback=stream, return_trace=True
        )
        print("\n-- trace: step, mode, token, entropy (nats), input norm")
        for i, st in enumerate(out[1]["steps"]):
            mode = "latent" if st["latent"][0] else "token "
            print(f"{i:4d} {mode} {tok.decode([st['token'][0]])!r:>14} {st['entropy'][0]:7.3f} {st['norm'][0]:8.3f}")
        return 0
    model.generate(prompt, args.max_new_tokens, sampling, eos_token_id=tok.eos_id, callback=stream)
    print()
    return 0


def cmd_export(args, extra: list[str]) -> int:
    from latentlm.hf.export import export_run

    out = export_run(args.run_dir, args.out_dir)
    print(f"exported to {out}: AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True)")
    return 0


def cmd_report(args, extra: list[str]) -> int:
    from latentlm.eval.report import build_report

    path = build_report(args.run_dirs, args.out)
    print(path.read_text())
    return 0


def cmd_config(args, extra: list[str]) -> int:
    from latentlm.config import default_config, to_yaml

    print(f"# latentlm run configuration, variant {args.variant!r}: every field with its default.")
    print("# Use as `latentlm train FILE.yaml`, override any field with --section.field=value.\n")
    print(to_yaml(default_config(args.variant), comments=True), end="")
    return 0


def cmd_data(args, extra: list[str]) -> int:
    from latentlm.data.prepare import prepare

    print(prepare(args.name, tokenizer=args.tokenizer, vocab_size=args.vocab_size))
    return 0


def cmd_demo(args, extra: list[str]) -> int:
    from latentlm.demo import run_demo

    run_demo(args.out, only=args.only)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentlm", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)

    s = sub.add_parser("train", help="train a model from a YAML config; any field can be overridden with --a.b=c")
    s.add_argument("config")
    s.set_defaults(fn=cmd_train, extra_ok=True)

    s = sub.add_parser("eval", help="evaluate a run on held-out text (and more, see --help)")
    s.add_argument("run_dir")
    s.add_argument("--corpus", default=None, help="prepared corpus to evaluate on (default: the run's)")
    s.add_argument("--split", default="val", choices=["val", "train"])
    s.add_argument("--max-batches", type=int, default=None)
    s.add_argument(
        "--val", action="store_true", help="held-out loss / bits per byte (the default when no flag is given)"
    )
    s.add_argument("--leak", action="store_true", help="causality probe: can later tokens change earlier log-probs?")
    s.add_argument("--score-mode", choices=["window", "prefix"], default=None, help="thoughtbubbles: how score() works")
    s.add_argument("--allocation", action="store_true", help="thoughtbubbles: streams vs entropy on the val split")
    s.add_argument("--reference", metavar="RUN", default=None, help="--allocation: reference run (same tokenizer)")
    s.add_argument("--bubbles", metavar="TEXT", default=None, help="thoughtbubbles: fork map of TEXT (PNG + HTML)")
    s.add_argument(
        "--choice",
        metavar="TASKS",
        default=None,
        help="zero-shot multiple choice: piqa,openbookqa,commonsenseqa,siqa or a .jsonl path",
    )
    s.add_argument(
        "--tasks", default=None, help="lm-eval tasks shipped in latentlm/eval/tasks (offline), comma-separated"
    )
    s.add_argument(
        "--reasoning",
        nargs="?",
        const="",
        default=None,
        metavar="DATA",
        help="latent thoughts: exact-match accuracy on the run's held-out reasoning data (or gsm|prosqa|prontoqa|FILE)",
    )
    s.add_argument(
        "--policy", default=None, help="latent switching policy for --reasoning: fixed|learned|threshold|cold_stop|none"
    )
    s.add_argument("--limit", type=int, default=None, help="evaluate the first N items of each task")
    s.set_defaults(fn=cmd_eval)

    s = sub.add_parser("generate", help="sample from a run, streamed to the terminal")
    s.add_argument("run_dir")
    s.add_argument("--prompt", required=True)
    s.add_argument("--max-new-tokens", type=int, default=200)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--top-k", type=int, default=None)
    s.add_argument("--top-p", type=float, default=0.95)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--trace", action="store_true", help="latent thoughts: print every step's mode (latent/token)")
    s.set_defaults(fn=cmd_generate)

    s = sub.add_parser("export", help="export a run as an HF trust_remote_code folder (no latentlm needed to load it)")
    s.add_argument("run_dir")
    s.add_argument("out_dir")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("report", help="markdown + charts comparing runs (bits/byte, FLOPs, throughput, tasks)")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--out", default="runs/report")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("config", help="print the commented default config of a variant")
    s.add_argument("variant")
    s.set_defaults(fn=cmd_config)

    s = sub.add_parser("data", help="prepare data offline")
    dsub = s.add_subparsers(dest="action", required=True)
    d = dsub.add_parser("prepare", help="prepare a corpus (shakespeare or a path) or task data")
    d.add_argument("name")
    d.add_argument("--tokenizer", default="bpe", help="bpe | gpt2 | path of an HF tokenizer (for corpora)")
    d.add_argument("--vocab-size", type=int, default=2048)
    d.set_defaults(fn=cmd_data)

    s = sub.add_parser("demo", help="train, evaluate and compare the tiny models (make demo)")
    s.add_argument("--out", default="runs/demo")
    s.add_argument("--only", nargs="*", default=None, help="names from DEMO_RUNS")
    s.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "extra_ok", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.fn(args, extra)
    except LatentLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
