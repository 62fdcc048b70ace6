import json

import pytest

from latentlm.errors import InputError
from latentlm.eval.report import build_report
from latentlm.results import merge_results
from tests.hf.conftest import make_run


def fake_run(tmp_path, name, variant, bpb, fpt, tasks=None, **kw):
    run = tmp_path / name
    make_run(run, variant, **kw)
    from latentlm.config import to_yaml
    from latentlm.train.checkpoint import load_config_of

    (run / "config.yaml").write_text(to_yaml(load_config_of(run)))
    (run / "train_summary.json").write_text(
        json.dumps(
            {
                "params": 1000,
                "flops_per_token": fpt,
                "train_flops": fpt * 1e6,
                "tokens_per_s": 100.0,
                "tokens_seen": 1e6,
            }
        )
    )
    merge_results(run, "val", {"bits_per_byte": bpb, "loss": 1.0, "note": f"note of {name}"})
    for task, acc in (tasks or {}).items():
        merge_results(run, f"choice:{task}", {"acc_norm": acc})
    return run


def test_report_table_charts_and_flop_ratios(tmp_path):
    a = fake_run(tmp_path, "base", "gpt", 2.5, 7e6, {"piqa": 0.52})
    b = fake_run(tmp_path, "bubbles", "thoughtbubbles", 2.25, 14e6, {"piqa": 0.55, "siqa": 0.40})
    merge_results(b, "leak", {"max_abs_dlogp": 0.03})
    path = build_report([a, b], tmp_path / "out")
    text = path.read_text()
    assert "| base | gpt | 0.00M | 7.0M | 1.00 |" in text
    assert "| bubbles | thoughtbubbles |" in text and "| 2.00 |" in text and "2.2500" in text and "3.0e-02" in text
    assert "| bubbles | 0.550 | 0.400 |" in text and "| base | 0.520 | - |" in text  # tasks table, missing as '-'
    assert "note of bubbles" in text
    for png in ("report_bpb.png", "report_bpb_vs_flops.png", "report_tokens_per_s.png", "report_tasks.png"):
        assert (tmp_path / "out" / png).stat().st_size > 1000


def test_report_of_a_non_run_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="is not a run directory"):
        build_report([tmp_path], tmp_path / "out")
    with pytest.raises(InputError, match="at least one run"):
        build_report([], tmp_path / "out")
