"""ColBERT encoder: text -> bags of L2-normalised token vectors.

The default backbone (all-MiniLM-L6-v2) was never trained as ColBERT. A fresh
linear head would scramble its signal, so with no trained head the encoder emits
the backbone's own token vectors (384-d); a checkpoint with a ``colbert_linear``
projection (see ``indexer/checkpoint.py`` of the training issue) maps them down.
Query and document markers and [MASK] query augmentation are ColBERT's; they
help trained checkpoints and hurt the untrained backbone (measured in
``bench/RESULTS.md``), so ``EncoderConfig`` switches them per checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from indexer.errors import ModelError
from indexer.models import DEFAULT_ENCODER, resolve_model_path


@dataclass(frozen=True)
class EncoderConfig:
    """Settings saved beside a checkpoint as ``memex_encoder.json``."""

    query_max_tokens: int = 32
    doc_max_tokens: int = 256
    markers: bool = False  # prepend ColBERT's [Q]/[D] marker tokens ([unused0]/[unused1])
    query_augmentation: bool = False  # pad queries with [MASK] to query_max_tokens
    skip_punctuation: bool = True  # drop document vectors of pure-punctuation tokens
    query_marker: str = "[unused0]"  # the text of the markers (PyLate checkpoints use "[Q]")
    doc_marker: str = "[unused1]"
    # Share of the pooled vectors' cosine in hybrid search (indexer/pooled.py); 0 (off) for
    # encoders it was not measured with.
    pooled_weight: float = 0.0
    # The backbone's hidden states the head reads (0: the embeddings, n: the last layer),
    # each L2-normalised, concatenated (``head_input``); empty: the last hidden state alone.
    head_layers: tuple[int, ...] = ()


PUNCTUATION = set(string.punctuation)
# Per vocabulary token weights of query tokens (float32 [vocab]), saved beside a checkpoint;
# see ``weigh_query_tokens``. The default encoder's are IDF-based (``indexer/training/idf.py``).
QUERY_WEIGHTS_FILE = "query_token_weights.safetensors"
# An orthogonal (hidden, hidden) rotation of pooled vectors, saved beside a checkpoint: it
# spreads the backbone's few large dimensions over all of them before indexer/pooled.py
# keeps only signs (indexer/training/loop.py makes it, seeded).
POOLED_ROTATION_FILE = "pooled_rotation.safetensors"
_OTHER_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # str.splitlines breaks besides \n, \r


def read_config(path: Path) -> EncoderConfig:
    """An encoder directory's ``memex_encoder.json``, or the defaults where it has none."""
    config_file = path / "memex_encoder.json"
    if not config_file.exists():
        return EncoderConfig()
    settings = json.loads(config_file.read_text())
    settings["head_layers"] = tuple(settings.get("head_layers", ()))  # a JSON list
    return EncoderConfig(**settings)


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` L2-normalised along the last axis (zero rows stay zero)."""
    return torch.nn.functional.normalize(x, dim=-1)


def head_input(hidden_states: Sequence[torch.Tensor] | Mapping[int, torch.Tensor],
               layers: tuple[int, ...], normalize: Callable = unit) -> torch.Tensor:
    """What the head projects: the last hidden state, or with ``layers`` those hidden
    states (``hidden_states[n]`` is layer ``n``'s output, 0 the embeddings), each
    L2-normalised, concatenated (B, T, H * len(layers)). Lower layers keep more of a
    token's surface form (an identifier's pieces), which code search leans on; the
    backbone computes them anyway (docs/retriever.md)."""
    if not layers:
        return hidden_states[-1]
    return torch.cat([normalize(hidden_states[n]) for n in layers], -1)


def backbone_pass(model: torch.nn.Module, batch: Mapping[str, torch.Tensor],
                  layers: tuple[int, ...], normalize: Callable = unit
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """One backbone forward -> (what the head projects, the last hidden state (B, T, H)).
    Shared by inference, the ONNX export (which passes its own ``normalize``) and
    training, so the three cannot drift apart."""
    out = model(**batch, output_hidden_states=bool(layers))
    if not layers:
        return out.last_hidden_state, out.last_hidden_state
    return head_input(out.hidden_states, layers, normalize), out.last_hidden_state


def fingerprint_of(model_path: Path, config: EncoderConfig) -> str:
    """``ColBERTEncoder.fingerprint`` without loading the model: settings, then each
    weights file's name and size."""
    settings = asdict(config)
    for key in ("query_marker", "doc_marker", "pooled_weight", "head_layers"):  # added later: defaults
        if settings[key] == getattr(EncoderConfig, key):  # keep the old fingerprints
            del settings[key]
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name in sorted(p.name for p in model_path.glob("*.safetensors")):
        digest.update(f"{name}:{(model_path / name).stat().st_size}".encode())
    return digest.hexdigest()[:16]


class ColBERTEncoder:
    """Encode queries and documents with a BERT-like backbone (+ optional projection).

    >>> enc = ColBERTEncoder.load()  # doctest: +SKIP
    >>> [v.shape for v in enc.encode_documents(["def add(a, b): return a + b"])]  # doctest: +SKIP
    [(12, 384)]
    """

    def __init__(self, model_path: Path, config: EncoderConfig, device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_path)
            self.model = AutoModel.from_pretrained(model_path).to(device).eval()
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load an encoder from {model_path}: {exc}") from exc
        self.model_path = Path(model_path)
        self.config = config
        self.device = device
        self.projection: torch.nn.Linear | None = None
        head = self.model_path / "colbert_linear.safetensors"
        if head.exists():
            from safetensors.torch import load_file

            weight = load_file(head)["weight"]  # (dim, hidden)
            self.projection = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
            self.projection.weight.data = weight
            self.projection.to(device)
        self.dim = (
            self.projection.out_features if self.projection else self.model.config.hidden_size
        )
        self.query_weights: torch.Tensor | None = None
        self.pooled_rotation: torch.Tensor | None = None
        hidden = self.model.config.hidden_size
        self.check_head_layers()
        if (self.model_path / POOLED_ROTATION_FILE).exists():
            from safetensors.torch import load_file

            self.pooled_rotation = load_file(self.model_path / POOLED_ROTATION_FILE)["weight"]
            if self.pooled_rotation.shape != (hidden, hidden):
                raise ModelError(f"{POOLED_ROTATION_FILE} of {model_path} is "
                                 f"{tuple(self.pooled_rotation.shape)}, not ({hidden}, {hidden})")
        if (self.model_path / QUERY_WEIGHTS_FILE).exists():
            from safetensors.torch import load_file

            self.query_weights = load_file(self.model_path / QUERY_WEIGHTS_FILE)["weight"].float()
            if self.query_weights.shape != (len(self.tokenizer),):
                raise ModelError(f"{QUERY_WEIGHTS_FILE} of {model_path} has "
                                 f"{tuple(self.query_weights.shape)} weights for a vocabulary "
                                 f"of {len(self.tokenizer)}")
        vocab = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        self.punct_ids = torch.tensor(
            [i for i, tok in enumerate(vocab) if tok and all(c in PUNCTUATION for c in tok)]
        )
        self.special_ids = torch.tensor(self.tokenizer.all_special_ids)
        # Set by indexer.encoding.runtime.configure: an ONNX backend replaces the model in embed_batch.
        self.backend = None
        self.runtime, self.precision, self.agreement = "torch", "fp32", None
        self._backends: dict = {}  # _rust_tokenizer's copies, one per truncation length

    def check_head_layers(self) -> None:
        """A head over several layers needs those layers and a projection that fits them."""
        layers, n = self.config.head_layers, self.model.config.num_hidden_layers
        if not layers:
            return
        if any(not 0 <= layer <= n for layer in layers) or len(set(layers)) != len(layers):
            raise ModelError(f"head_layers {list(layers)} of {self.model_path}: give distinct "
                             f"layers from 0 to {n}")
        width = self.model.config.hidden_size * len(layers)
        if self.projection is None or self.projection.in_features != width:
            raise ModelError(f"head_layers {list(layers)} of {self.model_path} need a "
                             f"colbert_linear head reading {width} features")

    @classmethod
    def load(
        cls,
        name: str = DEFAULT_ENCODER,
        device: str = "cpu",
        runtime: str | None = None,
        precision: str | None = None,
        recipe: str | None = None,
    ) -> ColBERTEncoder:
        """``runtime``: auto/torch/onnx, ``precision``: fp32/int8/fp16/bf16 (None: fastest
        validated), ``recipe``: the int8 recipe (None: the configured one); see
        ``indexer/encoding/runtime.py``."""
        from indexer.encoding.onnx import int8_recipe
        from indexer.encoding.runtime import candidates, configure, settings

        candidates(*settings(runtime, precision), device)  # bad settings fail before loading
        int8_recipe(recipe)
        path = resolve_model_path(name)
        encoder = cls(path, read_config(path), device)
        configure(encoder, runtime, precision, recipe=recipe)
        return encoder

    @property
    def fingerprint(self) -> str:
        """Identifies the weights and settings; an index built by another encoder is stale."""
        return fingerprint_of(self.model_path, self.config)

    def tokenize_batch(self, texts: list[str], max_tokens: int, marker: str) -> dict:
        """Right-padded tensors. A marker that is one vocabulary token (BERT's
        ``[unused0]``, which the tokenizer would split as text) is inserted as that id
        after [CLS], as colbert-ai does; other markers (PyLate's added ``[Q]``) as text."""
        marker_id = self.tokenizer.convert_tokens_to_ids(marker) if self.config.markers else None
        if marker_id is None or marker_id == self.tokenizer.unk_token_id:
            if self.config.markers:
                texts = [f"{marker} {t}" for t in texts]
            return self._tokenize(texts, max_tokens)
        batch = self._tokenize(texts, max_tokens - 1)
        fill = {"input_ids": marker_id, "attention_mask": 1, "token_type_ids": 0}
        return {
            key: torch.cat([t[:, :1], torch.full_like(t[:, :1], fill[key]), t[:, 1:]], dim=1)
            for key, t in batch.items()
        }

    def _tokenize(self, texts: list[str], max_tokens: int) -> dict:
        """The tokenizer's tensors for ``texts``, truncated to ``max_tokens``, right-padded.

        A fast tokenizer runs through a private copy of its Rust backend set up once per
        length: the ``transformers`` wrapper cost about 0.1 ms a call, 2% of encoding a
        query (bench/RESULTS.md, "query encoding"); the ids are the wrapper's."""
        if not getattr(self.tokenizer, "is_fast", False):
            return dict(self.tokenizer(texts, padding=True, truncation=True,
                                       max_length=max_tokens, return_tensors="pt"))
        encodings = self._rust_tokenizer(max_tokens).encode_batch(texts)
        fields = {"input_ids": "ids", "token_type_ids": "type_ids",
                  "attention_mask": "attention_mask"}
        return {name: torch.from_numpy(np.array([getattr(e, fields[name]) for e in encodings],
                                                np.int64).reshape(len(texts), -1))
                for name in self.tokenizer.model_input_names if name in fields}

    @torch.inference_mode()
    def embed_batch(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, dim) unit token vectors and (B, hidden) unit pooled vectors: the mean of
        the backbone's last hidden states over the attention mask (for all-MiniLM-L6-v2,
        its sentence embedding; see ``indexer/pooled.py``)."""
        if self.backend is not None:
            return self.backend.embed(batch)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        hidden, last = backbone_pass(self.model, batch, self.config.head_layers)
        pooled = mean_pooled(last, batch["attention_mask"])
        if self.projection is not None:
            hidden = self.projection(hidden)  # (B, T, dim)
        return unit(hidden.float()), pooled.float()

    def encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        """One float32 [q_tokens, dim] array per query."""
        return self.encode_queries_and_pooled(texts)[0]

    def encode_queries_and_pooled(self, texts: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
        """``encode_queries`` and the queries' pooled vectors, float32 [n, hidden].

        int8 quantizes activations with one scale per batch, so in a batch a query's
        vectors would depend on the other queries (600 code validation queries in one
        batch: token cosine 0.990 to their own encoding, MRR@10 −1.5%; bench/RESULTS.md):
        int8 queries are encoded one at a time, as a search request of one query is."""
        if self.precision == "int8" and len(texts) > 1:
            parts = [self.encode_queries_and_pooled([text]) for text in texts]
            return [p[0][0] for p in parts], np.concatenate([p[1] for p in parts])
        batch = self.tokenize_batch(texts, self.config.query_max_tokens, self.config.query_marker)
        if self.config.query_augmentation:
            batch = pad_with_mask(batch, self.tokenizer, self.config.query_max_tokens)
        vectors, pooled = self.embed_batch(batch)
        keep = batch["attention_mask"].bool().numpy()
        ids, array = batch["input_ids"].numpy(), vectors.cpu().numpy()
        out = [array[i][keep[i]] for i in range(len(texts))]
        if self.query_weights is not None:  # in numpy: per query, torch's op overhead was 0.2 ms
            weights = self.query_weights.numpy()
            for i, v in enumerate(out):
                w = weights[ids[i][keep[i]]]
                out[i] = v * (w * (len(w) / max(float(w.sum()), 1e-6)))[:, None]  # as weigh_query_tokens
        return out, self.rotate_pooled(pooled.cpu().numpy())

    def rotate_pooled(self, pooled: np.ndarray) -> np.ndarray:
        """Pooled vectors [n, hidden] as this encoder stores and scores them."""
        if self.pooled_rotation is None:
            return pooled
        return (pooled @ self.pooled_rotation.numpy().T).astype(np.float32, copy=False)

    def encode_documents(
        self,
        texts: list[str],
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
        dtype: type = np.float32,
    ) -> list[np.ndarray]:
        """One [doc_tokens, dim] array of ``dtype`` per document, in input order (see
        ``encode_documents_and_pooled``)."""
        return self.encode_documents_and_pooled(texts, batch_size, progress, dtype)[0]

    def encode_documents_and_pooled(
        self,
        texts: list[str],
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
        dtype: type = np.float32,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """One [doc_tokens, dim] array of ``dtype`` per document, in input order, and the
        documents' pooled vectors (float32 [n, hidden]).

        ``np.float16`` halves what a large sync holds in memory before its commit.

        Batches are length-bucketed and tokenized ahead in a thread
        (``indexer/encoding/pipeline.py``); ``progress(n)`` is called with the
        passages done per batch, e.g. ``tqdm(total=len(texts)).update``.
        """
        from indexer.encoding.pipeline import token_batches

        gpu = self.device.startswith("cuda")
        out: list[np.ndarray | None] = [None] * len(texts)
        pooled_out = np.zeros((len(texts), self.model.config.hidden_size), np.float32)
        for idx, batch in token_batches(
            texts,
            lambda chunk: self.tokenize_batch(chunk, self.config.doc_max_tokens, self.config.doc_marker),
            batch_size or (256 if gpu else 32),
            pin_memory=gpu,
        ):
            vectors, pooled = self.embed_batch(batch)
            pooled_out[idx] = pooled.cpu().numpy()
            keep = batch["attention_mask"].bool()
            if self.config.skip_punctuation:
                keep &= ~torch.isin(batch["input_ids"], self.punct_ids)
            dropped = self.special_ids[self.special_ids != self.tokenizer.cls_token_id]
            keep &= ~torch.isin(batch["input_ids"], dropped)
            for row, i in enumerate(idx):
                out[i] = vectors[row][keep[row]].cpu().numpy().astype(dtype, copy=False)
            if progress:
                progress(len(idx))
        return out, self.rotate_pooled(pooled_out)  # type: ignore[return-value]

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Token counts without special tokens, for chunking under ``doc_max_tokens``.

        A fast tokenizer's Rust backend is called directly (a private copy, never
        truncating or padding): the ``transformers`` wrapper cost more than the
        tokenization itself on short texts.
        """
        if not getattr(self.tokenizer, "is_fast", False):
            ids = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
            return [len(x) for x in ids]
        encodings = self._rust_tokenizer(None).encode_batch(texts, add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def _rust_tokenizer(self, max_tokens: int | None):
        """A private copy of the fast tokenizer's Rust backend, made once per setting:
        truncating to ``max_tokens`` and right-padding, or (None) neither."""
        backend = self._backends.get(max_tokens)
        if backend is None:
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
            if max_tokens is None:
                backend.no_truncation()
                backend.no_padding()
            else:
                backend.enable_truncation(max_tokens, direction=self.tokenizer.truncation_side)
                backend.enable_padding(pad_id=self.tokenizer.pad_token_id,
                                       pad_token=self.tokenizer.pad_token)
            self._backends[max_tokens] = backend
        return backend

    def lines_add_up(self, text: str) -> bool:
        """Whether the token count of any run of ``text``'s lines is the sum of its lines'
        counts: true for BERT's normalizer and pre-tokenizer (no word crosses a ``\n``
        or ``\r``) when no other line break occurs (BERT's normalizer deletes control
        characters such as ``\x0c``, which would join the words around them)."""
        if not getattr(self.tokenizer, "is_fast", False) or any(c in text for c in _OTHER_BREAKS):
            return False
        from tokenizers import normalizers, pre_tokenizers

        backend = self.tokenizer.backend_tokenizer
        return isinstance(backend.pre_tokenizer, pre_tokenizers.BertPreTokenizer) and isinstance(
            backend.normalizer, (normalizers.BertNormalizer, type(None)))


def mean_pooled(hidden: torch.Tensor, mask: torch.Tensor, normalize: Callable = unit
                ) -> torch.Tensor:
    """(B, T, H) hidden states -> (B, H): their mean over the mask, L2-normalised."""
    mask = mask.to(hidden.dtype)[..., None]
    summed = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    return normalize(summed)


def weigh_query_tokens(vectors: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor,
                       weights: torch.Tensor) -> torch.Tensor:
    """Query token vectors (B, T, dim) scaled by their token's weight, the weights of each
    query's kept tokens rescaled to mean 1.

    MaxSim is linear in each query vector's length, so a weight is that token's share of
    the score: rare identifiers count more than ``the`` or ``(``, as BM25's IDF does.
    The mean of 1 keeps scores on the unweighted scale."""
    w = weights.to(vectors.device)[input_ids.to(vectors.device)] * mask.to(vectors.device)
    w = w * mask.sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1e-6)
    return vectors * w[..., None].to(vectors.dtype)


def pad_with_mask(batch: dict, tokenizer, length: int) -> dict:
    """ColBERT query augmentation: pad with [MASK] (attended) up to ``length`` tokens."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    pad = length - ids.shape[1]
    if pad > 0:
        ids = torch.cat([ids, torch.full((ids.shape[0], pad), tokenizer.pad_token_id)], dim=1)
        mask = torch.cat([mask, torch.zeros((mask.shape[0], pad), dtype=mask.dtype)], dim=1)
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, tokenizer.mask_token_id))
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if "token_type_ids" in batch:
        out["token_type_ids"] = torch.zeros_like(ids)
    return out
