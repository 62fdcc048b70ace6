"""The comparison spec: YAML (or a dict) -> a validated `Spec` -> one resolved `RunConfig` per (arm, seed).

Everything that can be wrong with a spec is found here, before anything is written: unknown keys, duplicate keys
(YAML's safe_load silently keeps the last of two equal keys, so two arms with one name would vanish into one),
an empty or repeated seed list, an arm whose config does not load, a budget an arm cannot meet.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from latentlm.config import RunConfig, load_config, merge, to_dict
from latentlm.errors import ConfigError, InputError

REPO = Path(__file__).resolve().parents[3]
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
TOP_KEYS = ("name", "seeds", "arms", "budget", "tokens", "flops", "overrides", "heldout", "eval", "baseline", "title")
ARM_KEYS = ("config", "overrides", "label", "init_from", "from", "eval_overrides", "eval", "seed_offset")
EVAL_KEYS = (
    "val_batches",
    "leak",
    "choice",
    "choice_limit",
    "reasoning",
    "reasoning_limit",
    "reasoning_test_seed",
    "reasoning_batch",
    "policy",
)
# EvalSpec fields added after grids were recorded: left out of the digest while unset, so older eval hashes hold.
LATER_EVAL_KEYS = ("reasoning_test_seed", "reasoning_batch")
SEED = "{seed}"  # in any string setting of a run's config: replaced by the run's seed
BUDGETS = ("tokens", "flops", "none")
# Fields that say where or how a run is driven, not what it computes: left out of the config hash.
UNHASHED = {("train", "out_dir"), ("train", "resume"), ("log", "progress"), ("log", "tensorboard")}


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (safe_load keeps the last one silently)."""


def _construct_mapping(loader, node, deep=False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise InputError(
                f"line {key_node.start_mark.line + 1}: duplicate key {key!r} (first at line {seen[key]}); "
                "every arm and setting needs its own name"
            )
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml_strict(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"cannot read spec {path}: {e.strerror}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None


@dataclass
class EvalSpec:
    val_batches: int | None = None
    """Validation batches to score (None: the whole validation split)."""
    leak: bool = True
    """Run the causality probe (the leak flag on charts)."""
    choice: list[str] = field(default_factory=list)
    """Zero-shot multiple-choice tasks (piqa, openbookqa, commonsenseqa, siqa or .jsonl paths)."""
    choice_limit: int | None = None
    reasoning: bool | str = False
    """Exact-match accuracy on the run's held-out reasoning data (True) or a named set / file."""
    reasoning_limit: int | None = None
    reasoning_test_seed: int | None = None
    """Draw the reasoning test items with this seed in every run (the same items for every seed of the grid, so
    the pairing is over identical questions); None: each run's train.seed."""
    reasoning_batch: int | None = None
    """Rows generated at once by the reasoning evaluator (None: its default, 8)."""
    policy: str | None = None

    def digest(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not (k in LATER_EVAL_KEYS and v is None)}


@dataclass
class Arm:
    name: str
    config: Path | None
    overrides: dict
    label: str = ""
    init_from: str | None = None
    """Another arm whose run of the same seed this arm's model starts from (trained first)."""
    eval_from: str | None = None
    """Eval-only arm (spec key `from`): no training; evaluates that arm's checkpoint of the same seed."""
    eval_overrides: dict = field(default_factory=dict)
    """Config changes applied when the checkpoint is loaded for evaluation (eval-only arms)."""
    eval: dict = field(default_factory=dict)
    """Per-arm eval settings over the spec's `eval`."""
    seed_offset: int = 0
    """The arm's run of seed N trains with train.seed = N + seed_offset (another data draw); still paired as N."""

    @property
    def source(self) -> str | None:
        return self.init_from or self.eval_from

    def to_dict(self) -> dict:
        d = {"config": str(self.config) if self.config else None, "overrides": self.overrides, "label": self.label}
        for key, value in (("init_from", self.init_from), ("from", self.eval_from)):
            if value:
                d[key] = value
        for key in ("eval_overrides", "eval", "seed_offset"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        return d


@dataclass
class Spec:
    name: str
    seeds: list[int]
    arms: list[Arm]
    budget: str = "tokens"
    tokens: int | None = None
    flops: float | None = None
    overrides: dict = field(default_factory=dict)
    heldout: list[Path] = field(default_factory=list)
    eval: EvalSpec = field(default_factory=EvalSpec)
    baseline: str = ""
    title: str = ""
    source: str = "<dict>"

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def arm_eval(self, arm: Arm | str) -> EvalSpec:
        """The spec's eval settings with the arm's own `eval:` over them."""
        arm = self.arm(arm) if isinstance(arm, str) else arm
        return EvalSpec(**{**self.eval.__dict__, **arm.eval}) if arm.eval else self.eval

    def train_order(self) -> list[Arm]:
        """The arms in spec order, except that an arm comes after the arm it starts from or evaluates."""
        done: list[str] = []

        def visit(arm: Arm) -> None:
            if arm.name in done:
                return
            if arm.source:
                visit(self.arm(arm.source))
            done.append(arm.name)

        for arm in self.arms:
            visit(arm)
        return [self.arm(n) for n in done]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "seeds": self.seeds,
            "budget": self.budget,
            "tokens": self.tokens,
            "flops": self.flops,
            "overrides": self.overrides,
            "arms": {a.name: a.to_dict() for a in self.arms},
            "heldout": [str(p) for p in self.heldout],
            "eval": self.eval.digest(),
            "baseline": self.baseline,
            "source": self.source,
        }


def _check_keys(data: dict, known: tuple, where: str) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
            raise InputError(f"{where}: unknown key {key!r}{hint}")


def _resolve_path(raw: str, base: Path | None, what: str) -> Path:
    if str(raw).startswith("package:"):  # package:NAME/PATH, a file shipped inside an installed Python package
        return _package_path(str(raw), what)
    p = Path(str(raw)).expanduser()
    from latentlm.shipped import configs_dir

    shipped = configs_dir().parent  # the package folder, which holds configs/ in a checkout and in a wheel alike
    candidates = [p] if p.is_absolute() else [Path.cwd() / p] + ([base / p] if base else []) + [REPO / p, shipped / p]
    for c in candidates:
        if c.exists():
            return c.resolve()
    raise InputError(f"{what}: {raw} not found (looked in {', '.join(str(c.parent) for c in candidates)})")


def _package_path(raw: str, what: str) -> Path:
    import importlib.util

    name, _, rest = raw.removeprefix("package:").partition("/")
    try:
        found = importlib.util.find_spec(name) if name.isidentifier() else None
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise InputError(f"{what}: {raw}: no installed package {name!r}; install it or give a file path")
    p = Path(list(found.submodule_search_locations)[0]) / rest
    if not p.exists():
        raise InputError(f"{what}: {raw} not found ({p})")
    return p.resolve()


def _choice_task(task: str, base: Path | None, where: str) -> str:
    """A .jsonl path (resolved) or a prepared task name; checked now, not after hours of training."""
    from latentlm.data.corpora import data_root
    from latentlm.eval.choice import TASKS, task_file

    if task.endswith(".jsonl"):
        return str(_resolve_path(task, base, where))
    if task not in TASKS:
        raise InputError(f"{where}: unknown task {task!r}: use one of {', '.join(TASKS)} or a .jsonl path")
    if not task_file(data_root(), task).is_file():
        raise InputError(f"{where}: no data for task {task!r}; run `latentlm data prepare {task}` first")
    return task


def _nested(overrides: Any, where: str) -> dict:
    """{"train.lr": 1e-3, "model": {"n_layers": 2}} -> nested dict for config.merge."""
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise InputError(f"{where}: overrides must be a mapping of dotted.key: value, got {overrides!r}")
    out: dict = {}
    for key, value in overrides.items():
        node = out
        parts = str(key).split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"{where}: override {key!r} conflicts with an earlier override of {part!r}")
        if isinstance(value, dict):
            value = _nested(value, where)
            node[parts[-1]] = merge(node.get(parts[-1], {}), value) if isinstance(node.get(parts[-1]), dict) else value
        else:
            node[parts[-1]] = value
    return out


def load_spec(spec: str | Path | dict | Spec, base_dir: str | Path | None = None) -> Spec:
    """Parse and validate a spec from a YAML path or a dict (paths inside resolve against the cwd, then
    base_dir or the spec's folder, then the repository)."""
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, dict):
        data, base, source = copy.deepcopy(spec), Path(base_dir) if base_dir else None, "<dict>"
    else:
        path = Path(spec)
        if not path.is_file():
            raise InputError(f"spec file not found: {path}")
        data, base, source = read_yaml_strict(path), Path(base_dir) if base_dir else path.resolve().parent, str(path)
    where = source
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping with name, seeds and arms")
    _check_keys(data, TOP_KEYS, where)
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InputError(f"{where}: name must be a word of letters, digits, '_', '.', '-' (got {name!r})")
    seeds = data.get("seeds")
    if not isinstance(seeds, list) or not seeds:
        raise InputError(f"{where}: seeds must be a non-empty list of integers, e.g. seeds: [1, 2, 3] (got {seeds!r})")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise InputError(f"{where}: seeds must be integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise InputError(f"{where}: seed list {seeds} repeats a seed; each seed must appear once")
    arms_data = data.get("arms")
    if not isinstance(arms_data, dict) or not arms_data:
        raise InputError(f"{where}: arms must be a mapping NAME: {{config: PATH, overrides: {{...}}}} with >= 1 arm")
    arms = [_parse_arm(arm_name, arm, base, where) for arm_name, arm in arms_data.items()]
    _check_sources(arms, where)
    budget = data.get("budget", "tokens")
    if budget is None or budget is False:
        budget = "none"
    if budget not in BUDGETS:
        raise InputError(f"{where}: budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    tokens, flops = data.get("tokens"), data.get("flops")
    if tokens is not None and (budget != "tokens" or not isinstance(tokens, int) or tokens < 1):
        raise InputError(f"{where}: tokens: is a positive integer and needs budget: tokens (got {tokens!r})")
    if flops is not None:
        try:
            flops = float(flops)
        except (TypeError, ValueError):
            raise InputError(f"{where}: flops must be a number, got {flops!r}") from None
        if budget != "flops" or not math.isfinite(flops) or flops <= 0:
            raise InputError(f"{where}: flops: is a positive number and needs budget: flops (got {flops!r})")
    heldout = []
    for h in data.get("heldout") or []:
        p = _resolve_path(str(h), base, f"{where}: heldout corpus")
        if p.is_file() and p.suffix not in (".txt", ".jsonl"):
            raise InputError(f"{where}: heldout corpus {h} must be a .txt or .jsonl file (or a folder of them)")
        heldout.append(p)
    names = [p.stem for p in heldout]
    if len(set(names)) != len(names):
        raise InputError(f"{where}: two held-out corpora share the name {names}; rename one file")
    eval_spec = EvalSpec(**_eval_settings(data.get("eval"), base, f"{where}: eval"))
    baseline = data.get("baseline") or arms[0].name
    if baseline not in [a.name for a in arms]:
        raise InputError(f"{where}: baseline {baseline!r} is not an arm (arms: {', '.join(a.name for a in arms)})")
    return Spec(
        name=name,
        seeds=list(seeds),
        arms=arms,
        budget=budget,
        tokens=tokens,
        flops=flops,
        overrides=_nested(data.get("overrides"), f"{where}: overrides"),
        heldout=heldout,
        eval=eval_spec,
        baseline=baseline,
        title=str(data.get("title") or ""),
        source=source,
    )


def _eval_settings(ev: Any, base: Path | None, where: str, partial: bool = False) -> dict:
    """An `eval:` mapping, checked (keys, types, choice tasks); `partial`: an arm's, over the spec's."""
    ev = {} if ev is None else ev
    if not isinstance(ev, dict):
        raise InputError(f"{where} must be a mapping ({', '.join(EVAL_KEYS)})")
    _check_keys(ev, EVAL_KEYS, where)
    ev = dict(ev)
    for key in ("val_batches", "choice_limit", "reasoning_limit", "reasoning_test_seed", "reasoning_batch"):
        v = ev.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (0 if "seed" in key else 1)):
            raise InputError(f"{where}: {key} must be an integer >= {0 if 'seed' in key else 1}, got {v!r}")
    if isinstance(ev.get("choice"), str):
        ev["choice"] = [t for t in ev["choice"].split(",") if t]
    if "choice" in ev or not partial:
        ev["choice"] = [_choice_task(str(task), base, f"{where}.choice") for task in ev.get("choice") or []]
    return ev


def _parse_arm(arm_name: Any, arm: Any, base: Path | None, where: str) -> Arm:
    aw = f"{where}: arm {arm_name!r}"
    if not isinstance(arm_name, str) or not NAME_RE.match(arm_name):
        raise InputError(f"{aw}: arm names are folder names (letters, digits, '_', '.', '-')")
    if isinstance(arm, str):
        arm = {"config": arm}
    if not isinstance(arm, dict):
        raise InputError(f"{aw}: needs config: PATH (a run config YAML), or from: ARM for an eval-only arm")
    _check_keys(arm, ARM_KEYS, aw)
    for key in ("init_from", "from"):
        if key in arm and not (isinstance(arm[key], str) and arm[key]):
            raise InputError(f"{aw}: {key} names another arm, got {arm[key]!r}")
    offset = arm.get("seed_offset", 0)
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InputError(f"{aw}: seed_offset must be an integer >= 0, got {offset!r}")
    evals = _eval_settings(arm.get("eval"), base, f"{aw}: eval", partial=True)
    if "from" in arm:  # eval-only: the source arm's checkpoint, loaded with eval_overrides
        extra = [k for k in ("config", "overrides", "init_from", "seed_offset") if k in arm]
        if extra:
            raise InputError(
                f"{aw}: an eval-only arm (from: {arm['from']}) trains nothing, so it takes no {', '.join(extra)}; "
                "change how it is evaluated with eval_overrides: and eval:"
            )
        return Arm(arm_name, None, {}, str(arm.get("label") or ""), eval_from=arm["from"],
                   eval_overrides=_nested(arm.get("eval_overrides"), f"{aw}: eval_overrides"), eval=evals)  # fmt: skip
    if "eval_overrides" in arm:
        raise InputError(f"{aw}: eval_overrides: is for eval-only arms (from: ARM); use overrides: to train with them")
    if "config" not in arm:
        raise InputError(f"{aw}: needs config: PATH (a run config YAML), or from: ARM for an eval-only arm")
    try:
        resolved = _resolve_path(str(arm["config"]), base, f"{aw}: config")
    except InputError:
        raise InputError(f"{aw}: config file {arm['config']} not found; give a path to a run config YAML") from None
    return Arm(arm_name, resolved, _nested(arm.get("overrides"), aw), str(arm.get("label") or ""),
               init_from=arm.get("init_from"), eval=evals, seed_offset=offset)  # fmt: skip


def _check_sources(arms: list[Arm], where: str) -> None:
    """init_from / from name another arm of the grid; no cycle; an eval-only arm is not a source of training."""
    by_name = {a.name: a for a in arms}
    for a in arms:
        key = "init_from" if a.init_from else "from"
        if a.source is None:
            continue
        if a.source not in by_name:
            raise InputError(f"{where}: arm {a.name!r}: {key}: {a.source!r} is not an arm (arms: {', '.join(by_name)})")
        src = by_name[a.source]
        if src.eval_from and src.name != a.name:
            raise InputError(
                f"{where}: arm {a.name!r}: {key}: {a.source!r} is an eval-only arm (it has no checkpoint of its "
                f"own); name the arm it evaluates, {src.eval_from!r}"
            )
    for a in arms:
        path, node = [a.name], a
        while node.source is not None:
            node = by_name[node.source]
            if node.name in path:
                cycle = " -> ".join(path[path.index(node.name) :] + [node.name])
                raise InputError(f"{where}: arms {cycle} start from each other in a cycle; no arm can train first")
            path.append(node.name)


# ---------------------------------------------------------------------------------------------------------
# Budget: every arm trains on the same tokens (or the same training FLOPs).


def tokens_per_step(cfg: RunConfig) -> int:
    """Tokens one optimizer step consumes (all ranks): batch_size sequences of data.seq_len tokens."""
    return cfg.train.batch_size * cfg.data.seq_len


def flops_per_token(cfg: RunConfig) -> float | None:
    """The model's own training FLOPs per token (forward + backward), from a parameter-free (meta) build."""
    import torch

    from latentlm.models import variant_spec

    spec = variant_spec(cfg.model)
    if spec.flops_per_token is None:
        return None
    with torch.device("meta"):
        model = spec.build(cfg.model)
    return spec.flops(model, cfg.data.seq_len)


@dataclass
class Planned:
    """One (arm, seed) run: its resolved config and where it lives. A run that depends on another arm's run of
    the same seed (`source`: init_from or an eval-only arm's from) gets its final config hash only once that run
    has finished: `own_hash` combined with the source's config hash and checkpoint sha256 (runner.bind_source)."""

    arm: str
    seed: int
    cfg: RunConfig
    run_dir: Path
    config_hash: str
    source: str | None = None
    eval_only: bool = False
    own_hash: str = ""
    export_dir: Path | None = None
    """init_from: where the source run's model is exported (inside its run folder); cfg starts from it."""


@dataclass
class ArmPlan:
    name: str
    base: RunConfig
    max_steps: int
    tokens_per_step: int
    flops_per_token: float | None
    eval_only: bool = False


EXPORT_DIR = "hf_export"  # inside a run folder: its model exported as an HF folder for the arms that start from it


def resolve_arms(spec: Spec) -> dict[str, ArmPlan]:
    """Load every arm's config (with the spec's and the arm's overrides) and apply the budget rule."""
    from latentlm.models import variant_spec

    plans: dict[str, ArmPlan] = {}
    trained = [a for a in spec.arms if not a.eval_from]
    for arm in trained:
        try:
            base = load_config(arm.config, merge(spec.overrides, arm.overrides))
        except (ConfigError, InputError) as e:
            raise InputError(f"arm {arm.name!r} ({arm.config.name}): {e}") from None
        fpt = flops_per_token(base) if spec.budget == "flops" else None
        plans[arm.name] = ArmPlan(arm.name, base, base.train.max_steps, tokens_per_step(base), fpt)
    for arm in trained:
        if arm.init_from:
            variant, src = plans[arm.name].base.model.variant, plans[arm.init_from].base.model.variant
            how = variant_spec(plans[arm.name].base.model).hf_export
            if variant != src:
                raise InputError(
                    f"arm {arm.name!r} ({variant}): init_from: {arm.init_from!r} is a {src} arm; an arm starts "
                    "from a run of its own variant"
                )
            if how is None or how.kind != "base_model":
                raise InputError(
                    f"arm {arm.name!r}: init_from needs a variant whose trained model can be the base of another "
                    f"run (HFExport('base_model'), e.g. latent_thoughts); {variant} has none, and the trainer has "
                    "no weight initialisation from another run's checkpoint"
                )
    for arm in spec.arms:
        if arm.eval_from:
            src = plans[arm.eval_from]
            try:
                base = load_config(None, merge(to_dict(src.base), arm.eval_overrides))
            except (ConfigError, InputError) as e:
                raise InputError(f"arm {arm.name!r}: eval_overrides: {e}") from None
            plans[arm.name] = ArmPlan(arm.name, base, 0, 0, None, eval_only=True)
    first = plans[trained[0].name]
    if spec.budget == "tokens":
        total = spec.tokens or first.max_steps * first.tokens_per_step
        for p in plans.values():
            if p.eval_only:
                continue
            p.max_steps = total // p.tokens_per_step
            if p.max_steps < 1:
                raise InputError(
                    f"token budget {total} is below one step of arm {p.name!r} ({p.tokens_per_step} tokens per step); "
                    "raise tokens: or lower that arm's train.batch_size / data.seq_len"
                )
    elif spec.budget == "flops":
        for p in plans.values():
            if p.flops_per_token is None and not p.eval_only:
                raise InputError(
                    f"arm {p.name!r} ({p.base.model.variant}) has no flops_per_token; use budget: tokens for this grid"
                )
        total = spec.flops or first.max_steps * first.tokens_per_step * first.flops_per_token
        for p in plans.values():
            if p.eval_only:
                continue
            step = p.tokens_per_step * p.flops_per_token
            p.max_steps = int(total // step)
            if p.max_steps < 1:
                raise InputError(
                    f"FLOP budget {total:.3g} is below one training step of arm {p.name!r} ({step:.3g} FLOPs per "
                    "step); raise flops: or shrink that arm"
                )
    return plans


def config_hash(cfg: RunConfig) -> str:
    """sha256 of the resolved config (budget-derived max_steps and the seed included; out_dir/resume/log not)."""
    d = to_dict(cfg)
    for section, key in UNHASHED:
        d.get(section, {}).pop(key, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _with_seed(x: Any, seed: int) -> Any:
    """Every "{seed}" in a string setting -> the run's seed (per-seed files: an initial model, a data file)."""
    if isinstance(x, dict):
        return {k: _with_seed(v, seed) for k, v in x.items()}
    if isinstance(x, list):
        return [_with_seed(v, seed) for v in x]
    return x.replace(SEED, str(seed)) if isinstance(x, str) else x


def plan_runs(spec: Spec, out: Path, arms: list[str] | None = None) -> tuple[dict[str, ArmPlan], list[Planned]]:
    """Every (arm, seed) run of the grid, a source arm before the arms that start from it or evaluate it:
    OUT/runs/ARM/seed_N, a fresh config per run."""
    from latentlm.config import build
    from latentlm.models import variant_spec

    plans = resolve_arms(spec)
    runs = []
    for arm in spec.train_order():
        if arms and arm.name not in arms:
            continue
        p = plans[arm.name]
        for seed in spec.seeds:
            run_dir = out / "runs" / arm.name / f"seed_{seed}"
            d = _with_seed(to_dict(p.base), seed)
            if arm.eval_from:  # nothing to train: the source's run, loaded with eval_overrides
                own = digest({"from": arm.eval_from, "eval_overrides": arm.eval_overrides, "seed": seed})
                cfg = build(RunConfig, d)
                runs.append(Planned(arm.name, seed, cfg, run_dir, "", arm.eval_from, True, own))
                continue
            d["train"].update(max_steps=p.max_steps, seed=seed + arm.seed_offset, out_dir=str(run_dir), resume="false")
            if not arm.init_from:
                cfg = build(RunConfig, d)
                runs.append(Planned(arm.name, seed, cfg, run_dir, config_hash(cfg)))
                continue
            relocate = variant_spec(p.base.model).hf_export.relocate
            export = out / "runs" / arm.init_from / f"seed_{seed}" / EXPORT_DIR
            # hashed with a placeholder for the export's path: the source's checkpoint sha256 stands for it
            placeholder = build(RunConfig, {**d, "model": relocate(d["model"], Path(f"<init_from {arm.init_from}>"))})
            cfg = build(RunConfig, {**d, "model": relocate(d["model"], export)})
            runs.append(Planned(arm.name, seed, cfg, run_dir, "", arm.init_from, False, config_hash(placeholder),
                                export))  # fmt: skip
    return plans, runs
