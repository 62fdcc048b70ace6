"""Statistics against independent references: brute-force enumeration, closed forms, degenerate cases."""

import math

import numpy as np
import pytest

from latentlm.eval.stats import (
    bootstrap_ci,
    paired_diff,
    partial_spearman,
    rankdata,
    spearman,
    spearman_ci,
    t975,
    wilson,
)


def test_wilson_contains_p_and_stays_in_unit_interval():
    for n in (1, 5, 24, 500):
        for k in range(0, n + 1, max(1, n // 7)):
            lo, hi = wilson(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0
    # closed form at p = 1/2, n = 100: centre 0.5, half-width 1.96*sqrt(.25/100 + 1.96^2/40000)/(1+1.96^2/100)
    lo, hi = wilson(50, 100)
    half = 1.96 * math.sqrt(0.0025 + 1.96**2 / 40000) / (1 + 1.96**2 / 100)
    assert lo == pytest.approx(0.5 - half) and hi == pytest.approx(0.5 + half)


def test_paired_diff_of_arm_with_itself_is_exactly_zero():
    a = [2.31, 2.35, 2.29]
    d = paired_diff(a, a)
    assert d["mean_diff"] == 0.0 and d["ci95"] == [0.0, 0.0] and not d["significant"]


def test_paired_diff_matches_hand_t_interval():
    a, b = [1.0, 2.0, 4.0], [0.5, 1.0, 1.5]  # differences 0.5, 1, 2.5: mean 4/3, sd sqrt(13/12)
    d = paired_diff(a, b)
    sd = math.sqrt(((0.5 - 4 / 3) ** 2 + (1 - 4 / 3) ** 2 + (2.5 - 4 / 3) ** 2) / 2)
    half = 4.303 * sd / math.sqrt(3)
    assert d["mean_diff"] == pytest.approx(4 / 3)
    assert d["ci95"] == pytest.approx([4 / 3 - half, 4 / 3 + half])
    assert d["significant"] == (4 / 3 - half > 0)
    assert math.isnan(paired_diff([1.0], [0.0])["ci95"][0])
    with pytest.raises(ValueError):
        paired_diff([1.0, 2.0], [1.0])


def test_t_quantile_table_is_monotone_and_tends_to_normal():
    vals = [t975(k) for k in range(1, 200)]
    assert all(x >= y for x, y in zip(vals, vals[1:]))
    assert t975(1000) == pytest.approx(1.962, abs=2e-3)


def test_rankdata_and_spearman_against_brute_force():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 40).astype(float)  # many ties
    r = rankdata(x)
    naive = np.array([np.sum(x < v) + (np.sum(x == v) + 1) / 2 for v in x])  # average rank by counting
    np.testing.assert_allclose(r, naive)
    assert spearman(x, x * 3 + 1) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(np.ones(5), np.arange(5)))


def test_partial_spearman_removes_a_shared_driver():
    rng = np.random.default_rng(1)
    z = rng.normal(size=2000)
    x, y = z + 0.3 * rng.normal(size=2000), z + 0.3 * rng.normal(size=2000)  # related only through z
    assert spearman(x, y) > 0.8
    assert abs(partial_spearman(x, y, z)) < 0.1


def test_bootstrap_intervals_cover_and_are_seeded():
    rng = np.random.default_rng(2)
    x = rng.normal(1.0, 1.0, 400)
    lo, hi = bootstrap_ci(x, n_boot=500)
    assert lo < 1.0 < hi and bootstrap_ci(x, n_boot=500) == (lo, hi)
    y = x + rng.normal(0, 1, 400)
    res = spearman_ci(x, y, n_boot=200)
    assert res["ci95"][0] < res["rho"] < res["ci95"][1]
    grouped = spearman_ci(x, y, groups=np.arange(400) // 20, n_boot=200)
    assert grouped["rho"] == res["rho"] and grouped["method"].startswith("cluster")
