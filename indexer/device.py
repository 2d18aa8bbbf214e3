"""The one device choice for every model memex runs (encoders, RETRO keys, the causal LM)."""

from __future__ import annotations


def pick_device(name: str | None = "auto") -> str:
    """``name`` as given ("cpu", "cuda:1", ...); "auto" or None: CUDA when torch sees one,
    else the CPU.

    >>> pick_device("cpu")
    'cpu'
    """
    if name and name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
