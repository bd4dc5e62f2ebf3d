"""A small Qwen-style tokenizer trained in-process, for tiny random-weight models.

Why: tests and CPU smoke runs need a tokenizer without a model hub, and the real Qwen3
vocabulary (151,669 tokens) makes a tiny model's embedding and LM head 99% of its weights.
`build_tiny_tokenizer` trains a byte-level BPE on the run's own texts with the `tokenizers`
library, using Qwen's pre-tokenizer (the same split regex, NFC, byte-level alphabet) and
Qwen's special tokens, and gives it a ChatML chat template, so prompts render exactly as
with Qwen3 (`<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n`).

Training is deterministic: the same corpus (in the same order) and vocabulary size give the
same vocabulary and merges.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<|endoftext|>"
BOS_CHAT_TOKEN = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, BOS_CHAT_TOKEN, EOS_TOKEN]
"""Control tokens, ids 0, 1, 2; never split, skipped by `decode(skip_special_tokens=True)`."""
THINK_TOKENS = ["<think>", "</think>"]
"""Added but not special (as in Qwen3): kept when decoding, so a reasoning block stays visible."""

# Qwen2/Qwen3's pre-tokenizer split (tokenizer.json of ../shared/qwen3-tokenizer).
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# ChatML, as Qwen3 renders it; `enable_thinking=False` adds Qwen3's empty reasoning block.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


def build_tiny_tokenizer(corpus: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `corpus`; pad `<|endoftext|>`, eos `<|im_end|>`, left padding.

    `vocab_size` counts the 256 byte symbols, the merges and the 3 special tokens; the two
    think tokens come on top. A corpus too small for `vocab_size` merges gives fewer tokens.
    """
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    backend.add_tokens([AddedToken(token, special=False, normalized=False) for token in THINK_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        padding_side="left",
        chat_template=CHATML_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )
