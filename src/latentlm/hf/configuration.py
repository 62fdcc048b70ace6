"""LatentLMConfig: an HF PretrainedConfig carrying a latentlm model config (variant + fields) as a dict."""

from transformers import PretrainedConfig


class LatentLMConfig(PretrainedConfig):
    model_type = "latentlm"

    def __init__(self, latentlm: dict | None = None, **kwargs):
        self.latentlm = dict(latentlm or {})
        m = self.latentlm
        kwargs.setdefault("tie_word_embeddings", m.get("tie_embeddings", True))
        super().__init__(**kwargs)
        # the names generic HF utilities (generation, pipelines) look for
        self.vocab_size = m.get("vocab_size")
        self.hidden_size = m.get("d_model")
        self.num_hidden_layers = m.get("n_layers")
        self.num_attention_heads = m.get("n_heads")
        self.max_position_embeddings = m.get("max_seq_len")
