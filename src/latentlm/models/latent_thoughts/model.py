"""Latent thoughts on a pretrained causal LM: Coconut (Hao et al. 2024), LT-Tuning (Liu et al. 2026), Soft
Thinking (Zhang et al. 2025), and the No-CoT / CoT-SFT / pause-token baselines, under the variant contract.

A latent position holds a marker token (<latent> for Coconut, <thinking> for LT-Tuning) whose input embedding is
replaced by a vector built from the previous position's outputs (fusion.py). Training and scoring run the batched
frontier passes (passes.py); generation is batched and KV-cached with per-row switching (generate.py,
policies.py). Everything method-specific comes from the method's record (methods.py). The curriculum stage
(0-based) arrives with the batch ("stage"), which picks LT-Tuning's builder: hidden state in stage 1,
context-prediction fusion in stage 2.
"""

from __future__ import annotations

import torch
from torch import nn

from latentlm.data.tokenizer import Tokenizer
from latentlm.models.decoder import Decoder, token_logprobs
from latentlm.models.latent_thoughts import policies as P
from latentlm.models.latent_thoughts.base import add_special_tokens, load_base, resolve_base, save_base_record
from latentlm.models.latent_thoughts.config import LatentThoughtsConfig
from latentlm.models.latent_thoughts.fusion import Adapter, LatentBuilder
from latentlm.models.latent_thoughts.generate import generate_latent
from latentlm.models.latent_thoughts.methods import get_method
from latentlm.models.latent_thoughts.passes import LlamaRunner, frontier_forward
from latentlm.outputs import LMOutput


class LatentThoughts(nn.Module):
    def __init__(self, config: LatentThoughtsConfig):
        super().__init__()
        config.validate()
        self.config = c = config
        self.method = get_method(c.method)
        path = resolve_base(c.base_model)
        self.base = load_base(path)
        self.tokenizer = Tokenizer.load(path)
        self.ids = dict(
            zip(c.special_tokens, add_special_tokens(self.base, self.tokenizer, c.special_tokens, c.init_token))
        )
        self.runner = LlamaRunner(self.base)
        d = self.base.config.hidden_size
        self.adapter = Adapter(d, c.adapter_hidden) if c.adapter else None
        self.ddp_find_unused_parameters = c.adapter  # batches without latents leave the adapter unused
        self.latent_ids = [self.ids[t] for t in self.method.latent_markers]
        self.stage = c.n_stages - 1  # inference uses the final stage's latents; training batches say otherwise

    @property
    def vocab_size(self) -> int:
        return self.base.get_input_embeddings().weight.shape[0]

    @property
    def score_note(self) -> str:
        if self.latent_ids:
            return f"next-token likelihood with latents at the {self.config.method} marker positions"
        return "exact next-token likelihood of the fine-tuned base model"

    def builder(self, stage: int | None = None) -> LatentBuilder:
        c, stage = self.config, self.stage if stage is None else stage
        kind = self.method.latent_kind(stage) if c.latent_embedding == "auto" else c.latent_embedding
        temperature = c.soft_temperature if kind == "soft" else c.fusion_temperature
        return LatentBuilder(
            kind,
            self.base.get_input_embeddings(),
            alpha=c.fusion_alpha,
            top_p=c.fusion_top_p,
            temperature=temperature,
            masked=[self.ids["<thinking>"]] if "<thinking>" in self.ids else None,
            top_k=c.soft_top_k,
            min_p=c.soft_min_p,
            adapter=self.adapter,
        )

    def latent_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        mask = torch.zeros_like(input_ids, dtype=torch.bool)
        for i in self.latent_ids:
            mask |= input_ids == i
        return mask if attention_mask is None else mask & attention_mask.bool()

    # --- the variant contract --------------------------------------------------------------------------------

    def forward(self, input_ids, labels=None, attention_mask=None, stage=None, **batch) -> LMOutput:
        if input_ids.shape[1] > self.config.max_seq_len:
            from latentlm.errors import InputError

            raise InputError(
                f"sequence of {input_ids.shape[1]} tokens exceeds model.max_seq_len={self.config.max_seq_len}"
            )
        latent = self.latent_mask(input_ids, attention_mask)
        metrics = {}
        if bool(latent.any()):
            stage = self.stage if stage is None else int(stage)
            logits, _, n_pass, _ = frontier_forward(self.runner, input_ids, attention_mask, latent, self.builder(stage))
            metrics["n_latent_passes"] = float(n_pass)
            metrics["latents_per_row"] = float(latent.sum(1).float().mean())
        else:
            logits = self.base(input_ids=input_ids, attention_mask=attention_mask).logits
        loss = None
        if labels is not None:
            loss = Decoder.lm_loss(logits, labels)
            metrics["ce"] = loss.detach()
        return LMOutput(loss=loss, logits=logits, metrics=metrics)

    def score(self, input_ids, attention_mask=None) -> torch.Tensor:
        with torch.inference_mode():
            out = token_logprobs(self(input_ids, attention_mask=attention_mask).logits, input_ids, attention_mask)
        return out.clone()

    def policy(self, name: str | None = None, n_latents=None) -> P.Policy:
        """The switching policy; `n_latents` (an int or one count per row) overrides the fixed policy's count."""
        c = self.config
        name = name or c.policy
        if name == "auto":
            name = self.method.default_policy
        answer = self.tokenizer.encode("###")[0]
        marker = self.ids.get("<latent>", -1)
        return {
            "none": lambda: P.NoLatents(),
            "fixed": lambda: P.FixedCount(
                n_latents if n_latents is not None else self.default_latents(), self.ids["<eot>"], marker
            ),
            "learned": lambda: P.LearnedThinking(self.ids["<thinking>"], c.threshold_cap * 8),
            "threshold": lambda: P.ConfidenceThreshold(
                c.threshold, c.threshold_cap, self.ids.get("<thinking>", marker)
            ),
            "cold_stop": lambda: P.ColdStop(c.cold_stop_entropy, c.cold_stop_steps, c.soft_cap, answer),
        }[name]()

    def default_latents(self, n_steps: int | None = None) -> int:
        """Coconut's inference latent count: n_latents if set, else max_latent_stage*c, or min(max, n_steps)*c for
        an example with n_steps gold steps when pad_latent_to_max is off (the official get_question_latent_dataset)."""
        c = self.config
        if c.n_latents is not None:
            return c.n_latents
        if c.pad_latent_to_max or n_steps is None:
            return c.max_latent_stage * c.c_thought
        return min(c.max_latent_stage, n_steps) * c.c_thought

    def generate(
        self,
        input_ids,
        max_new_tokens,
        sampling=None,
        *,
        attention_mask=None,
        eos_token_id=None,
        callback=None,
        policy: str | None = None,
        return_trace: bool = False,
        n_latents=None,
    ):
        if input_ids.shape[1] + max_new_tokens > self.config.max_seq_len:
            from latentlm.errors import InputError

            raise InputError(
                f"prompt ({input_ids.shape[1]}) + max_new_tokens ({max_new_tokens}) exceeds "
                f"model.max_seq_len={self.config.max_seq_len}"
            )
        ids, info = generate_latent(
            self,
            input_ids,
            max_new_tokens,
            self.policy(policy, n_latents),
            sampling,
            attention_mask,
            eos_token_id if eos_token_id is not None else self.tokenizer.eos_id,
            callback,
            trace=return_trace,
        )
        return (ids, info) if return_trace else ids

    def prompt_ids(self, question: str) -> list[int]:
        """A question in this method's inference format (e.g. Coconut appends <bot>)."""
        return self.tokenizer.encode(question + "\n") + self.method.prompt_suffix(self.config, self.tokenizer)

    # --- what the reasoning evaluator asks (eval/reasoning.py reads nothing else of the model) ------------------

    def reasoning_prompt(self, example, tokenizer) -> list[int]:
        """An example's prompt in this method's inference format, with the evaluator's tokenizer."""
        from latentlm.models.latent_thoughts.base import check_special_tokens

        check_special_tokens(tokenizer, self.config.special_tokens)
        return tokenizer.encode(example.question + "\n") + self.method.prompt_suffix(self.config, tokenizer)

    @property
    def extra_new_tokens(self) -> int:
        """Generation budget beyond the gold chain (LT-Tuning's <thinking> sit inside the text)."""
        return self.method.extra_new_tokens(self.config)

    def generation_options(self, examples, policy: str | None = None) -> dict:
        """Per-batch generate() keywords: the fixed policy (Coconut's) gets min(max, #gold steps) latents per row."""
        name = policy or self.config.policy
        if name == "fixed" or (name == "auto" and self.method.default_policy == "fixed"):
            return {"n_latents": torch.tensor([self.default_latents(len(ex.steps)) for ex in examples])}
        return {}

    def embedding_norm(self) -> float:
        """Mean norm of the token input embeddings (the scale latents are compared against)."""
        return float(self.base.get_input_embeddings().weight.detach().norm(dim=-1).mean())

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_checkpoint_extras(self, out_dir) -> None:
        """Checkpoint hook: base/ = the base's architecture, tokenizer and weight hashes, so that the checkpoint
        loads without the base model folder (see base.save_base_record and Config.adopt_checkpoint)."""
        save_base_record(self, out_dir)
