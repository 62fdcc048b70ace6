"""The benchmarks' training steps run for ours and for each peer (HF Llama, x-transformers): a peer is no latentlm
variant, and a step that cannot build its optimizer for it breaks the whole benchmark (it did: `build_optimizer`
asked the peer for a spec). One untimed step each at the --quick size; timing is the benchmarks' own business."""

import importlib.util
import sys

import pytest
import torch

from tests.compare.conftest import REPO


def bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module


def moved(model, step) -> bool:
    before = [p.detach().clone() for p in model.parameters()]
    step()
    return any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_gpt_vs_hf_steps_update_ours_and_the_hf_peer():
    b = bench("gpt_vs_hf")
    s = {**b.SIZES["quick"], "B": 2, "T": 16}
    ours, hf = b.build_pair(s)
    x = torch.randint(0, s["V"], (s["B"], s["T"] + 1))
    assert moved(ours, b.train_step_fn(ours.train(), x[:, :-1], x[:, 1:], hf=False))
    assert moved(hf, b.train_step_fn(hf.train(), x, None, hf=True))


def test_free_transformer_cost_steps_update_every_kind_including_the_x_transformers_peer():
    pytest.importorskip("x_transformers")
    b = bench("free_transformer_cost")
    s = {**b.SIZES["quick"], "B": 2, "T": 16}
    for kind in ("gpt", "ours", "xt"):
        model, step = b.step_fn(kind, s)
        assert moved(model, step), kind
