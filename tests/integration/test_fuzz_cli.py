"""CLI fuzz: every user-fixable bad input gives exit code 2, exactly one stderr line starting `error:`, and leaves
every file of the run (and of any folder the command was pointed at) byte-identical.

The cases call `latentlm.cli.main(argv)` in this process (the same entry point as `python -m latentlm`, without
paying 2-3 s of imports per case); an uncaught exception is recorded as the interpreter would show it (traceback,
exit 1). One tiny trained run is shared by all cases (module fixture); cases that damage a run work on a copy.

    python -m pytest tests/integration/test_fuzz_cli.py -q
    python tests/integration/test_fuzz_cli.py           # the table of cases: exit code and first stderr line
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script
    sys.path.insert(0, str(REPO))

from tests.conftest import TINY_TEXT, tiny_run_overrides  # noqa: E402

TINY = REPO / "configs/gpt/tiny.yaml"


# --- the shared world: a data root, a corpus and one trained run ------------------------------------------------


@dataclass
class World:
    tmp: Path
    data: Path
    run: Path  # checkpoints step_000004 and step_000008

    def over(self, **extra) -> list[str]:
        return tiny_run_overrides(self.tmp, **{"train.out_dir": self.run, **extra})

    def single(self, name: str, keep_manifest: bool = True) -> Path:
        """A copy of the run with only its latest checkpoint (so nothing to fall back to)."""
        dst = self.tmp / "copies" / name
        shutil.copytree(self.run, dst, symlinks=True)
        shutil.rmtree(dst / "checkpoints" / "step_000004")
        if not keep_manifest:
            (dst / "checkpoints" / "step_000008" / "manifest.json").unlink(missing_ok=True)
        return dst


def build_world(tmp: Path) -> World:
    from latentlm.config import load_config
    from latentlm.train.trainer import train

    data = tmp / "data"
    os.environ["LATENTLM_DATA"] = str(data)
    (tmp / "corpus.txt").write_text(TINY_TEXT * 3)
    world = World(tmp, data, tmp / "run")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        train(load_config(TINY, world.over()))
    return world


# --- running one CLI command in-process ----------------------------------------------------------------------


def invoke(argv: list[str], env: dict | None = None) -> tuple[int, str]:
    from latentlm.cli import main

    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as e:  # argparse
                rc = e.code if isinstance(e.code, int) else 1
            except BaseException:  # what the interpreter would print
                traceback.print_exc()
                rc = 1
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return rc, err.getvalue()


def tree_hash(path: Path) -> dict[str, str]:
    """sha256 of every file (and the name of every folder and link) under path; {} when absent."""
    if not path.exists():
        return {}
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# --- damage ---------------------------------------------------------------------------------------------------


def _truncate(file: Path, keep: float = 0.5) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])


def _safetensors_first_float(file: Path, name_part: str = "") -> int:
    """Byte offset of the first float32 of the first F32 tensor (whose name contains name_part) in a safetensors
    file."""
    raw = file.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    for name, info in header.items():
        if name != "__metadata__" and info["dtype"] == "F32" and name_part in name:
            return 8 + n + info["data_offsets"][0]
    raise AssertionError("no F32 tensor")


def flip_bit(file: Path, bit: int = 30) -> None:
    off = _safetensors_first_float(file)
    raw = bytearray(file.read_bytes())
    (value,) = struct.unpack_from("<I", raw, off)
    struct.pack_into("<I", raw, off, value ^ (1 << bit))
    file.write_bytes(bytes(raw))


def write_huge(file: Path) -> None:
    """Finite but absurd weights in the output head: the logits overflow, the loss is NaN."""
    off = _safetensors_first_float(file, "head")
    raw = bytearray(file.read_bytes())
    struct.pack_into("<64f", raw, off, *[3e38] * 64)
    file.write_bytes(bytes(raw))


def write_inf(file: Path) -> None:
    off = _safetensors_first_float(file)
    raw = bytearray(file.read_bytes())
    struct.pack_into("<f", raw, off, float("inf"))
    file.write_bytes(bytes(raw))


# --- the cases ------------------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    argv: object  # list, or a function (world, target) -> list
    setup: object = None  # function (world) -> the folder the command works on (default: the shared run)
    env: dict = field(default_factory=dict)
    extra_dirs: object = None  # function (world) -> more folders that must stay unchanged
    slow: bool = False


def _ckpt(run: Path) -> Path:
    return run / "checkpoints" / "step_000008"


def _train(*over_extra, **over):
    return lambda w, t: ["train", TINY, *w.over(**over), *over_extra]


def _fresh(title: str, name: str, **over) -> Case:
    """Train into a new out_dir: nothing may be created there."""
    return Case(
        title,
        lambda w, t: ["train", TINY, *w.over(**{"train.out_dir": t, **over})],
        setup=lambda w: w.tmp / "fresh" / name,
    )


def _corpus(name: str, content: bytes):
    def setup(w):
        (w.tmp / "corpora").mkdir(exist_ok=True)
        (w.tmp / "corpora" / name).write_bytes(content)
        return w.tmp / "fresh" / f"corpus-{name}"

    return setup


def _corpus_train(name: str):
    return lambda w, t: [
        "train",
        TINY,
        *w.over(**{"train.out_dir": t, "data.corpus": w.tmp / "corpora" / name}),
    ]


def _damaged(name: str, damage, keep_manifest: bool = True):
    def setup(w):
        run = w.single(name, keep_manifest)
        damage(_ckpt(run))
        return run

    return setup


def _bad_yaml(w):
    (w.tmp / "bad.yaml").write_text("model: [unclosed\n  variant: gpt\n")
    return w.run


def _nonempty(w):
    d = w.tmp / "nonempty"
    d.mkdir(exist_ok=True)
    (d / "notes.txt").write_text("my notes\n")
    return w.run


def _data_tokenizer_changed(w):
    """A data root whose shards were made with another tokenizer than the run's (an edited, re-prepared corpus)."""
    from latentlm.data.corpora import corpus_name
    from latentlm.data.tokenizer import train_bpe

    root = w.tmp / "data-changed"
    if not root.exists():
        shutil.copytree(w.data, root)
        shards = next((root / corpus_name(str(w.tmp / "corpus.txt"))).glob("bpe-300-*"))
        train_bpe(["to be or not to be, that is the question " * 50], 280).save(shards)
    return w.run


CASES = [
    # config and overrides
    Case("unknown config key", lambda w, t: ["train", TINY, *w.over(), "--train.lrr=1"]),
    Case("wrong type", _train(**{"train.max_steps": "abc"})),
    Case("bad YAML", lambda w, t: ["train", w.tmp / "bad.yaml"], setup=_bad_yaml),
    Case("missing config file", lambda w, t: ["train", w.tmp / "missing.yaml"]),
    _fresh("log.every=0", "log0", **{"log.every": 0}),
    _fresh("train.warmup_steps=-5", "warm", **{"train.warmup_steps": -5}),
    _fresh("eval.every=-1", "evalneg", **{"eval.every": -1}),
    Case("unwritable out_dir", lambda w, t: ["train", TINY, *w.over(**{"train.out_dir": w.tmp / "corpus.txt/run"})]),
    # corpora
    Case("empty corpus", _corpus_train("empty.txt"), setup=_corpus("empty.txt", b"")),
    Case("non-UTF-8 corpus", _corpus_train("latin1.txt"), setup=_corpus("latin1.txt", "caf\u00e9".encode("latin-1"))),
    Case("binary corpus", _corpus_train("bin.txt"), setup=_corpus("bin.txt", b"\x00\x01binary")),
    Case("too-short corpus", _corpus_train("short.txt"), setup=_corpus("short.txt", b"To be.")),
    Case("broken jsonl", _corpus_train("broken.jsonl"), setup=_corpus("broken.jsonl", b'{"text": "a"}\n{"text": \n')),
    # an existing run
    Case("resume=false on an existing run", _train(**{"train.resume": "false"})),
    Case("re-run a finished run with another config", _train(**{"train.lr": 1e-3})),
    Case("resume with another d_model", _train(**{"model.d_model": 64, "train.max_steps": 12})),
    Case("resume with another tokenizer", _train(**{"data.vocab_size": 280, "train.max_steps": 12})),
    Case(
        "truncated optimizer.pt, no earlier checkpoint",
        lambda w, t: ["train", TINY, *w.over(**{"train.out_dir": t, "train.max_steps": 12})],
        setup=_damaged("opt", lambda c: _truncate(c / "optimizer.pt")),
    ),
    # eval
    Case("eval of a missing run", ["eval", "/no/such/run"]),
    Case("eval --max-batches 0", lambda w, t: ["eval", t, "--max-batches", 0]),
    Case("eval --limit -1", lambda w, t: ["eval", t, "--choice", "piqa", "--limit", -1]),
    Case("eval --reasoning on a GPT run", lambda w, t: ["eval", t, "--reasoning"]),
    Case(
        "eval with data shards of another tokenizer",
        lambda w, t: ["eval", t],
        setup=_data_tokenizer_changed,
        env={"LATENTLM_DATA": "{tmp}/data-changed"},
    ),
    Case(
        "truncated model.safetensors",
        lambda w, t: ["eval", t],
        setup=_damaged("trunc", lambda c: _truncate(c / "model.safetensors")),
    ),
    Case(
        "corrupted safetensors header",
        lambda w, t: ["eval", t],
        setup=_damaged("hdr", lambda c: (c / "model.safetensors").write_bytes(b"\xff" * 64)),
    ),
    Case(
        "bit-flipped tensor (checksum)",
        lambda w, t: ["eval", t],
        setup=_damaged("flip", lambda c: flip_bit(c / "model.safetensors")),
    ),
    Case(
        "overflowing weights, checkpoint without manifest (NaN loss)",
        lambda w, t: ["eval", t],
        setup=_damaged("huge", lambda c: write_huge(c / "model.safetensors"), keep_manifest=False),
    ),
    Case(
        "Inf tensor, checkpoint without manifest",
        lambda w, t: ["eval", t],
        setup=_damaged("inf", lambda c: write_inf(c / "model.safetensors"), keep_manifest=False),
    ),
    # generate
    Case("generate --temperature -1", lambda w, t: ["generate", t, "--prompt", "ROMEO:", "--temperature", -1]),
    Case("generate --top-p 0", lambda w, t: ["generate", t, "--prompt", "ROMEO:", "--top-p", 0]),
    Case("generate --top-k 0", lambda w, t: ["generate", t, "--prompt", "ROMEO:", "--top-k", 0]),
    Case('generate --prompt ""', lambda w, t: ["generate", t, "--prompt", ""]),
    Case("generate --max-new-tokens -5", lambda w, t: ["generate", t, "--prompt", "ROMEO:", "--max-new-tokens", -5]),
    Case("generate: prompt too long", lambda w, t: ["generate", t, "--prompt", "ROMEO: I saw " * 40]),
    # export, report, data, config
    Case("export RUN RUN", lambda w, t: ["export", t, t]),
    Case(
        "export into a non-empty folder",
        lambda w, t: ["export", t, w.tmp / "nonempty"],
        setup=_nonempty,
        extra_dirs=lambda w: [w.tmp / "nonempty"],
    ),
    Case("report --out onto a file", lambda w, t: ["report", t, "--out", w.tmp / "corpus.txt"]),
    Case("report of a non-run folder", lambda w, t: ["report", w.tmp / "corpora", "--out", w.tmp / "rep"]),
    Case("data prepare of a missing path", lambda w, t: ["data", "prepare", w.tmp / "no-such.txt"]),
    Case("config of an unknown variant", ["config", "nope"]),
]


def run_case(world: World, case: Case) -> tuple[int, str, bool]:
    """(exit code, stderr, files unchanged) for one case."""
    target = case.setup(world) if case.setup else world.run
    dirs = [world.run, target, *(case.extra_dirs(world) if case.extra_dirs else [])]
    before = {d: tree_hash(d) for d in dirs}
    argv = case.argv(world, target) if callable(case.argv) else case.argv
    env = {k: v.format(tmp=world.tmp) for k, v in case.env.items()}
    rc, err = invoke(argv, env)
    return rc, err, all(tree_hash(d) == before[d] for d in dirs)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    saved = os.environ.get("LATENTLM_DATA")
    w = build_world(tmp_path_factory.mktemp("fuzz"))
    yield w
    if saved is None:
        os.environ.pop("LATENTLM_DATA", None)
    else:
        os.environ["LATENTLM_DATA"] = saved


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=[pytest.mark.slow] * c.slow) for c in CASES])
def test_bad_input_is_one_error_line_exit_2_and_changes_no_file(world, case):
    rc, err, unchanged = run_case(world, case)
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert unchanged, f"{case.name}: files changed"


# --- the things that must succeed, quietly and without touching files -------------------------------------------


def test_finished_run_rerun_is_a_no_op(world):
    before = tree_hash(world.run)
    rc, err = invoke(["train", TINY, *world.over()])
    assert rc == 0 and err == ""
    assert tree_hash(world.run) == before


def test_damaged_latest_checkpoint_falls_back_with_a_warning(world):
    run = world.tmp / "copies" / "fallback"
    shutil.copytree(world.run, run, symlinks=True)
    _truncate(_ckpt(run) / "model.safetensors")
    from latentlm.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(["eval", str(run), "--max-batches", "1"]) == 0
    assert err.getvalue().startswith("warning: checkpoint file") and "step_000004" in err.getvalue()
    prov = json.loads((run / "results.json").read_text())["val[max_batches=1]"]["provenance"]
    assert prov["step"] == 4 and prov["checkpoint"].endswith("step_000004") and prov["max_batches"] == 1
    weights = run / "checkpoints" / "step_000004" / "model.safetensors"
    assert prov["model_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert prov["split"] == "val" and len(prov["tokenizer_sha256"]) == 64 and prov["latentlm"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["eval", str(run)]) == 0  # the full evaluation sits beside the partial one
    results = json.loads((run / "results.json").read_text())
    assert {"val", "val[max_batches=1]"} <= set(results) and results["val"]["tokens"] > results["val[max_batches=1]"][
        "tokens"
    ]


def table(pythonpath_note: str = "") -> str:
    """Markdown table of every case: exit code and first stderr line (for the closing note)."""
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-table-"))
    world = build_world(tmp)
    pristine = tmp / "pristine"
    shutil.copytree(world.run, pristine, symlinks=True)
    rows = [f"| case | exit | first stderr line {pythonpath_note}|", "|---|---:|---|"]
    for case in CASES:
        if tree_hash(world.run) != tree_hash(pristine):  # code without the fixes may change the run: restore it
            shutil.rmtree(world.run)
            shutil.copytree(pristine, world.run, symlinks=True)
        rc, err, unchanged = run_case(world, case)
        lines = err.strip().splitlines()
        first = lines[0] if lines else ""
        if lines and lines[0].startswith("Traceback"):
            first = f"Traceback ... {lines[-1]}"
        first = first.replace(str(tmp), "TMP").replace("|", "\\|")[:160]
        rows.append(f"| {case.name} | {rc} | {first}{'' if unchanged else ' **(files changed)**'} |")
    shutil.rmtree(tmp, ignore_errors=True)
    return "\n".join(rows)


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    print(table())
