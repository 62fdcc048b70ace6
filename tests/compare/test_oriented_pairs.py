"""oriented_pairs: a grid's paired table (B − A in the grid's own order) read back as the a − b a caller asks for."""

import pytest

from latentlm.compare.aggregate import oriented_pairs
from latentlm.eval.stats import paired_diff

COT, NOCOT, PAUSE = [1.0, 0.98, 0.99], [0.2, 0.25, 0.19], [0.21, 0.22, 0.2]


def test_either_order_equals_the_paired_difference_computed_directly_and_thin_pairs_are_left_out():
    table = [  # as the harness writes it: baseline nocot first, each row b − a
        {"a": "nocot", "b": "cot", "metric": "reasoning_acc", **paired_diff(COT, NOCOT)},
        {"a": "nocot", "b": "pause", "metric": "reasoning_acc", **paired_diff(PAUSE[:1], NOCOT[:1])},  # one seed
        {"a": "nocot", "b": "cot", "metric": "val_bpb", **paired_diff([1.0, 1.1, 1.2], [1.3, 1.1, 1.0])},
    ]
    rows = oriented_pairs(table, [("cot", "nocot"), ("nocot", "cot"), ("pause", "nocot"), ("x", "y")], "reasoning_acc")
    assert [(r["a"], r["b"]) for r in rows] == [("cot", "nocot"), ("nocot", "cot")]
    for r in rows:
        ref = paired_diff(COT, NOCOT) if r["a"] == "cot" else paired_diff(NOCOT, COT)
        assert r["mean_diff"] == pytest.approx(ref["mean_diff"]) and r["ci95"] == pytest.approx(ref["ci95"])
        assert r["n_seeds"] == 3 and r["significant"] == ref["significant"] is True
    assert len(oriented_pairs(table, [("pause", "nocot")], "reasoning_acc", min_seeds=1)) == 1
