"""The cartridge file: safetensors tensors plus one JSON header, checked on every load.

See ``cartridges/FORMAT.md``. Nothing in a file is executed: the header is parsed
as JSON by hand and the tensors by ``safetensors`` (no pickle). A SHA-256 over
the header and every tensor byte catches truncation and accidental corruption. It
is stored in the same file, so it is not a signature: whoever can write the file
can recompute it, and it proves nothing about who made the cartridge. The header's
model fingerprint stops a cartridge from being used with another model.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from indexer import durable
from indexer.errors import IndexCorrupt, InvalidInput, NotFound

FORMAT = "memex-cartridge"
FORMAT_VERSION = 1
HEADER_KEY = "memex.cartridge"
CHECKSUM_KEY = "memex.checksum"
MAX_HEADER = 100 * 1024 * 1024


class CartridgeCorrupt(IndexCorrupt):
    """The file is not a complete, untouched cartridge."""

    code = "CARTRIDGE_CORRUPT"


class CartridgeMismatch(InvalidInput):
    """The cartridge was made for another model or tokenizer."""

    code = "CARTRIDGE_MISMATCH"


def weights_sha256(model) -> str:
    """Fingerprint of a model's weights, cached on the model.

    Parameters are cast to bfloat16 first, so the float32 and bfloat16 copies
    of the same checkpoint agree while any other weights differ.
    """
    cached = getattr(model, "_memex_weights_sha256", None)
    if cached:
        return cached
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        as_bf16 = param.detach().to("cpu", torch.bfloat16).contiguous()
        digest.update(as_bf16.view(torch.int16).numpy().tobytes())
    model._memex_weights_sha256 = digest.hexdigest()
    return model._memex_weights_sha256


def tokenizer_sha256(tokenizer) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    special = sorted((k, str(v)) for k, v in tokenizer.special_tokens_map.items())
    return hashlib.sha256(json.dumps([vocab, special]).encode()).hexdigest()


def rope_settings(config) -> dict:
    """The RoPE parameters a key was rotated with; keys are only valid under the same ones."""
    cfg = config.get_text_config(decoder=True)
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if not rope.get("rope_theta") and getattr(cfg, "rope_theta", None):
        rope = {**rope, "rope_theta": cfg.rope_theta}
    return json.loads(json.dumps(rope, default=str))


def model_header(model, tokenizer) -> dict:
    """The header fields that describe the model a cartridge belongs to."""
    from cartridges.kv import KVShape

    shape = KVShape.of(model)
    return {
        "model_id": getattr(model, "memex_name", None) or model.config.name_or_path,
        "model_type": model.config.model_type,
        "model_weights_sha256": weights_sha256(model),
        "tokenizer_sha256": tokenizer_sha256(tokenizer) if tokenizer is not None else None,
        "layers": shape.layers,
        "kv_heads": shape.kv_heads,
        "head_dim": shape.head_dim,
        "rope": rope_settings(model.config),
    }


@dataclass
class CartridgeFile:
    """A loaded cartridge: per layer ``keys[i]``, ``values[i]`` of shape ``[kv_heads, p, head_dim]``."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    header: dict

    @property
    def p(self) -> int:
        return self.header["p"]

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(zip(self.keys, self.values))


def _checksum(header: dict, tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_cartridge(path: Path, keys: list[torch.Tensor], values: list[torch.Tensor], header: dict) -> int:
    """Write atomically (temp file, fsync, rename); returns the file size in bytes.

    ``header`` holds the model fields (``model_header``) plus corpus and training
    fields; format, version, shapes and dtype are filled in here.
    """
    tensors = {}
    for i, (k, v) in enumerate(zip(keys, values)):
        tensors[f"keys.{i}"] = k.detach().to("cpu").contiguous()
        tensors[f"values.{i}"] = v.detach().to("cpu").contiguous()
    header = {**header, "format": FORMAT, "format_version": FORMAT_VERSION, "p": int(keys[0].shape[1]),
              "dtype": str(keys[0].dtype).removeprefix("torch.")}
    blob = st_save(tensors, metadata={HEADER_KEY: json.dumps(header, sort_keys=True),
                                      CHECKSUM_KEY: _checksum(header, tensors)})
    path = Path(path)
    durable.make_dirs(path.parent)
    durable.write_bytes(path, blob)
    return len(blob)


def _read_metadata(data: bytes) -> dict:
    if len(data) < 8:
        raise CartridgeCorrupt("file too short to be a cartridge")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(MAX_HEADER, len(data) - 8):
        raise CartridgeCorrupt("cartridge header is truncated or oversized")
    try:
        meta = json.loads(data[8:8 + size]).get("__metadata__") or {}
        return {"header": json.loads(meta[HEADER_KEY]), "checksum": meta[CHECKSUM_KEY]}
    except (ValueError, KeyError, AttributeError) as exc:
        raise CartridgeCorrupt(f"not a memex cartridge (no valid header): {exc}") from exc


def read_cartridge(path: Path) -> CartridgeFile:
    """Load and verify a file on its own (format, shapes, checksum), without a model."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no cartridge file at {path}")
    data = path.read_bytes()
    meta = _read_metadata(data)
    header = meta["header"]
    if header.get("format") != FORMAT:
        raise CartridgeCorrupt(f"not a memex cartridge (format {header.get('format')!r})")
    if header.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(f"cartridge format version {header.get('format_version')} is not supported "
                           f"(this memex reads version {FORMAT_VERSION})")
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises its own error type for any malformed body
        raise CartridgeCorrupt(f"cartridge tensors are unreadable: {exc}") from exc
    if _checksum(header, tensors) != meta["checksum"]:
        raise CartridgeCorrupt("cartridge checksum mismatch: the file was modified or damaged")
    n, shape = header["layers"], (header["kv_heads"], header["p"], header["head_dim"])
    expected = {f"{kind}.{i}" for kind in ("keys", "values") for i in range(n)}
    if set(tensors) != expected or any(tuple(t.shape) != shape for t in tensors.values()):
        raise CartridgeCorrupt(f"cartridge tensors do not match its header ({n} layers of {shape})")
    return CartridgeFile([tensors[f"keys.{i}"] for i in range(n)],
                         [tensors[f"values.{i}"] for i in range(n)], header)


def check_compatible(header: dict, model, tokenizer=None, check_weights: bool = True) -> None:
    """Refuse a cartridge made for another model, naming what differs."""
    mine = model_header(model, tokenizer) if check_weights else None
    from cartridges.kv import KVShape

    shape = KVShape.of(model)
    want = (header["layers"], header["kv_heads"], header["head_dim"])
    if want != (shape.layers, shape.kv_heads, shape.head_dim):
        raise CartridgeMismatch(
            f"cartridge is for model {header['model_id']!r} ({want[0]} layers, {want[1]} kv heads, head dim "
            f"{want[2]}); this model has {shape.layers} layers, {shape.kv_heads} kv heads, "
            f"head dim {shape.head_dim}")
    if header["rope"] != rope_settings(model.config):
        raise CartridgeMismatch(f"cartridge keys were rotated with RoPE {header['rope']}, "
                                f"this model uses {rope_settings(model.config)}")
    if mine and mine["model_weights_sha256"] != header["model_weights_sha256"]:
        raise CartridgeMismatch(
            f"cartridge was trained for model {header['model_id']!r} (weights sha256 "
            f"{header['model_weights_sha256'][:12]}), not this model (weights sha256 "
            f"{mine['model_weights_sha256'][:12]})")
    if mine and tokenizer is not None and mine["tokenizer_sha256"] != header.get("tokenizer_sha256"):
        raise CartridgeMismatch(f"cartridge was trained with another tokenizer than this one "
                                f"(model {header['model_id']!r})")
