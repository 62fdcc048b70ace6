"""The lm-eval adapter: against the direct sum of score(), against lm-eval's own HFLM on an exported GPT, and its
rolling windows and stop strings."""

import json

import pytest
import torch

pytest.importorskip("lm_eval")
from lm_eval.api.instance import Instance  # noqa: E402

from latentlm.eval.choice import encode_pair  # noqa: E402
from latentlm.eval.harness import LatentLMEvalLM, cut_at, run_tasks  # noqa: E402
from tests.eval.test_choice import Bigram  # noqa: E402
from tests.hf.conftest import make_run  # noqa: E402


def req(kind, *args):
    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


PAIRS = [("The king", " is dead"), ("ROMEO:", " O, she doth teach"), ("a b c", " d"), ("Long live ", "the queen")]
DOCS = ["To be, or not to be, that is the question.", "Now is the winter of our discontent."]


def test_loglikelihood_equals_the_direct_sum_of_score(tmp_path):
    model, tok = make_run(tmp_path / "run")
    lm = LatentLMEvalLM(model, tok, batch_size=3)
    got = lm.loglikelihood([req("loglikelihood", c, x) for c, x in PAIRS])
    for (context, cont), (value, _) in zip(PAIRS, got):
        ctx, cont_ids = encode_pair(tok, context, cont)
        ids = torch.tensor([ctx + cont_ids])
        assert value == pytest.approx(float(model.score(ids)[0, len(ctx) :].sum()), abs=1e-4)


def test_parity_with_lm_evals_hflm_on_the_exported_gpt(tmp_path):
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from latentlm.hf.export import export_run

    model, tok = make_run(tmp_path / "run")
    out = export_run(tmp_path / "run", tmp_path / "hf")
    hf_model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    hf_tok = AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    hflm = HFLM(pretrained=hf_model, tokenizer=hf_tok, batch_size=4, max_length=model.config.max_seq_len)
    ours = LatentLMEvalLM(model, tok, batch_size=4)
    requests = [req("loglikelihood", c, x) for c, x in PAIRS]
    for (a, ga), (b, gb) in zip(ours.loglikelihood(requests), hflm.loglikelihood(requests)):
        assert a == pytest.approx(b, abs=1e-4) and ga == gb
    rolling = [req("loglikelihood_rolling", d) for d in DOCS]  # shorter than one window: identical windows
    for a, b in zip(ours.loglikelihood_rolling(rolling), hflm.loglikelihood_rolling(rolling)):
        assert a == pytest.approx(b, abs=1e-3)


def test_rolling_windows_predict_every_token_exactly_once():
    from latentlm.data.tokenizer import char_tokenizer

    tok = char_tokenizer()
    table = torch.zeros(tok.vocab_size, tok.vocab_size)
    model = Bigram(table, max_seq_len=16)  # uniform: every prediction costs exactly log V
    lm = LatentLMEvalLM(model, tok, batch_size=4, greedy_check=False)
    text = "All the world's a stage, and all the men and women merely players; they have their exits."
    total = lm.loglikelihood_rolling([req("loglikelihood_rolling", text)])[0]
    n = len(tok.encode(text))
    assert n > 3 * 16  # several windows
    assert total == pytest.approx(-n * torch.log(torch.tensor(float(tok.vocab_size))).item(), rel=1e-5)


class Scripted(torch.nn.Module):
    """generate() returns a fixed text; for testing stop strings."""

    def __init__(self, tok, text):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.tok, self.text = tok, text
        self.config = type("C", (), {"max_seq_len": 128})()

    def generate(self, ids, n, sampling=None, attention_mask=None, eos_token_id=None):
        new = torch.tensor([self.tok.encode(self.text)[:n]] * ids.shape[0])
        return torch.cat([ids, new], 1)


def test_generate_until_stops_at_the_first_stop_string():
    from latentlm.data.tokenizer import char_tokenizer

    tok = char_tokenizer()
    lm = LatentLMEvalLM(Scripted(tok, "42 apples.\nQuestion: next"), tok)
    out = lm.generate_until(
        [
            req("generate_until", "Q: 6*7?\nA:", {"until": ["\n", "Question:"], "max_gen_toks": 30}),
            req("generate_until", "Q: x", {"until": "apples", "max_gen_toks": 30}),
        ]
    )
    assert out == ["42 apples.", "42 "]
    assert cut_at("abc", ["z"]) == "abc"


def test_run_tasks_offline_and_bad_task_names(tmp_path, monkeypatch):
    from latentlm.errors import InputError

    monkeypatch.setenv("LATENTLM_DATA", str(tmp_path / "data"))
    model, tok = make_run(tmp_path / "run")
    from latentlm.train.checkpoint import load_config_of

    cfg = load_config_of(tmp_path / "run")
    with pytest.raises(InputError, match=r"run `latentlm data prepare piqa` first"):
        run_tasks(model, tok, cfg, ["latentlm_piqa"], tmp_path / "run")
    from latentlm.eval.choice import prepare_task

    prepare_task("openbookqa", tmp_path / "data")
    with pytest.raises(InputError, match="unknown lm-eval task"):
        run_tasks(model, tok, cfg, ["latentlm_nope"], tmp_path / "run")
    res = run_tasks(model, tok, cfg, ["latentlm_openbookqa"], tmp_path / "run", limit=8)
    acc = res["results"]["latentlm_openbookqa"]["acc,none"]
    assert 0.0 <= acc <= 1.0 and res["results"]["latentlm_openbookqa"]["sample_len"] == 8
    json.dumps(res, default=str)
    assert "latentlm_openbookqa" in res["table"] and "Stderr" in res["table"]  # lm-eval's own table, with stderr
    prov = res["provenance"]
    assert len(prov["sha256"]) == 64 and prov["limit"] == 8 and prov["lm_eval"]


def test_shipped_task_yamls_are_valid_lm_eval_configs_resolved_per_data_root(tmp_path):
    """lm-eval's own TaskManager indexes the shipped folder and a resolved copy; the copy names the data root."""
    from lm_eval.tasks import TaskManager

    from latentlm.eval.tasks import install_tasks, shipped
    from latentlm.shipped import tasks_dir

    names = set(shipped())
    assert {"latentlm_piqa", "latentlm_heldout_ppl"} <= names
    assert names <= set(TaskManager(include_path=str(tasks_dir()), include_defaults=False).all_tasks)
    out = install_tasks(tmp_path / "root")
    assert names <= set(TaskManager(include_path=str(out), include_defaults=False).all_tasks)
    text = (out / "latentlm_piqa.yaml").read_text()
    assert f'"{(tmp_path / "root").resolve()}/tasks/piqa.jsonl"' in text and "{{context}}" in text


def test_lm_evals_own_cli_runs_a_latentlm_run_through_the_startup_hook(tmp_path):
    """`lm_eval --model latentlm --model_args run_dir=R --tasks latentlm_openbookqa`, with the .pth file the wheel
    installs processed by `site` as at interpreter start (site.addsitedir on src/, where it lies in the repo)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from latentlm.eval.choice import prepare_task
    from latentlm.eval.tasks import install_tasks

    src = Path(__file__).resolve().parents[2] / "src"
    make_run(tmp_path / "run")
    prepare_task("openbookqa", tmp_path / "data")
    install_tasks(tmp_path / "data")
    env = {**os.environ, "LATENTLM_DATA": str(tmp_path / "data"), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    boot = f"import site, sys; site.addsitedir({str(src)!r}); from lm_eval.__main__ import cli_evaluate; cli_evaluate()"
    args = ["--model", "latentlm", "--model_args", f"run_dir={tmp_path / 'run'},batch_size=4"]
    args += ["--tasks", "latentlm_openbookqa", "--limit", "4"]
    r = subprocess.run([sys.executable, "-c", boot, *args], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "latentlm_openbookqa" in r.stdout and "acc_norm" in r.stdout, r.stdout
    # the hook is what registers the name: switched off, lm-eval's registry does not know it
    probe = f"import site; site.addsitedir({str(src)!r}); import lm_eval.models, lm_eval.api.registry as r; print('latentlm' in r.model_registry)"
    r = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env={**env, "LATENTLM_LM_EVAL_HOOK": "0"}
    )
    assert r.stdout.strip() == "False", r.stderr[-1000:]
