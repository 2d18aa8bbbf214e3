"""Batches for document encoding: length-bucketed, tokenized by a producer thread.

Texts are ordered longest first by characters (so the first batches are the
slowest and a progress bar's ETA starts pessimistic, and a GPU meets its
largest batch first), tokenized a window of several batches at a time, and
re-sorted inside the window by true token count, so each batch pads only to
its own longest member. The tokenizer runs in a thread while the encoder works
on the previous batch (both the Rust tokenizer and ONNX Runtime / PyTorch
release the GIL).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import torch

WINDOW_BATCHES = 4  # batches tokenized together and re-sorted by token count
_DONE = object()


def _split_window(idx: list[int], batch: dict, batch_size: int) -> Iterator[tuple[list[int], dict]]:
    """Cut one right-padded window into batches of similar length, each trimmed to its max."""
    lengths = batch["attention_mask"].sum(dim=1)  # (W,)
    order = torch.argsort(lengths, descending=True, stable=True)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = int(lengths[rows].max())
        yield [idx[r] for r in rows.tolist()], {k: v[rows, :width] for k, v in batch.items()}


def token_batches(
    texts: list[str],
    tokenize: Callable[[list[str]], dict],
    batch_size: int,
    prefetch: int = 2,
    pin_memory: bool = False,
) -> Iterator[tuple[list[int], dict]]:
    """Yield ``(indices into texts, tokenized batch)`` with tokenization in a background thread.

    ``tokenize`` maps texts to right-padded tensors (``input_ids``, ``attention_mask``, ...).
    Exceptions of the producer are re-raised here; closing the generator stops it.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    window = batch_size * WINDOW_BATCHES
    ready: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for start in range(0, len(order), window):
                idx = order[start : start + window]
                batch = tokenize([texts[i] for i in idx])
                for item in _split_window(idx, batch, batch_size):
                    if pin_memory:
                        item = (item[0], {k: v.pin_memory() for k, v in item[1].items()})
                    if not put(item):
                        return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(exc)

    thread = threading.Thread(target=produce, name="memex-tokenize", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
