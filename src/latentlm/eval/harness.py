"""lm-evaluation-harness adapter: `LatentLMEvalLM` runs any latentlm model in lm-eval, in memory.

Built on `model.score()` and `model.generate()` only (the variant contract), so every variant plugs in:
- loglikelihood: context + continuation encoded as a whole and split at the context boundary (HFLM's rule);
  `is_greedy` from greedy generation of the continuation's length (no logits needed);
- loglikelihood_rolling: lm-eval's disjoint rolling windows with the EOS/BOS prefix token; each window predicts
  max_seq_len - 1 tokens (score() must see a token to score it; HFLM's windows predict max_seq_len);
- generate_until: batched, left-padded, cut at the first stop string.
Requests are sorted by length and batched. `latentlm eval RUN_DIR --tasks ...` calls `run_tasks`, which renders the
task YAMLs shipped in eval/tasks/ with the local data root and runs `lm_eval.simple_evaluate` offline.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from importlib import resources
from pathlib import Path

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from latentlm.eval.choice import continuation_logprobs, encode_pair
from latentlm.nn import SamplingConfig


@register_model("latentlm")
class LatentLMEvalLM(LM):
    def __init__(
        self,
        model=None,
        tokenizer=None,
        run_dir: str | None = None,
        batch_size: int = 16,
        greedy_check: bool = True,
        device: str = "cpu",
    ):
        super().__init__()
        if model is None:
            from latentlm import load

            model, tokenizer = load(run_dir, device=device)
        self.model, self.tok, self.batch_size, self.greedy_check = (
            model.eval(),
            tokenizer,
            int(batch_size),
            greedy_check,
        )
        self.max_len = model.config.max_seq_len
        self.prefix = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        args = dict(kv.split("=", 1) for kv in arg_string.split(",") if kv)
        return cls(run_dir=args["run_dir"], batch_size=int(args.get("batch_size", 16)))

    @property
    def device(self):
        return next(self.model.parameters()).device

    # --- likelihoods -------------------------------------------------------------------------------------------

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = []
        for req in requests:
            context, continuation = req.args
            ctx, cont = (
                encode_pair(self.tok, context, continuation)
                if context
                else ([self.prefix], self.tok.encode(continuation))
            )
            pairs.append((ctx, cont))
        values = continuation_logprobs(self.model, pairs, self.batch_size, self.prefix)
        greedy = self._is_greedy(pairs) if self.greedy_check else [False] * len(pairs)
        return list(zip(values, greedy))

    def _is_greedy(self, pairs) -> list[bool]:
        """Whether greedy decoding from the context reproduces the continuation exactly."""
        out = [False] * len(pairs)
        for n in sorted({len(c) for _, c in pairs}):
            idx = [i for i, (_, c) in enumerate(pairs) if len(c) == n]
            for b in range(0, len(idx), self.batch_size):
                chunk = idx[b : b + self.batch_size]
                ctxs = [pairs[i][0][-(self.max_len - n) :] for i in chunk]
                ids, mask = _left_pad(ctxs, self.tok.pad_id)
                gen = self.model.generate(
                    ids.to(self.device), n, SamplingConfig(temperature=0.0), attention_mask=mask.to(self.device)
                )[:, ids.shape[1] :]
                for r, i in enumerate(chunk):
                    out[i] = gen[r].tolist() == pairs[i][1]
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owner = [], []
        for i, req in enumerate(requests):
            tokens = self.tok.encode(req.args[0])
            for ctx, cont in map(
                make_disjoint_window,
                get_rolling_token_windows(
                    tokens, prefix_token=self.prefix, max_seq_len=self.max_len - 1, context_len=1
                ),
            ):
                windows.append((list(ctx), list(cont)))
                owner.append(i)
        values = continuation_logprobs(self.model, windows, self.batch_size, self.prefix)
        totals = [0.0] * len(requests)
        for i, v in zip(owner, values):
            totals[i] += v
        return totals

    # --- generation --------------------------------------------------------------------------------------------

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = [""] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(json.dumps(req.args[1], sort_keys=True, default=str), []).append(i)
        for key, idx in groups.items():
            kw = json.loads(key)
            until = kw.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kw.get("max_gen_toks", 256))
            temp = float(kw.get("temperature", 0.0)) if kw.get("do_sample", False) else 0.0
            idx = sorted(idx, key=lambda i: -len(requests[i].args[0]))
            for b in range(0, len(idx), self.batch_size):
                chunk = idx[b : b + self.batch_size]
                budget = max(1, self.max_len - max_new)
                ids, mask = _left_pad([self.tok.encode(requests[i].args[0])[-budget:] for i in chunk], self.tok.pad_id)
                new = min(max_new, self.max_len - ids.shape[1])
                gen = self.model.generate(
                    ids.to(self.device),
                    new,
                    SamplingConfig(temperature=temp, seed=0),
                    attention_mask=mask.to(self.device),
                    eos_token_id=self.tok.eos_id,
                )
                for r, i in enumerate(chunk):
                    tokens = [t for t in gen[r, ids.shape[1] :].tolist() if t != self.tok.eos_id]
                    out[i] = cut_at(self.tok.decode(tokens), until)
        return out


def cut_at(text: str, stops: list[str]) -> str:
    """Text up to the earliest stop string (excluded)."""
    cut = min((text.find(s) for s in stops if s and s in text), default=len(text))
    return text[:cut]


def _left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, T - len(s) :] = torch.tensor(s)
        mask[r, T - len(s) :] = 1
    return ids, mask


# --- running tasks -----------------------------------------------------------------------------------------------


def render_tasks(data_root: Path, corpus: str, out_dir: Path) -> Path:
    """Copy the shipped task YAMLs with the local data root (and held-out corpus name) filled in."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in resources.files("latentlm.eval").joinpath("tasks").iterdir():
        if f.name.endswith(".yaml"):
            text = f.read_text().format(data_root=Path(data_root).resolve(), corpus=corpus)
            (out_dir / f.name).write_text(text)
    return out_dir


def write_heldout(cfg, data_root: Path) -> Path:
    """data/tasks/heldout_<corpus>.jsonl: the validation tail of every document of the run's corpus."""
    from latentlm.data.corpora import corpus_name, iter_documents, prepare_corpus, split_document

    out = Path(data_root) / "tasks" / f"heldout_{corpus_name(cfg.data.corpus)}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    docs = [split_document(d, cfg.data.val_fraction)[1] for d in iter_documents(prepare_corpus(cfg.data.corpus))]
    out.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs if d.strip()))
    return out


def run_tasks(model, tokenizer, cfg, tasks: list[str], run_dir: Path, limit: int | None = None) -> dict:
    import lm_eval

    from latentlm.data.corpora import corpus_name, data_root
    from latentlm.errors import InputError

    root = data_root()
    if any("heldout" in t for t in tasks):
        write_heldout(cfg, root)
    for t in tasks:
        short = t.removeprefix("latentlm_")
        if (
            short in ("piqa", "openbookqa", "commonsenseqa", "siqa")
            and not (root / "tasks" / f"{short}.jsonl").is_file()
        ):
            raise InputError(f"no data for task {t}; run `latentlm data prepare {short}` first")
    with tempfile.TemporaryDirectory() as tmp:
        include = render_tasks(root, corpus_name(cfg.data.corpus), Path(tmp))
        known = {p.stem for p in include.glob("*.yaml")}
        unknown = [t for t in tasks if t not in known]
        if unknown:
            raise InputError(f"unknown lm-eval task(s) {', '.join(unknown)}; shipped tasks: {', '.join(sorted(known))}")
        from lm_eval.tasks import TaskManager

        res = lm_eval.simple_evaluate(
            model=LatentLMEvalLM(model, tokenizer),
            tasks=tasks,
            limit=limit,
            task_manager=TaskManager(include_path=str(include), include_defaults=False),
        )
    ckpt = Path(run_dir) / "checkpoints" / "latest" / "model.safetensors"
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16] if ckpt.is_file() else None
    return {
        "results": res["results"],
        "checkpoint": str(ckpt.resolve()) if ckpt.exists() else None,
        "sha256_16": digest,
        "limit": limit,
        "note": getattr(model, "score_note", ""),
    }
