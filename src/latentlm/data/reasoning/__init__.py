"""Reasoning and synthetic-task data, generated offline, and the trainer data sources that serve them.

`build_reasoning_source(cfg, tokenizer, split, rank, world_size)` picks the task named by `data.reasoning` from
REASONING_TASKS; every source follows `latentlm.data.source.DataSource`. Modules:
- `types`: ReasoningExample (question, steps, answer);
- `blocks`: the Free Transformer's synthetic task (Fleuret 2025, §4) and its source;
- `gsm`, `symbolic`: GSM-style word problems (reasoning-gym's GSM-Symbolic), ProsQA- and ProntoQA-style graphs
  and deduction, k-hop pointer chasing, S5 state tracking;
- `tasks`: generated sets by name (`prosqa:n_nodes=23`), balanced and seeded per split;
- `files`: user GSM8K / GSM8k-Aug / Coconut / LT-Tuning jsonl and iCoT txt files, validated line by line;
- `vocab`: the word-level tokenizer of small-model experiments;
- `source`: ReasoningSource (epochs, collation, eval batches) over a method's `Curriculum`, registered per variant.
"""

from latentlm.data.reasoning.blocks import BlockSource, BlockTask, build_blocks_source
from latentlm.data.reasoning.files import load_examples
from latentlm.data.reasoning.gsm import gsm_examples
from latentlm.data.reasoning.source import (
    CURRICULA,
    IGNORE,
    REASONING_TASKS,
    Curriculum,
    ReasoningSource,
    build_examples_source,
    build_reasoning_source,
    collate,
    register_curriculum,
)
from latentlm.data.reasoning.symbolic import (
    NODES,
    PEOPLE,
    PERM_OPS,
    PROSQA_STEPS,
    SYLLABLES,
    _distances,
    _path,
    hops_example,
    perm_example,
    prontoqa_example,
    prosqa_example,
)
from latentlm.data.reasoning.tasks import BALANCE, GENERATORS, generated_examples, parse_task, reasoning_examples
from latentlm.data.reasoning.types import ReasoningExample
from latentlm.data.reasoning.vocab import WORD_PUNCT, word_tokenizer

__all__ = [
    "BALANCE",
    "CURRICULA",
    "GENERATORS",
    "IGNORE",
    "NODES",
    "PEOPLE",
    "PERM_OPS",
    "PROSQA_STEPS",
    "REASONING_TASKS",
    "SYLLABLES",
    "WORD_PUNCT",
    "BlockSource",
    "BlockTask",
    "Curriculum",
    "ReasoningExample",
    "ReasoningSource",
    "_distances",
    "_path",
    "build_blocks_source",
    "build_examples_source",
    "build_reasoning_source",
    "collate",
    "generated_examples",
    "gsm_examples",
    "hops_example",
    "load_examples",
    "parse_task",
    "perm_example",
    "prontoqa_example",
    "prosqa_example",
    "reasoning_examples",
    "register_curriculum",
    "word_tokenizer",
]
