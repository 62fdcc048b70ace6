"""latentlm command line: thin verbs over library calls (everything here is also callable from Python).

latentlm train CONFIG [--train.lr=3e-4 ...]        one trainer for every variant (torchrun for DDP)
latentlm eval RUN_DIR [--corpus NAME]              held-out loss / perplexity / bits per byte
latentlm generate RUN_DIR --prompt TEXT            KV-cached sampling, streamed
latentlm export RUN_DIR OUT_DIR                    HF folder loadable with trust_remote_code
latentlm report RUN_DIR... [--out DIR]             comparison table and charts across runs
latentlm config VARIANT                            commented default YAML of a variant
latentlm config --list [VARIANT]                   configs shipped with the package (usable by name: gpt/tiny)
latentlm data prepare NAME|PATH                    prepare a corpus (or task data) offline
latentlm compare SPEC.yaml --out DIR               arms x seeds, paired 95 % intervals (compare.json/.md)
latentlm demo                                      train, evaluate and compare the tiny models
"""

from __future__ import annotations

import argparse
import json
import sys

from latentlm.errors import InputError, LatentLMError


def cmd_train(args, extra: list[str]) -> int:
    from latentlm.config import load_config
    from latentlm.shipped import config_path
    from latentlm.train.trainer import train

    summary = train(load_config(config_path(args.config), extra))
    print(json.dumps({k: summary[k] for k in ("steps", "tokens_seen", "tokens_per_s", "final_train_loss")}))
    return 0


def cmd_eval(args, extra: list[str]) -> int:
    from latentlm import load
    from latentlm.models import variant_spec
    from latentlm.results import merge_results, provenance, result_key

    check_eval_args(args)
    model, tok = load(args.run_dir)
    cfg = model.run_config
    spec = variant_spec(cfg.model)
    check_eval_fits_run(args, spec)
    if args.score_mode is not None:  # e.g. thoughtbubbles: score each position from its own prefix (no leak)
        if args.score_mode not in spec.score_modes:
            raise InputError(
                f"--score-mode={args.score_mode} does not apply to this run ({spec.name}, score modes: "
                f"{', '.join(spec.score_modes) or 'one'}); it applies to thoughtbubbles runs"
            )
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

        if args.corpus in (None, cfg.data.corpus) and cfg.data.reasoning is None:
            check_data_tokenizer(cfg, tok)
        res = evaluate(model, tok, cfg, args.split, corpus=args.corpus, max_batches=args.max_batches)
        check_finite(res, "loss", args.run_dir)
        key = args.split if args.corpus in (None, cfg.data.corpus) else f"{args.split}:{args.corpus}"
        prov = provenance(model, tok, split=args.split, corpus=res.get("corpus"), max_batches=args.max_batches)
        merge_results(args.run_dir, result_key(key, max_batches=args.max_batches), res, prov)
        print(
            f"{res['corpus']} {args.split}: loss {res['loss']:.4f}  ppl {res['ppl']:.2f}  "
            f"bits/byte {res['bits_per_byte']:.4f}  ({res['tokens']} tokens; {res['note']})"
        )
        diag = None if spec.diagnostics is None else spec.diagnostics(model, tok, cfg, args.split, args.max_batches)
        if diag is not None:  # a variant with a latent says whether its decoder uses it
            merge_results(args.run_dir, result_key(f"{key}:latent", max_batches=args.max_batches), diag, prov)
            print("\n".join(diag["report"]))
    if args.choice is not None:
        from latentlm.data.corpora import data_root
        from latentlm.eval.choice import evaluate_choice

        for task in args.choice.split(","):
            res = evaluate_choice(model, tok, task, data_root(), limit=args.limit)
            prov = provenance(model, tok, task=task, limit=args.limit)
            merge_results(args.run_dir, result_key(f"choice:{task}", limit=args.limit), res, prov)
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
        tasks = args.tasks.split(",")
        res = run_tasks(model, tok, cfg, tasks, args.run_dir, limit=args.limit)
        prov = provenance(model, tok, tasks=tasks, limit=args.limit)
        merge_results(args.run_dir, result_key(f"lm_eval:{','.join(sorted(tasks))}", limit=args.limit), res, prov)
        print(res["table"], end="")  # lm-eval's own table, with its stderr column
    if args.reasoning is not None:
        from latentlm.eval.reasoning import evaluate_run

        res = evaluate_run(model, tok, cfg, args.reasoning or None, args.limit, policy=args.policy)
        prov = provenance(model, tok, data=res["data"], limit=args.limit, policy=args.policy)
        merge_results(args.run_dir, result_key(f"reasoning:{res['data']}", limit=args.limit), res, prov)
        lo, hi = res["accuracy_ci95"]
        print(
            f"{res['data']}: accuracy {res['accuracy']:.3f} [95% CI {lo:.3f}-{hi:.3f}] (n={res['n']}), "
            f"{res['generated_tokens']:.1f} generated tokens, {res['latent_steps']:.1f} latent steps"
        )
    if args.leak:
        from latentlm.eval.leak import measure_leak_on_run

        res = measure_leak_on_run(model, tok, cfg)
        merge_results(args.run_dir, "leak", res, provenance(model, tok))
        print(
            f"leak: max |d log p| at positions <= t when tokens after t change: {res['max_abs_dlogp']:.3g} "
            f"(mean {res['mean_abs_dlogp']:.3g}; {res['note']})"
        )
    if args.allocation:
        from latentlm.eval.allocation import allocation_analysis, print_summary

        ref, ref_tok = load(args.reference) if args.reference else (None, None)
        res = allocation_analysis(model, tok, cfg, ref, ref_tok, args.max_batches, reference_name=args.reference)
        merge_results(
            args.run_dir, "allocation", res, provenance(model, tok, split="val", max_batches=args.max_batches)
        )
        print_summary(res)
    if args.bubbles is not None:
        from pathlib import Path

        from latentlm.results import read_results
        from latentlm.viz.bubbles import bubble_map

        alloc = read_results(args.run_dir).get("allocation", {}).get("summary")
        res = bubble_map(model, tok, args.bubbles, Path(args.run_dir) / "bubbles", alloc)
        merge_results(args.run_dir, "bubbles", res, provenance(model, tok, text=args.bubbles))
        print(f"bubble map: {res['png']}  {res['html']}  {res['statistics']}")
    return 0


def cmd_generate(args, extra: list[str]) -> int:
    import torch

    from latentlm import load
    from latentlm.models import variant_spec
    from latentlm.nn import SamplingConfig

    check_generate_args(args)
    model, tok = load(args.run_dir)
    gen = variant_spec(model.config).generation
    if args.trace and not gen.trace:
        raise InputError(f"--trace shows latent steps; this run ({model.config.variant}) has none")
    # the variant's inference format (e.g. Coconut appends <bot>); plain tokenization otherwise
    prompt = torch.tensor([gen.encode_prompt(model, tok, args.prompt)])
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
    from latentlm.generation import generate

    generate(model, prompt, args.max_new_tokens, sampling, eos_token_id=tok.eos_id, callback=stream)
    print()
    return 0


def cmd_export(args, extra: list[str]) -> int:
    from latentlm.hf.export import export_run

    out = export_run(args.run_dir, args.out_dir, force=args.force)
    print(f"exported to {out}: AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True)")
    return 0


def cmd_report(args, extra: list[str]) -> int:
    from latentlm.eval.report import build_report

    path = build_report(args.run_dirs, args.out)
    print(path.read_text())
    return 0


def cmd_config(args, extra: list[str]) -> int:
    from latentlm.config import default_config, to_yaml

    if args.list:
        from latentlm.models import VARIANTS
        from latentlm.shipped import list_configs

        if args.variant is not None and args.variant not in VARIANTS:
            raise InputError(f"unknown variant {args.variant!r}; variants: {', '.join(VARIANTS)}")
        for name in list_configs(args.variant):
            print(name)
        return 0
    if args.variant is None:
        raise InputError("config needs a VARIANT (latentlm config gpt) or --list")

    print(f"# latentlm run configuration, variant {args.variant!r}: every field with its default.")
    print("# Use as `latentlm train FILE.yaml`, override any field with --section.field=value.\n")
    print(to_yaml(default_config(args.variant), comments=True), end="")
    return 0


def cmd_data(args, extra: list[str]) -> int:
    import latentlm.eval.choice  # noqa: F401  (registers the multiple-choice task preparers)
    from latentlm.data.prepare import prepare

    print(prepare(args.name, tokenizer=args.tokenizer, vocab_size=args.vocab_size, force=args.force))
    return 0


def cmd_compare(args, extra: list[str]) -> int:
    from latentlm.compare import run_compare

    arms = [a for part in args.arms or [] for a in part.split(",") if a] or None
    res = run_compare(args.spec, args.out, arms=arms, aggregate_only=args.aggregate_only)
    if res:
        print(
            f"{args.out}/compare.md  {args.out}/compare.json"
            + (f"  (missing: {', '.join(res['missing'])})" if res["missing"] else "")
        )
    return 0


def cmd_demo(args, extra: list[str]) -> int:
    from latentlm.demo import run_demo

    run_demo(args.out, only=args.only)
    return 0


# --- input checks: one `error:` line naming the flag and the fix, before anything is loaded or written -----------


def check_eval_args(args) -> None:
    for flag, value in (("--limit", args.limit), ("--max-batches", args.max_batches)):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be >= 1 (omit it to evaluate everything), got {value}")


def check_eval_fits_run(args, spec) -> None:
    """Variant-specific evaluators apply where the variant's spec lists them (VariantSpec.eval_extras)."""
    for flag, extra, which in (
        (args.reasoning is not None, "reasoning", "latent-thought runs (variant latent_thoughts)"),
        (args.allocation, "allocation", "thoughtbubbles runs"),
        (args.bubbles is not None, "bubbles", "thoughtbubbles runs"),
    ):
        if flag and extra not in spec.eval_extras:
            raise InputError(f"--{extra} measures {which}; this run is {spec.name!r}: use --val, --choice or --tasks")
    if args.policy is not None and args.reasoning is None:
        raise InputError("--policy applies to --reasoning only")


def check_generate_args(args) -> None:
    import math

    if args.prompt == "":
        raise InputError('--prompt is empty; give some text to continue, e.g. --prompt "ROMEO:"')
    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise InputError(f"--temperature must be a finite number >= 0 (0 = greedy), got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise InputError(f"--top-k must be >= 1 (omit it to keep every token), got {args.top_k}")
    if args.top_p is not None and not (0 < args.top_p <= 1):
        raise InputError(f"--top-p must be in (0, 1] (1 keeps every token), got {args.top_p}")


def check_data_tokenizer(cfg, tok) -> None:
    """The run's tokenizer must be the one its data shards were made with (else the ids mean other text)."""
    from latentlm.data import load_tokenizer, shard_dir
    from latentlm.data.tokenizer import check_same_tokenizer

    data_tok = load_tokenizer(cfg)
    check_same_tokenizer(tok, data_tok, "the run's tokenizer", f"the data's ({shard_dir(cfg) / 'tokenizer.json'})")


def check_finite(res: dict, field: str, run_dir) -> None:
    import math

    value = res.get(field)
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(
            f"the evaluation of {run_dir} gave a non-finite {field} ({value}): its weights hold NaN/Inf or overflow; "
            "nothing was written to results.json (evaluate an earlier checkpoint)"
        )


def _train_epilog() -> str:
    """The config sections and their fields, for `latentlm train --help`."""
    import dataclasses

    from latentlm.config import RunConfig
    from latentlm.models import VARIANTS

    lines = ["config sections (override any field with --SECTION.FIELD=VALUE):"]
    for f in dataclasses.fields(RunConfig):
        if f.name == "model":
            lines.append(f"  model    variant-specific; model.variant is one of {', '.join(VARIANTS)}")
            continue
        names = ", ".join(g.name for g in dataclasses.fields(f.default_factory()))
        lines.append(f"  {f.name:<8} {names}")
    lines += [
        "",
        "`latentlm config VARIANT` prints every field of a variant with its default and meaning;",
        "`latentlm config --list` names the shipped configs (e.g. `latentlm train gpt/tiny`).",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from latentlm import __version__

    p = argparse.ArgumentParser(prog="latentlm", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"latentlm {__version__}")
    sub = p.add_subparsers(dest="verb", required=True)

    s = sub.add_parser(
        "train",
        help="train a model from a YAML config; any field can be overridden with --a.b=c",
        epilog=_train_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("config", help="a YAML file, or a shipped config by name (latentlm config --list)")
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
    s.add_argument("--force", action="store_true", help="write into a non-empty folder (or another run's directory)")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("report", help="markdown + charts comparing runs (bits/byte, FLOPs, throughput, tasks)")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--out", default="runs/report")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("config", help="print the commented default config of a variant, or list shipped configs")
    s.add_argument("variant", nargs="?", default=None)
    s.add_argument("--list", action="store_true", help="list the configs shipped with the package (of VARIANT)")
    s.set_defaults(fn=cmd_config)

    s = sub.add_parser("data", help="prepare data offline")
    dsub = s.add_subparsers(dest="action", required=True)
    d = dsub.add_parser("prepare", help="prepare a corpus (shakespeare or a path) or task data")
    d.add_argument("name")
    d.add_argument("--tokenizer", default="bpe", help="bpe | gpt2 | path of an HF tokenizer (for corpora)")
    d.add_argument("--vocab-size", type=int, default=2048)
    d.add_argument("--force", action="store_true", help="prepare again even if the cache is up to date")
    d.set_defaults(fn=cmd_data)

    s = sub.add_parser("compare", help="run a grid of arms x seeds from a spec; paired differences with 95% CIs")
    s.add_argument("spec")
    s.add_argument("--out", required=True, help="grid folder: runs/ARM/seed_N, compare.json, compare.md")
    s.add_argument("--arms", nargs="*", default=None, help="train only these arms (the aggregate covers all)")
    s.add_argument("--aggregate-only", action="store_true", help="train nothing; aggregate the finished runs")
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("demo", help="train, evaluate and compare the tiny models (make demo)")
    s.add_argument("--out", default="runs/demo")
    s.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="arms of configs/compare/demo.yaml to train (the summary lists every finished arm)",
    )
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
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `latentlm report ... | head`
        return 1
    except OSError as e:  # permissions, disk full, a file where a folder was expected: fixable by the user
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
