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
