"""Query token weights from inverse document frequency, for ``weigh_query_tokens``.

A query's MaxSim score sums one best match per query token, so ``how``, ``the`` and
``(`` count as much as the identifier the user is looking for; BM25 avoids that with
IDF. Scaling each query token vector by ``idf ** alpha`` does the same for MaxSim at
no cost at search time (``indexer/encoding/encoder.py``). [CLS] and [SEP], in every
passage, get weights near 0. Measured in ``bench/RESULTS.md`` (issue 17).
"""

from __future__ import annotations

import numpy as np
import torch


def idf_weights(tokenizer, passages: list[str], max_tokens: int, alpha: float) -> torch.Tensor:
    """float32 [vocab]: ``idf ** alpha`` of each vocabulary token over ``passages`` (as the
    encoder truncates them), with BM25's idf ``log((N - df + 0.5) / (df + 0.5) + 1)``;
    a token no passage holds gets the largest weight."""
    texts = sorted(set(passages))
    df = np.zeros(len(tokenizer), np.float64)
    for start in range(0, len(texts), 256):
        for ids in tokenizer(texts[start:start + 256], truncation=True,
                             max_length=max_tokens)["input_ids"]:
            df[np.unique(ids)] += 1
    n = len(texts)
    idf = np.log((n - df + 0.5) / (df + 0.5) + 1.0)
    return torch.from_numpy(idf ** alpha).float()
