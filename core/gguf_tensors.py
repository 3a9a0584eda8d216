"""What a GGUF file's weights cost per token: its tensors' parameters and stored bytes, read from the header alone.

Decode reads every weight once per token (memory-bandwidth bound); prefill multiplies every matrix by each prompt
token (compute bound). Both bounds need the model's bytes and multiply-accumulates per token, which the header's
tensor table gives exactly (name, shape, ggml type). The format: github.com/ggml-org/ggml/blob/master/docs/gguf.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# ggml type id -> (elements per block, bytes per block); the types GGUF LLM files use
GGML_BLOCKS = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 36),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    30: (1, 2),  # BF16
}
GGML_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K"}
GGML_NAMES.update({11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 30: "BF16"})
# value type id -> struct format of a scalar (8: string, 9: array are read apart)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class GGUFError(ValueError):
    pass


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: int

    @property
    def params(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        if self.ggml_type not in GGML_BLOCKS:
            raise GGUFError(f"{self.name}: ggml type {self.ggml_type} is not one this reader knows")
        per_block, size = GGML_BLOCKS[self.ggml_type]
        return self.params // per_block * size


def _read(f: BinaryIO, fmt: str):
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) != size:
        raise GGUFError("the header ends early")
    return struct.unpack("<" + fmt, data)[0]


def _string(f: BinaryIO) -> str:
    return f.read(_read(f, "Q")).decode("utf-8", "replace")


def _skip_value(f: BinaryIO, vtype: int):
    if vtype == 8:
        return _string(f)
    if vtype == 9:
        item, n = _read(f, "I"), _read(f, "Q")
        if item in _SCALARS:  # skip a scalar array in one seek
            f.seek(n * struct.calcsize("<" + _SCALARS[item]), 1)
            return None
        for _ in range(n):
            _skip_value(f, item)
        return None
    if vtype not in _SCALARS:
        raise GGUFError(f"unknown metadata value type {vtype}")
    return _read(f, _SCALARS[vtype])


def read_tensors(path: Path) -> tuple[dict[str, object], list[Tensor]]:
    """(scalar and string metadata, tensors) of a GGUF v2/v3 file; the weights themselves are not read."""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise GGUFError(f"{path}: not a GGUF file")
        version = _read(f, "I")
        if version not in (2, 3):
            raise GGUFError(f"{path}: GGUF version {version} (this reader knows 2 and 3)")
        n_tensors, n_kv = _read(f, "Q"), _read(f, "Q")
        meta: dict[str, object] = {}
        for _ in range(n_kv):
            key = _string(f)
            value = _skip_value(f, _read(f, "I"))
            if value is not None:
                meta[key] = value
        tensors = []
        for _ in range(n_tensors):
            name = _string(f)
            shape = tuple(_read(f, "Q") for _ in range(_read(f, "I")))
            ggml_type = _read(f, "I")
            _read(f, "Q")  # offset into the data section
            tensors.append(Tensor(name, shape, ggml_type))
    return meta, tensors


@dataclass(frozen=True)
class TokenCost:
    params: int  # all parameters
    weight_bytes: int  # all tensors as stored
    decode_bytes: int  # read per generated token: every weight but the embedding rows not looked up
    prefill_macs: int  # multiply-accumulates per prompt token: every matrix but the output head (last token only)
    types: dict[str, int]  # ggml type name -> parameters stored in it


def token_cost(tensors: list[Tensor]) -> TokenCost:
    """Per-token cost of a decoder-only model. With tied embeddings (no ``output.weight``) the embedding matrix is
    also the output head, read whole for every generated token's logits."""
    names = {t.name for t in tensors}
    tied = "output.weight" not in names
    decode = prefill = 0
    types: dict[str, int] = {}
    for t in tensors:
        kind = GGML_NAMES.get(t.ggml_type, str(t.ggml_type))
        types[kind] = types.get(kind, 0) + t.params
        if t.name == "token_embd.weight":
            decode += t.nbytes if tied else 0  # a lookup reads one row; as the tied head, all of it
            continue
        decode += t.nbytes
        if t.name != "output.weight" and len(t.shape) == 2:
            prefill += t.params
    return TokenCost(sum(t.params for t in tensors), sum(t.nbytes for t in tensors), decode, prefill, types)
