"""run_compare: validate -> plan -> train/reuse -> evaluate -> aggregate -> compare.json + compare.md."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from latentlm.compare import runner
from latentlm.compare.aggregate import STATS_METHOD, paired_table, summarise
from latentlm.compare.spec import Spec, load_spec, plan_runs
from latentlm.errors import InputError


def run_compare(
    spec: str | Path | dict | Spec,
    out: str | Path,
    *,
    arms: list[str] | None = None,
    aggregate_only: bool = False,
    base_dir: str | Path | None = None,
    log=print,
) -> dict:
    """Run (or reuse) the grid of `spec` under `out` and write out/compare.json + out/compare.md; return the
    compare.json dict. `arms` restricts training to those arms (the aggregate covers every finished run);
    `aggregate_only` trains and evaluates nothing."""
    spec = load_spec(spec, base_dir)
    out = Path(out)
    if not runner.is_main():
        log = _quiet
    names = [a.name for a in spec.arms]
    for a in arms or []:
        if a not in names:
            raise InputError(f"--arms {a!r} is not an arm of {spec.name} (arms: {', '.join(names)})")
    runner.check_out(spec, out)
    plans, all_runs = plan_runs(spec, out)
    todo = [r for r in all_runs if not arms or r.arm in arms]
    states = _states(all_runs, todo)  # refuses before anything is written
    if aggregate_only and not any(s == "done" for s in states.values()):
        raise InputError(f"{out} holds no finished run of {spec.name}; run `latentlm compare SPEC --out {out}` first")
    if runner.is_main():
        out.mkdir(parents=True, exist_ok=True)
        grid = out / runner.GRID
        if not grid.is_file():
            runner.write_json(grid, {"name": spec.name, "spec": spec.to_dict(), "created": time.time()})
    t_grid = time.perf_counter()
    group = runner.DistGroup(todo[0].cfg if todo and not aggregate_only else None)
    by_key = {(r.arm, r.seed): r for r in all_runs}
    try:
        _run_all(spec, todo if not aggregate_only else [], states, by_key, group, log)
    finally:
        group.close()
    wall = time.perf_counter() - t_grid
    if not runner.is_main():
        return {}
    return aggregate(spec, out, plans, all_runs, wall)


def _caveats(rows: list[dict], arms: dict) -> list[dict]:
    """A paired row whose arms' likelihoods are not like-for-like (leak, prior Z) says so; a bits-per-byte
    "better" over a leaking likelihood is not a claim about the model."""
    for row in rows:
        notes = []
        for arm in (row["a"], row["b"]):
            f = arms[arm]["flags"]
            if f["leak"]:
                notes.append(f"{arm}'s likelihood leaks")
            if f["prior_z"]:
                notes.append(f"{arm}'s likelihood is a prior-Z estimate")
        row["caveat"] = "; ".join(notes) or None
        if row["caveat"] and "bpb" in row["metric"]:
            row["better"] = None  # lower, but not a like-for-like score
    return rows


def _quiet(*args, **kwargs) -> None:
    pass


def _states(all_runs, todo) -> dict:
    """'new' | 'resume' | 'done' per (arm, seed), in dependency order. A run that starts from (or evaluates)
    another arm's run gets its hash from that run's checkpoint once it is finished; while it is not, the dependent
    folder must be empty (what it holds could not be verified), and a dependent run to train needs its source
    finished or trained in this invocation."""
    by_key = {(r.arm, r.seed): r for r in all_runs}
    todo_keys = {(r.arm, r.seed) for r in todo}
    states: dict = {}
    for r in all_runs:
        key = (r.arm, r.seed)
        if r.source is not None:
            src = by_key[(r.source, r.seed)]
            if states[(src.arm, src.seed)] == "done":
                runner.bind_source(r, src)
            else:
                how = "evaluates" if r.eval_only else "starts from"
                if runner.occupied(r.run_dir):
                    raise InputError(
                        f"{r.run_dir} holds a run that {how} {src.arm} seed {r.seed}, which is not finished (it will "
                        f"be trained again), so that run cannot be verified: delete {r.run_dir}"
                    )
                if key in todo_keys and (src.arm, src.seed) not in todo_keys:
                    raise InputError(
                        f"arm {r.arm!r} seed {r.seed} {how} arm {src.arm!r}, whose seed {r.seed} is not finished; "
                        f"train {src.arm!r} first (add it to --arms)"
                    )
                states[key] = "new"
                continue
        states[key] = runner.check_run(r)
    return states


def _run_all(spec, todo, states, by_key, group, log) -> None:
    for r in todo:
        arm = spec.arm(r.arm)
        state = states[(r.arm, r.seed)]
        src = by_key[(r.source, r.seed)] if r.source else None
        if src is not None and not r.config_hash:
            runner.bind_source(r, src)  # the source finished earlier in this invocation
        rec = runner.read_record(r.run_dir) if state == "done" else None
        if rec is None and r.eval_only:
            log(f"== compare {spec.name}: {r.arm} seed {r.seed} evaluates {src.arm} seed {r.seed} (no training)")
            rec = runner.eval_only_record(spec, r, src, arm.eval_overrides) if runner.is_main() else {}
        elif rec is None:
            log(f"== compare {spec.name}: train {r.arm} seed {r.seed} ({r.cfg.train.max_steps} steps) -> {r.run_dir}"
                + (f", starting from {src.arm} seed {r.seed}" if src else ""))  # fmt: skip
            rec = runner.train_run(spec, r, state, str(arm.config), arm.overrides, src)
        else:
            log(f"== compare {spec.name}: reuse {r.arm} seed {r.seed} (config hash {r.config_hash[:12]} matches)")
        ehash = runner.eval_hash(spec, r.arm)
        if runner.is_main() and (rec.get("eval_hash") != ehash or "metrics" not in rec):
            log(f"   evaluate {r.arm} seed {r.seed}")
            runner.evaluate_run(spec, r, rec)
        group.barrier()  # the other ranks wait while rank 0 evaluates


def aggregate(spec: Spec, out: Path, plans, all_runs, wall_s: float | None = None) -> dict:
    from latentlm.compare.report import write_report

    records: dict[str, dict[int, dict]] = {a.name: {} for a in spec.arms}
    missing = []
    for r in all_runs:
        rec = runner.read_record(r.run_dir)
        if rec is None or rec.get("status") != "done" or "metrics" not in rec:
            missing.append(f"{r.arm}/seed_{r.seed}")
            continue
        rec["run_dir"] = str(r.run_dir)
        rec["stale_eval"] = rec.get("eval_hash") != runner.eval_hash(spec, r.arm)
        records[r.arm][r.seed] = rec
    summary = summarise(records)
    order = [spec.baseline] + [a.name for a in spec.arms if a.name != spec.baseline]
    arms = {}
    for a in spec.arms:
        p = plans[a.name]
        recs = records[a.name]
        first = next(iter(recs.values()), {})
        arms[a.name] = {
            **a.to_dict(),
            "variant": p.base.model.variant,
            "max_steps": p.max_steps,
            "tokens_per_step": p.tokens_per_step,
            "flops_per_token": p.flops_per_token,
            "score_note": first.get("score_note"),
            "flags": {
                "leak": any(r["flags"]["leak"] for r in recs.values()),
                "prior_z": any(r["flags"]["prior_z"] for r in recs.values()),
            },
            "summary": summary.get(a.name, {}),
            "runs": {
                str(seed): {
                    "run_dir": rec["run_dir"],
                    "config_hash": rec["config_hash"],
                    "checkpoint": rec["checkpoint"],
                    "train": rec.get("train"),
                    "metrics": rec.get("metrics"),
                    "stale_eval": rec["stale_eval"],
                }
                for seed, rec in recs.items()
            },
        }
    result = {
        "name": spec.name,
        "title": spec.title,
        "spec": spec.to_dict(),
        "seeds": spec.seeds,
        "budget": {"rule": spec.budget, "tokens": spec.tokens, "flops": spec.flops},
        "baseline": spec.baseline,
        "arms": arms,
        "paired": _caveats(paired_table(summary, order), arms),
        "stats_method": STATS_METHOD,
        "missing": missing,
        "complete": not missing,
        "leak_tolerance_nats": runner.LEAK_TOL,
        "wall_s_this_invocation": wall_s,
        "machine": f"{platform.machine()} {platform.system()}",
    }
    write_report(result, out, records)
    runner.write_json(out / "compare.json", result)
    return json.loads(json.dumps(runner.clean(result), default=str))
