import importlib.util
import sys

sys.path.insert(0, "/work/wt/r-perf/benchmarks")
import torch
from _measure import load_note, paired, speed_ratio


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


old = load("/tmp/perf/base/src/latentlm/nn/loss.py", "old_loss")
new = load("/work/wt/r-perf/src/latentlm/nn/loss.py", "new_loss")
torch.manual_seed(0)
h = torch.randn(4096, 384, requires_grad=True)
w = (0.05 * torch.randn(8192, 384)).requires_grad_()
y = torch.randint(0, 8192, (4096,))


def f(mod):
    def run():
        loss = mod.linear_cross_entropy(h, w, y)
        loss.backward()
        h.grad = None
        w.grad = None

    return run


lo, ln = old.linear_cross_entropy(h, w, y), new.linear_cross_entropy(h, w, y)
print("loss old/new", lo.item(), ln.item())
print(load_note())
t = paired({"new": f(new), "old": f(old)}, reps=7)
print(
    "CE gain old/new (median, IQR):",
    [round(v, 3) for v in speed_ratio(t, "new", "old")],
    "new s",
    [round(v, 3) for v in t["new"]],
)
