"""What one PLAID search reads: an immutable snapshot of the manifest's codecs, segments and
tombstones, loaded once per commit (``PlaidIndex`` swaps it after the manifest swap)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from indexer.errors import IndexCorrupt
from indexer.index.plaid.codec import Codec, token_norms
from indexer.index.plaid.manifest import Manifest
from indexer.index.plaid.search import CodecTensors, SegmentGroup
from indexer.index.plaid.segment import Segment


@dataclass
class Snapshot:
    """Everything one search needs, immutable once built."""

    manifest: Manifest
    codecs: dict[str, CodecTensors]
    segments: list[Segment]
    dead: list[torch.Tensor]  # per segment, bool [n_passages] tombstones
    groups: dict[str, tuple[SegmentGroup, torch.Tensor]]  # by codec: its segments, their tombstones


def load_snapshot(path: Path, device: torch.device, m: Manifest,
                  reuse: Snapshot | None = None) -> Snapshot:
    """The snapshot of manifest ``m``, reusing what ``reuse`` already loaded."""
    old_segs = {s.name: s for s in reuse.segments} if reuse else {}
    codecs = dict(reuse.codecs) if reuse else {}
    for name in m.codecs:
        if name not in codecs:
            c = Codec.load(path / "codecs" / name)
            codecs[name] = CodecTensors(torch.from_numpy(c.centroids).to(device),
                                        torch.from_numpy(c.decode_table()).to(device))
    segments, dead = [], []
    for e in m.segments:
        seg = old_segs.get(e.name) or Segment.open(path / "segments" / e.name, device)
        # a format-1 segment: computed once per open (~1 s per 3M tokens), kept in float32 so
        # that a merge quantises them as a fresh build would
        if seg.norms is None:
            ct = codecs[e.codec]
            seg.norms = torch.from_numpy(token_norms(seg.codes.cpu(), seg.residuals.cpu(),
                                                     ct.centroids.cpu(), ct.table.cpu())).to(device)
        mask = np.zeros(e.n_passages, dtype=bool)
        if e.tombstones:
            try:
                mask[np.load(path / "tombstones" / e.tombstones)] = True
            except (OSError, ValueError, IndexError) as exc:
                raise IndexCorrupt(f"unreadable tombstones {e.tombstones}: {exc}") from exc
        segments.append(seg)
        dead.append(torch.from_numpy(mask).to(device))
    groups = {}
    for name in m.codecs:
        members = [i for i, e in enumerate(m.segments) if e.codec == name]
        if members:
            groups[name] = (SegmentGroup.of([segments[i] for i in members], device),
                            torch.cat([dead[i] for i in members]))
    return Snapshot(m, {n: codecs[n] for n in m.codecs}, segments, dead, groups)

