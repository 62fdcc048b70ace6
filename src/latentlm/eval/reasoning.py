"""Reasoning accuracy of latent-thought runs: exact match, generated tokens, latent steps, termination, collapse
diagnostics.

Prompts follow each method's inference format (the model's reasoning_prompt); generation is batched with the run's
switching policy. The answer is the text after the last "###", up to a newline, with special tokens (<thinking>,
<latent>, ...) and commas removed (the official Coconut / LT-Tuning metric: both strip special tokens). A generation
*terminates* when it emits the end-of-text token after an answer marker. Collapse diagnostics over the latent steps
(Coconut issue #29, LT-Tuning §1): the norm of a latent over the mean norm of token input embeddings, and the
cosine similarity of successive latents of a row.

`max_new_tokens` defaults to 1.5x the longest gold chain (steps + answer, in tokens) of the examples evaluated, so
a model that writes the gold chain is never cut (LT-Tuning, whose <thinking> steps sit inside the text, gets
2 x lt_cap more: as many as training can insert); a prompt plus its gold chain that cannot fit model.max_seq_len
is an error.
"""

from __future__ import annotations

import math
import re

import torch

from latentlm.errors import InputError
from latentlm.eval.stats import wilson

SPECIAL = re.compile(r"<\|endoftext\|>|<bot>|<eot>|<latent>|<thinking>|<pad>|</?s>")


def extract_answer(text: str, special: re.Pattern = SPECIAL) -> str:
    """The text after the last "###", up to a newline; special tokens and commas removed, whitespace collapsed."""
    text = special.sub("", text)
    if "###" not in text:
        return ""
    return " ".join(text.split("###")[-1].split("\n")[0].replace(",", "").split())


def normalise(answer: str) -> str:
    return " ".join(answer.replace(",", "").split())


def gold_chain_tokens(examples, tokenizer) -> list[int]:
    """Tokens of each example's gold response as CoT-SFT writes it: each step and a newline, "### answer", then
    end-of-text (the reasoning response format; tests check it against the curriculum's layout)."""
    return [
        sum(len(tokenizer.encode(s + "\n")) for s in ex.steps) + len(tokenizer.encode("### " + ex.answer)) + 1
        for ex in examples
    ]


def default_max_new_tokens(examples, tokenizer, prompts, max_seq_len: int) -> int:
    chains = gold_chain_tokens(examples, tokenizer)
    for i, (p, c) in enumerate(zip(prompts, chains)):
        if len(p) + c > max_seq_len:
            raise InputError(
                f"example {i}: prompt ({len(p)} tokens) + gold chain ({c}) exceed model.max_seq_len={max_seq_len}; "
                "the model could not write its chain: raise model.max_seq_len or use shorter data"
            )
    return math.ceil(1.5 * max(chains))


def evaluate_reasoning(
    model,
    tokenizer,
    examples,
    *,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    policy: str | None = None,
    keep: int = 3,
) -> dict:
    """The model answers through its reasoning interface: reasoning_prompt(example, tokenizer), extra_new_tokens,
    generation_options(examples, policy), embedding_norm(), generate(..., policy=, return_trace=True) and
    config.max_seq_len / config.method / config.policy; nothing else of it is read."""
    cfg = model.config
    all_prompts = [model.reasoning_prompt(ex, tokenizer) for ex in examples]
    if max_new_tokens is None:
        max_new_tokens = default_max_new_tokens(examples, tokenizer, all_prompts, cfg.max_seq_len)
        max_new_tokens += model.extra_new_tokens  # e.g. LT-Tuning's <thinking> sit inside the text
    correct, gen_tokens, latent_steps, terminated, samples, per_item, preds = 0, [], [], 0, [], [], []
    norms, cosines = [], []
    emb_norm = model.embedding_norm()
    was = model.training
    model.eval()
    for s in range(0, len(examples), batch_size):
        chunk = examples[s : s + batch_size]
        prompts = all_prompts[s : s + batch_size]
        T = max(map(len, prompts))
        ids = torch.tensor([[tokenizer.pad_id] * (T - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts])
        new = min(max_new_tokens, cfg.max_seq_len - T)
        kw = model.generation_options(chunk, policy)  # Coconut: min(max, #steps) latents per row (official rule)
        out, info = model.generate(ids, new, attention_mask=mask, policy=policy, return_trace=True, **kw)
        rows_latents: list[list[torch.Tensor]] = [[] for _ in chunk]
        for is_latent, z in info["latents"]:
            for r in torch.nonzero(is_latent).flatten().tolist():
                rows_latents[r].append(z[r])
        for r, ex in enumerate(chunk):
            gen = out[r, T:].tolist()
            ended = tokenizer.eos_id in gen
            if ended:
                gen = gen[: gen.index(tokenizer.eos_id)]
            text = tokenizer.decode(gen)
            pred = extract_answer(text)
            ok = pred == normalise(ex.answer)
            correct += ok
            per_item.append(int(ok))
            preds.append(pred)
            terminated += ended and "###" in SPECIAL.sub("", text)
            n_latent = int(info["latent_steps"][r])
            latent_steps.append(n_latent)
            gen_tokens.append(len(gen))
            zs = rows_latents[r]
            norms += [float(z.norm()) / emb_norm for z in zs]
            cosines += [float(torch.cosine_similarity(a, b, dim=0)) for a, b in zip(zs, zs[1:])]
            if len(samples) < keep:
                samples.append({"question": ex.question, "generated": text, "predicted": pred, "gold": ex.answer})
    model.train(was)
    n = len(examples)
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {
        "n": n,
        "accuracy": correct / n,
        "accuracy_ci95": wilson(correct, n),
        "generated_tokens": mean(gen_tokens),
        "latent_steps": mean(latent_steps),
        "terminated_frac": terminated / n,
        "max_new_tokens": max_new_tokens,
        "latent_norm_ratio": mean(norms),
        "successive_latent_cosine": mean(cosines),
        "method": cfg.method,
        "policy": policy or cfg.policy,
        "own_chance": own_chance(preds, [normalise(ex.answer) for ex in examples]),
        "correct": per_item,
        "predictions": preds,
        "samples": samples,
    }


def own_chance(predicted: list[str], gold: list[str]) -> float:
    """The accuracy the model's own answers would get if they were independent of the item: sum over answers a of
    P_predicted(a) x P_gold(a) on this test set (the chance level measured from the model's own outputs; a model
    that always says the majority answer gets the majority rate, one that guesses uniformly gets 1/#answers)."""
    from collections import Counter

    n = len(gold)
    if len(predicted) != n:
        raise ValueError(f"own_chance: {len(predicted)} answers for {n} items")
    p, g = Counter(predicted), Counter(gold)
    return sum(p[a] * g[a] for a in p) / (n * n) if n else 0.0


def evaluate_run(
    model, tokenizer, cfg, name: str | None = None, limit: int | None = None, test_seed: int | None = None, **kw
) -> dict:
    """On the held-out (test) split of the run's reasoning data, or another named set / file, drawn with
    `test_seed` (the same items for every run) or else the run's train.seed."""
    from latentlm.data.reasoning import reasoning_examples

    name = name or cfg.data.reasoning
    n = limit or max(8, cfg.data.reasoning_examples // 8)
    examples = reasoning_examples(name, "test", n, cfg.train.seed if test_seed is None else test_seed)[:n]
    res = evaluate_reasoning(model, tokenizer, examples, **kw)
    res["data"] = name
    return res
