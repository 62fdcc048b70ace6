"""lm-evaluation-harness adapter: `LatentLMEvalLM` runs any latentlm model in lm-eval, in memory.

Built on `model.score()` and `model.generate()` only (the variant contract), so every variant plugs in:
- loglikelihood: context + continuation encoded as a whole and split at the context boundary (HFLM's rule);
  `is_greedy` from greedy generation of the continuation's length (no logits needed);
- loglikelihood_rolling: lm-eval's disjoint rolling windows with the EOS/BOS prefix token; each window predicts
  max_seq_len - 1 tokens (score() must see a token to score it; HFLM's windows predict max_seq_len);
- generate_until: batched, left-padded, cut at the first stop string.
Requests are sorted by length and batched. `latentlm eval RUN_DIR --tasks ...` calls `run_tasks`, which resolves the
task YAMLs shipped in eval/tasks/ for the local data root and runs `lm_eval.simple_evaluate` offline. lm-eval's own
CLI (`lm_eval --model latentlm --model_args run_dir=R --tasks latentlm_piqa`) reaches this class through the hook
that the wheel installs (src/_latentlm_lm_eval.py explains why a startup hook: lm-eval 0.4 has no plugin mechanism).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from latentlm.eval.choice import continuation_logprobs, encode_pair
from latentlm.nn import SamplingConfig


@register_model("latentlm")
class LatentLMEvalLM(LM):
    """`lm_eval --model latentlm --model_args run_dir=R[,batch_size=16,greedy_check=False,device=cpu]`; `run_dir` is
    a run directory, a checkpoint folder or a folder made by `latentlm export`."""

    def __init__(
        self,
        model=None,
        tokenizer=None,
        run_dir: str | None = None,
        batch_size: int | str | None = 16,
        greedy_check: bool = True,
        device: str | None = "cpu",
        max_batch_size: int | None = None,
        **unknown,
    ):
        super().__init__()
        from latentlm.errors import InputError

        if unknown:
            raise InputError(
                f"unknown --model_args for latentlm: {', '.join(unknown)}; known: run_dir, batch_size, greedy_check, device"
            )
        if model is None:
            if run_dir is None:
                raise InputError("lm_eval --model latentlm needs --model_args run_dir=RUN_DIR (or an exported folder)")
            from latentlm import load

            if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
                device = "cpu"  # lm-eval's CLI default is cuda
            model, tokenizer = load(str(run_dir), device=device)
        if not isinstance(batch_size, int):  # lm-eval passes "auto" or a string from the CLI
            batch_size = int(batch_size) if str(batch_size).isdigit() else 16
        self.model, self.tok, self.batch_size, self.greedy_check = (
            model.eval(),
            tokenizer,
            int(batch_size),
            greedy_check if isinstance(greedy_check, bool) else str(greedy_check).lower() == "true",
        )
        self.max_len = model.config.max_seq_len
        self.prefix = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None):
        """lm-eval's CLI passes its own batch_size/device defaults; --model_args win over them."""
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        return cls(**arg_dict, **extra)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

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


def write_heldout(cfg, data_root: Path) -> Path:
    """data/tasks/heldout_<corpus>.jsonl (and heldout.jsonl, the latest, for lm_eval's own CLI): the validation tail
    of every document of the run's corpus."""
    from latentlm.data.corpora import corpus_name, iter_documents, prepare_corpus, split_document

    out = Path(data_root) / "tasks" / f"heldout_{corpus_name(cfg.data.corpus)}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    docs = [split_document(d, cfg.data.val_fraction)[1] for d in iter_documents(prepare_corpus(cfg.data.corpus))]
    text = "".join(json.dumps({"text": d}) + "\n" for d in docs if d.strip())
    out.write_text(text)
    (out.parent / "heldout.jsonl").write_text(text)
    return out


def run_tasks(model, tokenizer, cfg, tasks: list[str], run_dir: Path, limit: int | None = None) -> dict:
    """lm-eval's simple_evaluate on shipped tasks, offline; the result holds lm-eval's table (with stderr) and
    provenance: checkpoint hash, versions, limit, time."""
    import datetime
    import platform

    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import make_table

    import latentlm
    from latentlm.data.corpora import corpus_name, data_root
    from latentlm.errors import InputError
    from latentlm.eval.tasks import install_tasks, shipped

    known = sorted(shipped())
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise InputError(f"unknown lm-eval task(s) {', '.join(unknown)}; shipped tasks: {', '.join(known)}")
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
        include = install_tasks(root, Path(tmp), corpus=corpus_name(cfg.data.corpus))
        res = lm_eval.simple_evaluate(
            model=LatentLMEvalLM(model, tokenizer),
            tasks=tasks,
            limit=limit,
            task_manager=TaskManager(include_path=str(include), include_defaults=False),
        )
    run_dir = Path(run_dir)
    ckpt = run_dir / "model.safetensors"  # an exported folder or a checkpoint folder
    if not ckpt.is_file():
        ckpt = run_dir / "checkpoints" / "latest" / "model.safetensors"
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest() if ckpt.is_file() else None
    return {
        "results": res["results"],
        "versions": res.get("versions", {}),
        "n-shot": res.get("n-shot", {}),
        "higher_is_better": res.get("higher_is_better", {}),
        "n-samples": res.get("n-samples", {}),
        "table": make_table(res),
        "provenance": {
            "checkpoint": str(ckpt.resolve()) if ckpt.is_file() else None,
            "sha256": digest,
            "tasks": tasks,
            "limit": limit,
            "data_root": str(root.resolve()),
            "lm_eval": lm_eval.__version__,
            "latentlm": latentlm.__version__,
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "likelihood": model.score_note,
        },
    }
