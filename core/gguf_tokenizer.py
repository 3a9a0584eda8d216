"""A HuggingFace ``tokenizer.json`` made from a GGUF file's own vocabulary, for tools that count tokens the way the
served model does (the load generator, ``core.capacity``) on a machine with no access to the HuggingFace hub.

llama.cpp's converter writes the model's byte-level BPE into the header: ``tokenizer.ggml.tokens`` (every token's
text, by id), ``tokenizer.ggml.merges`` ("a b" pairs, by rank), ``tokenizer.ggml.token_type`` (1 normal, 3 control,
4 user-defined) and ``tokenizer.ggml.pre``, the pre-tokenizer's name. This reads them back and writes the
``tokenizers`` library's JSON for that one pre-tokenizer, ``qwen2`` (llama.cpp's ``LLAMA_VOCAB_PRE_TYPE_QWEN2``
regex); another name is refused rather than guessed. Control tokens become special added tokens, user-defined ones
added tokens that are not special, as the converter mapped them. Checked against llama-server's ``/tokenize`` of the
same file (``tests/unit/test_capacity.py``, ids recorded from the server).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import BinaryIO

from core.gguf_tensors import _SCALARS, GGUFError, _read, _string

# llama.cpp (src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_QWEN2) splits text with this regex before BPE
PRE_TOKENIZER_REGEX = {
    "qwen2": (
        r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
}
WANTED = (
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.chat_template",
)
CONTROL, USER_DEFINED = 3, 4


def _value(f: BinaryIO, vtype: int):
    if vtype == 8:
        return _string(f)
    if vtype == 9:
        item, n = _read(f, "I"), _read(f, "Q")
        if item == 8:
            return [_string(f) for _ in range(n)]
        if item in _SCALARS:
            fmt = "<" + _SCALARS[item] * n
            return list(struct.unpack(fmt, f.read(struct.calcsize(fmt))))
        return [_value(f, item) for _ in range(n)]
    if vtype not in _SCALARS:
        raise GGUFError(f"unknown metadata value type {vtype}")
    return _read(f, _SCALARS[vtype])


def read_vocab(path: Path) -> dict[str, object]:
    """The tokenizer's keys of a GGUF v2/v3 header (``WANTED``), arrays included; the tensors are not read."""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF" or _read(f, "I") not in (2, 3):
            raise GGUFError(f"{path}: not a GGUF v2/v3 file")
        _read(f, "Q")  # tensor count
        out: dict[str, object] = {}
        for _ in range(_read(f, "Q")):
            key = _string(f)
            value = _value(f, _read(f, "I"))
            if key in WANTED:
                out[key] = value
    return out


def tokenizer_json(vocab: dict[str, object]) -> dict:
    """The ``tokenizers`` library's JSON for a GGUF byte-level BPE vocabulary (``read_vocab``)."""
    model, pre = vocab.get("tokenizer.ggml.model"), vocab.get("tokenizer.ggml.pre")
    if model != "gpt2" or pre not in PRE_TOKENIZER_REGEX:
        raise GGUFError(
            f"tokenizer {model!r} / pre-tokenizer {pre!r}: only byte-level BPE with {sorted(PRE_TOKENIZER_REGEX)}"
        )
    tokens: list[str] = vocab["tokenizer.ggml.tokens"]
    types: list[int] = vocab.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    added = [
        {
            "id": i,
            "content": tok,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": t == CONTROL,
        }
        for i, (tok, t) in enumerate(zip(tokens, types))
        if t in (CONTROL, USER_DEFINED)
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": PRE_TOKENIZER_REGEX[pre]},
                    "behavior": "Isolated",
                    "invert": False,
                },
                byte_level,
            ],
        },
        "post_processor": dict(byte_level),
        "decoder": dict(byte_level),
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {tok: i for i, tok in enumerate(tokens)},
            "merges": [m.split(" ", 1) for m in vocab["tokenizer.ggml.merges"]],
        },
    }


def write_tokenizer(gguf_path: Path, out_dir: Path) -> Path:
    """``tokenizer.json`` and ``tokenizer_config.json`` (a fast tokenizer with the model's special tokens and chat
    template) in ``out_dir``, which ``transformers.AutoTokenizer.from_pretrained(out_dir)`` loads offline. Idempotent:
    a folder made from the same file (name and size) is kept."""
    out_dir = Path(out_dir)
    stamp = out_dir / "source.json"
    source = {"gguf": Path(gguf_path).name, "bytes": Path(gguf_path).stat().st_size}
    if stamp.is_file() and json.loads(stamp.read_text()) == source:
        return out_dir
    vocab = read_vocab(Path(gguf_path))
    tokens: list[str] = vocab["tokenizer.ggml.tokens"]

    def token(key: str) -> str | None:
        i = vocab.get(key)
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None

    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,  # Qwen2 adds none (tokenizer.ggml.add_bos_token is false)
        "eos_token": token("tokenizer.ggml.eos_token_id"),
        "pad_token": token("tokenizer.ggml.padding_token_id"),
        "model_max_length": 32768,
        "clean_up_tokenization_spaces": False,
    }
    if vocab.get("tokenizer.chat_template"):
        config["chat_template"] = vocab["tokenizer.chat_template"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.json").write_text(json.dumps(tokenizer_json(vocab), ensure_ascii=False))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1))
    stamp.write_text(json.dumps(source))
    return out_dir
