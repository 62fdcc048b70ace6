import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from latentlm.data.tokenizer import char_tokenizer
from latentlm.errors import InputError
from latentlm.eval.allocation import allocation_stats, check_reference, collect, selection_table, within_window
from latentlm.eval.perplexity import evaluate_windows
from latentlm.models.gpt import GPT
from latentlm.models.thoughtbubbles import Config, Model
from tests.conftest import tiny_gpt_config


def record(streams, y, z, window):
    return {
        "window": window,
        "ref_entropy": y,
        "own_entropy": y,
        "log_freq": z,
        "layers": {2: {"streams": streams, "p_mass": streams * 0.5}},
    }


def test_partialling_out_frequency_removes_a_confounded_correlation():
    """Streams and entropy both follow frequency only: pooled rho is large, the partial one is near zero."""
    rng = np.random.default_rng(0)
    n = 1500
    z = rng.normal(size=n)
    x = np.round(2 + z + 0.3 * rng.normal(size=n))  # stream counts
    y = z + 0.3 * rng.normal(size=n)
    res = allocation_stats(record(x, y, z, np.arange(n) // 50), n_boot=60)["2"]["streams"]["ref_entropy"]
    assert res["pooled"]["rho"] > 0.7
    assert abs(res["partial_on_logfreq"]["rho"]) < 0.08
    lo, hi = res["partial_on_logfreq"]["ci95"]
    assert lo < 0 < hi


def test_a_direct_dependence_survives_the_partial_and_matches_scipy():
    rng = np.random.default_rng(1)
    n = 1200
    z, y = rng.normal(size=n), rng.normal(size=n)
    x = np.round(y + 0.5 * rng.normal(size=n))
    res = allocation_stats(record(x, y, z, np.arange(n) // 30), n_boot=60)["2"]["streams"]
    assert res["ref_entropy"]["pooled"]["rho"] == pytest.approx(spearmanr(x, y).statistic, abs=1e-9)
    assert res["ref_entropy"]["partial_on_logfreq"]["rho"] > 0.6
    lo, hi = res["ref_entropy"]["pooled"]["ci95"]
    assert lo < res["ref_entropy"]["pooled"]["rho"] < hi


def test_constant_streams_are_reported_not_correlated():
    n = 200
    rng = np.random.default_rng(2)
    res = allocation_stats(record(np.full(n, 2.0), rng.normal(size=n), rng.normal(size=n), np.arange(n) // 20), 50)
    assert res["2"]["streams"] == {"constant": True, "value": 2.0}


def test_within_window_is_the_mean_of_per_window_spearman():
    rng = np.random.default_rng(3)
    x, y = rng.integers(1, 4, 300).astype(float), rng.normal(size=300)
    w = np.arange(300) // 30
    x[w == 4] = 1.0  # a constant window is skipped
    ref = [spearmanr(x[w == k], y[w == k]).statistic for k in range(10) if k != 4]
    got = within_window(x, y, w, n_boot=50, seed=0)
    assert got["windows"] == 9 and got["rho"] == pytest.approx(np.mean(ref), abs=1e-12)


def tb(**kw) -> Model:
    base = dict(variant="thoughtbubbles", vocab_size=64, d_model=32, n_layers=4, n_heads=4, max_seq_len=32)
    base.update(kw)
    return Model(Config(**base)).eval()


def test_collect_pairs_each_tokens_streams_with_the_entropy_at_its_position():
    torch.manual_seed(0)
    model, ref = tb(budget=1.5), GPT(tiny_gpt_config(n_layers=2)).eval()
    windows = [torch.randint(0, 64, (2, 10)), torch.randint(0, 64, (3, 10))]
    log_freq = np.log1p(np.arange(64, dtype=float))
    rec = collect(model, ref, windows, log_freq)
    ids = torch.cat(windows)
    assert len(rec["window"]) == 50 and rec["window"][-1] == 4
    logp = ref(ids).logits.detach().log_softmax(-1).double()
    np.testing.assert_allclose(rec["ref_entropy"], -(logp.exp() * logp).sum(-1).flatten().numpy(), atol=1e-5)
    np.testing.assert_array_equal(rec["log_freq"], log_freq[ids.numpy()].flatten())
    for layer in (1, 2):
        streams = np.concatenate([model.fork_map(w)[layer]["streams"].flatten().numpy() for w in windows])
        np.testing.assert_array_equal(rec["layers"][layer]["streams"], streams)
    assert rec["layers"][2]["streams"].mean() == pytest.approx(1.5)  # k = 15 streams per 10-token window


def test_selection_table_prunes_as_asked_and_restores_the_config():
    torch.manual_seed(1)
    model = tb(budget=1.5)
    windows = [torch.randint(0, 64, (2, 12))]
    token_bytes = np.ones(64, dtype=np.int64)
    out = selection_table(model, lambda: iter(windows), token_bytes)
    assert model.config.ranking == "learned" and model.config.budget == 1.5
    one = tb(budget=1.0)
    one.load_state_dict(model.state_dict())
    assert out["one_stream"]["loss"] == pytest.approx(evaluate_windows(one, windows, token_bytes)["loss"], abs=1e-9)
    assert out["learned"]["loss"] == pytest.approx(evaluate_windows(model, windows, token_bytes)["loss"], abs=1e-9)
    assert out["worst"]["loss"] != out["learned"]["loss"]


def test_a_reference_with_another_tokenizer_is_refused():
    model = tb()
    with pytest.raises(InputError, match="--reference runs/x uses another tokenizer"):
        check_reference(model, char_tokenizer(), None, char_tokenizer("abc"), "runs/x")
    with pytest.raises(InputError, match="needs a thoughtbubbles run"):
        check_reference(GPT(tiny_gpt_config()), char_tokenizer(), None, char_tokenizer(), "runs/x")
