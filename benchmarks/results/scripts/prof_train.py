import torch
from torch.profiler import ProfilerActivity, profile

from latentlm.config import TrainConfig
from latentlm.models.gpt import GPT, GPTConfig
from latentlm.train.optim import build_optimizer

torch.manual_seed(0)
m = GPT(GPTConfig(vocab_size=8192, d_model=384, n_layers=6, n_heads=6, max_seq_len=416)).train()
opt = build_optimizer(m, TrainConfig(lr=1e-4))
x = torch.randint(0, 8192, (16, 257))


def step():
    loss = m(x[:, :-1], labels=x[:, 1:]).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


step()
step()
with profile(activities=[ProfilerActivity.CPU]) as prof:
    step()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
