"""The comparison harness: named arms x seeds under one equal-budget rule, each run in its own folder, paired 95 %
intervals, `compare.json` (for machines) and `compare.md` with charts (for people).

Command line::

    latentlm compare SPEC.yaml --out DIR [--arms A,B] [--aggregate-only]

Python (the same thing; experiment scripts build the spec as a dict)::

    from latentlm.compare import run_compare
    res = run_compare({
        "name": "tb_vs_gpt",
        "seeds": [1, 2, 3],
        "budget": "flops",                      # tokens (default) | flops | none
        "arms": {
            "gpt": {"config": "configs/gpt/tiny.yaml"},
            "tb":  {"config": "configs/thoughtbubbles/tiny.yaml", "overrides": {"model.budget": 1.5}},
        },
        "heldout": ["my_text.txt"],             # scored with each run's own tokenizer
        "eval": {"choice": ["piqa"], "choice_limit": 200},
    }, out="runs/tb_vs_gpt")
    res["paired"]                               # [{a, b, metric, mean_diff, ci95, significant, method, ...}]
    res["arms"]["gpt"]["summary"]["val_bpb"]    # {mean, sd, n, values: {seed: bpb}}

Spec keys: ``name`` (the grid's identity; an --out folder holding another name is refused), ``seeds`` (non-empty,
distinct), ``arms`` (NAME: {config, overrides: {dotted.key: value}, label, init_from, from, eval_overrides, eval,
seed_offset}), ``overrides`` (for every arm), ``budget`` with optional ``tokens`` / ``flops`` totals (default: the
first trained arm's max_steps x its tokens per step, or x its FLOPs per step), ``heldout`` (.txt / .jsonl paths or
folders; ``package:NAME/PATH`` names a file inside an installed Python package), ``eval`` (val_batches, leak,
choice, choice_limit, reasoning, reasoning_limit, reasoning_test_seed, reasoning_batch, policy), ``baseline`` (arm
listed first in the paired table), ``title``. ``{seed}`` in any string setting is replaced by the run's seed (a
per-seed initial model or data file).

Arms that build on other arms (of the same seed), e.g. a CoT-SFT stage that every method fine-tunes, and a
training-free decoding of one of them::

    "arms": {
        "cot_base": {"config": "configs/latent_thoughts/cot.yaml", "seed_offset": 100},
        "coconut":  {"config": "configs/latent_thoughts/cot.yaml", "init_from": "cot_base",
                     "overrides": {"model.method": "coconut"}},
        "soft":     {"from": "cot_base", "eval_overrides": {"model.latent_embedding": "soft"},
                     "eval": {"policy": "cold_stop"}},
    },
    "eval": {"reasoning": "perm", "reasoning_limit": 500, "reasoning_test_seed": 1000},

- ``init_from: ARM``: the run of seed N starts from ARM's finished run of seed N; arms train in dependency order
  (a cycle or an unknown arm is refused). The variant must export its trained model as a base of another run
  (``VariantSpec.hf_export`` kind ``base_model``, latent_thoughts): the source run is exported once into
  SOURCE_RUN/hf_export (latentlm export) and the arm's ``model.base_model`` points there. Other variants are
  refused: the trainer has no weight initialisation from another run's checkpoint. The dependent run's config hash
  includes the source's config hash and checkpoint sha256, so a retrained source makes it refused like any other
  changed config; while the source is not finished, a dependent folder that holds a run is refused, and
  ``--arms DEPENDENT`` alone needs the source finished.
- ``from: ARM`` (eval-only): no training; ARM's checkpoint of the same seed is loaded with ``eval_overrides``
  (config changes before the model is built, e.g. how it decodes) and scored; it is an arm like any other in the
  tables and paired differences, with steps, tokens, training FLOPs and time 0.
- ``eval: {...}`` in an arm: its eval settings over the spec's (e.g. another policy or reasoning_limit).
- ``seed_offset: K``: the arm's run of seed N trains with train.seed = N + K (another data draw, e.g. a base stage
  that must not see the items its dependents train on); it is still seed N for pairing.
- ``eval.reasoning_test_seed``: every run scores the test items drawn with this seed, instead of its own
  train.seed, so all seeds of the grid answer the same questions (a stronger pairing).

Runs: OUT/runs/ARM/seed_N, trained with train.seed = N (same initial draw and data order across arms, which is what
makes differences paired), train.resume=false, and train.max_steps from the budget rule. Each run's record
RUN/compare_run.json holds the config hash (sha256 of the resolved config, max_steps and seed included), the
checkpoint's sha256, the training summary (with ``last_phase``: the means of the trainer's logged train metrics
over the last curriculum phase, e.g. LT-Tuning's ``latents_per_row``, the <thinking> inserted per row) and the
metrics, computed here with the library's evaluators (eval/perplexity.py, eval/leak.py, eval/choice.py,
eval/reasoning.py: accuracy with its Wilson interval and per-item correctness, generated tokens, latent steps,
terminated fraction, latent norm ratio, successive-latent cosine). A finished run is reused only when its hash
matches (no training step runs); an interrupted run of the same hash continues from its checkpoint; a folder with
another hash is refused with one `error:` line.

Budget: tokens per step = train.batch_size x data.seq_len (all ranks). For reasoning data (padded batches) this is
nominal, and a curriculum scheduled in steps is rescaled with max_steps; variants without ``flops_per_token``
(latent_thoughts) take ``budget: tokens`` only.

Scaling out: under ``torchrun --nproc_per_node=K -m latentlm compare ...`` every run trains with DDP over the K
ranks (rank 0 evaluates and writes). Over several machines, give each its arms (or use a SLURM job array with one
task per arm) on a shared filesystem, then aggregate once::

    latentlm compare SPEC --out /shared/DIR --arms gpt        # machine 1
    latentlm compare SPEC --out /shared/DIR --arms tb         # machine 2
    latentlm compare SPEC --out /shared/DIR --aggregate-only  # anywhere, after both finished

Intervals come from latentlm.eval.stats only (mean_sd, paired_diff = paired t, wilson); compare.md says so.
"""

from latentlm.compare.grid import aggregate, run_compare
from latentlm.compare.spec import Spec, load_spec, plan_runs

__all__ = ["run_compare", "aggregate", "load_spec", "plan_runs", "Spec"]
