import sys

sys.path.insert(0, "/work/wt/r-perf/benchmarks")
import torch
from _measure import load_note, paired, speed_ratio

from latentlm.models.decoder import prompt_layout, sampling_loop
from latentlm.models.gpt import GPT, GPTConfig

torch.manual_seed(0)
m = GPT(GPTConfig(vocab_size=8192, d_model=384, n_layers=6, n_heads=6, max_seq_len=416)).eval()


def dynamic(p, new):  # the previous _generate: growing views, a fresh causal/mask path per step
    B, T = p.shape
    cache = m.new_cache(B, T + new)
    positions, kv = prompt_layout(p, None, T + new)
    st = {"pos": positions[:, -1:] + 1}

    def nl(tok):
        if tok is None:
            return m.step(p, positions, cache, kv)
        lg = m.step(tok[:, None], st["pos"], cache, kv)
        st["pos"] = st["pos"] + 1
        return lg

    with torch.inference_mode():
        return sampling_loop(p, new, None, None, None, nl)


print(load_note())
for b in (1, 8):
    p = torch.randint(0, 8192, (b, 32))
    assert torch.equal(dynamic(p, 128), m.generate(p, 128))
    t = paired({"static": lambda p=p: m.generate(p, 128), "dynamic": lambda p=p: dynamic(p, 128)}, reps=5)
    print(f"b={b} static gain over dynamic (median, IQR):", [round(v, 3) for v in speed_ratio(t, "static", "dynamic")])
print(load_note())
