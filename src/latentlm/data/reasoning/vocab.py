"""A word-level tokenizer over the words of a set of reasoning examples (small models on generated tasks)."""

from __future__ import annotations

WORD_PUNCT = ".?,:;!"


def word_tokenizer(examples, specials=("<bot>", "<eot>", "<latent>", "<thinking>")):
    """A word-level tokenizer over the words of `examples` (questions, steps, answers, `###`, newline): words split
    on spaces, the punctuation marks .?,:;! and newlines their own tokens; `<|endoftext|>` is id 0 (also unknown),
    then `specials`. Decoding joins words with spaces and re-attaches punctuation (WordPiece clean-up), so a decoded
    answer equals the gold text up to whitespace."""
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    from latentlm.data.tokenizer import EOS, Tokenizer

    split = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(r"[\n.?,:;!]"), behavior="isolated"),
        ]
    )
    words: dict[str, None] = {"###": None, "\n": None}
    for ex in examples:
        for text in (ex.question, *ex.steps, ex.answer):
            for w, _ in split.pre_tokenize_str(text):
                words[w] = None
    vocab = {EOS: 0, **{t: i + 1 for i, t in enumerate(specials)}}
    for w in sorted(words):
        vocab.setdefault(w, len(vocab))
    tok = HFTokenizer(models.WordLevel(vocab=vocab, unk_token=EOS))
    tok.pre_tokenizer = split
    tok.decoder = decoders.WordPiece(prefix="\u0000", cleanup=True)
    tok.add_special_tokens([EOS, *specials])
    return Tokenizer(tok, eos_token=EOS)
