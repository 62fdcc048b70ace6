import pytest
import torch

from latentlm.data.reasoning import ReasoningExample
from latentlm.eval.reasoning import evaluate_reasoning, extract_answer


def test_answer_extraction_follows_the_official_metric():
    assert extract_answer("3*4=12\n2+12=14\n### 1,014\nmore") == "1014"
    assert extract_answer("Tom is a wumpus.\n### Tom is a  wumpus.") == "Tom is a wumpus."
    assert extract_answer("no marker") == ""
    assert extract_answer("### Zoe is a <thinking>fexyimpus.") == "Zoe is a fexyimpus."  # special tokens stripped
    assert extract_answer("<latent><eot>### 7<|endoftext|>") == "7"


class Oracle(torch.nn.Module):
    """A stand-in model whose generation writes a fixed continuation, with one latent step per row."""

    def __init__(self, tok, replies, cfg):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.tok, self.replies, self.config = tok, replies, cfg
        E = torch.nn.Embedding(tok.vocab_size, 4)
        torch.nn.init.constant_(E.weight, 1.0)
        self.E, self.extra_new_tokens = E, 0

    def reasoning_prompt(self, ex, tok):
        return tok.encode(ex.question + "\n")

    def generation_options(self, examples, policy=None):
        return {}

    def embedding_norm(self):
        return float(self.E.weight.detach().norm(dim=-1).mean())

    def generate(self, ids, n, attention_mask=None, policy=None, return_trace=True):
        rows = [self.tok.encode(r) + [self.tok.eos_id] for r in self.replies[: ids.shape[0]]]
        self.replies = self.replies[ids.shape[0] :]
        width = max(map(len, rows))
        new = torch.tensor([r + [self.tok.eos_id] * (width - len(r)) for r in rows])
        latent = torch.ones(ids.shape[0], dtype=torch.bool)
        z1, z2 = torch.ones(ids.shape[0], 4) * 2, torch.ones(ids.shape[0], 4) * -2
        return torch.cat([ids, new], 1), {
            "latent_steps": torch.full((ids.shape[0],), 2),
            "latents": [(latent, z1), (latent, z2)],
        }


def test_accuracy_token_counts_and_collapse_diagnostics():
    from latentlm.data.tokenizer import char_tokenizer
    from latentlm.models.latent_thoughts import Config

    tok = char_tokenizer()
    tok.add_special_tokens(Config().special_tokens)  # a run's tokenizer carries them (checked by the evaluator)
    exs = [ReasoningExample("1+1?", [], "2"), ReasoningExample("2+2?", [], "4"), ReasoningExample("3+3?", [], "6")]
    model = Oracle(tok, ["1+1=2\n### 2", "### 5", "x\n### 6"], Config(method="cot", max_seq_len=128))
    res = evaluate_reasoning(model, tok, exs, batch_size=2)
    assert res["accuracy"] == pytest.approx(2 / 3) and res["n"] == 3 and res["correct"] == [1, 0, 1]
    assert res["terminated_frac"] == 1.0
    assert res["generated_tokens"] == pytest.approx((len("1+1=2\n### 2") + len("### 5") + len("x\n### 6")) / 3)
    assert res["latent_steps"] == 2
    assert res["latent_norm_ratio"] == pytest.approx(2.0)  # |(+-2, +-2, +-2, +-2)| = 4 over |(1, 1, 1, 1)| = 2
    assert res["successive_latent_cosine"] == pytest.approx(-1.0)
    assert res["predictions"] == ["2", "5", "6"]
    # answers 2, 5, 6 against golds 2, 4, 6: P_pred(2) P_gold(2) + P_pred(6) P_gold(6) = 2 / 9
    assert res["own_chance"] == pytest.approx(2 / 9)


def test_own_chance_is_the_majority_rate_for_a_constant_answer_and_a_pair_count_for_any_guess():
    from latentlm.eval.reasoning import own_chance

    gold = ["a"] * 6 + ["b"] * 3 + ["c"]
    assert own_chance(["a"] * 10, gold) == pytest.approx(0.6)
    gold, guess = ["a"] * 4 + ["b"] * 2 + ["c", "e"], ["a", "b", "c", "d"] * 2
    brute = sum(p == g for p in guess for g in gold) / len(gold) ** 2  # every answer given x every item
    assert own_chance(guess, gold) == pytest.approx(brute) == pytest.approx(0.25 * (4 + 2 + 1) / 8)


def test_max_new_tokens_default_covers_the_longest_gold_chain_and_unfit_chains_are_errors():
    from latentlm.data.tokenizer import char_tokenizer
    from latentlm.errors import InputError
    from latentlm.eval.reasoning import default_max_new_tokens, gold_chain_tokens
    from latentlm.models.latent_thoughts import Config

    tok = char_tokenizer()
    exs = [ReasoningExample("1+1?", ["1+1=2"], "2"), ReasoningExample("2+2?", ["2+2=4", "4+0=4"], "4")]
    chains = gold_chain_tokens(exs, tok)
    assert chains == [len("1+1=2\n### 2") + 1, len("2+2=4\n4+0=4\n### 4") + 1]  # steps, answer, end of text
    prompts = [tok.encode(ex.question + "\n") for ex in exs]
    assert default_max_new_tokens(exs, tok, prompts, 128) == int(1.5 * chains[1] + 0.999)
    with pytest.raises(InputError, match=r"example 1: prompt \(5 tokens\) \+ gold chain \(18\) exceed"):
        default_max_new_tokens(exs, tok, prompts, 20)
    tok.add_special_tokens(Config().special_tokens)
    # a generation cut before its end-of-text does not count as terminated, and the default budget is used
    model = Oracle(tok, ["### 2", "2+2=4\n### 4"], Config(method="cot", max_seq_len=128))
    res = evaluate_reasoning(model, tok, exs, batch_size=2)
    assert res["max_new_tokens"] == default_max_new_tokens(exs, tok, prompts, 128)
