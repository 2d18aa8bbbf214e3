"""Prose training pairs for the default encoder: the READMEs of the packages memex installs.

Docstring pairs (``default_data.py``) teach the head to match a description to
code; on prose pages (FAQ answers, manuals) a code-only head ranks below the raw
MiniLM. Every installed distribution carries its README as the metadata's long
description, so prose needs no download either. Two kinds of pair, both
mirroring how a person searches documentation:

- a section heading ("Validating a model with a custom type") -> the section's
  first passage, the heading cut out (known-item search, as an FAQ question
  finds its answer);
- the first sentence of a paragraph -> the section's passage with that sentence
  cut out (the inverse cloze task: a sentence finds the text around it).

The same packages as the docstring pairs (``default_data.PACKAGES``), hence the
same exclusions; a changelog ends a README (version headings and "Fix #123"
lines teach nothing). Every choice is seeded, so the same installed versions
give the same pairs.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from indexer.training.default_data import Pair, version

MIN_HEADING_WORDS = 3  # "Installation" or "Usage" name a section of every README alike
SENTENCE_WORDS = (6, 40)  # a query-sized first sentence
STOP_AT = re.compile(r"change ?log|changes|history|release notes|what's new", re.I)
MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.])\1{2,}\s*$")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"(])")


@dataclass(frozen=True)
class Section:
    heading: str
    lines: list[str]  # the body, heading cut out
    heading_line: int  # 0-based index of the heading's text line in the README
    first_line: int  # 0-based index of ``lines[0]``


def readme(module: str) -> str:
    """The long description of the distribution that provides import name ``module``."""
    import importlib.metadata

    for dist in importlib.metadata.packages_distributions().get(module, []):
        try:
            meta = importlib.metadata.distribution(dist).metadata
        except importlib.metadata.PackageNotFoundError:
            continue
        body = meta.get_payload() or meta.get("Description") or ""  # type: ignore[attr-defined]
        if body.strip():
            return body
    return ""


def clean_heading(text: str) -> str:
    """A heading as a person would type it: markup, links and emoji codes dropped."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [text](url), images
    text = re.sub(r"<[^>]+>|[`*_]|:[a-z_]+:", "", text)
    return " ".join(text.split())


def sections(text: str) -> Iterator[Section]:
    """Markdown (``#``) and reStructuredText (underlined) sections, up to a changelog."""
    lines = text.splitlines()
    heads: list[tuple[int, int, str]] = []  # (first line, lines the heading takes, text)
    fenced = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced:
            continue
        m = MD_HEADING.match(line)
        if m:
            heads.append((i, 1, m.group(2)))
        elif (i > 0 and RST_UNDERLINE.match(line) and lines[i - 1].strip()
              and len(line.strip()) >= len(lines[i - 1].strip())):
            heads.append((i - 1, 2, lines[i - 1]))
    heads.append((len(lines), 0, ""))
    for (start, size, heading), (end, _, _) in zip(heads, heads[1:]):
        heading = clean_heading(heading)
        if STOP_AT.search(heading):
            return
        first = start + size
        while first < end and not lines[first].strip():
            first += 1
        if first < end:
            yield Section(heading, lines[first:end], start, first)


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]{2,}", text)


def first_sentence(paragraph: str) -> str | None:
    """The paragraph's first sentence when it is prose of query size and more follows."""
    if paragraph.lstrip()[:1] in "-*|>#<.:[!0123456789" or "```" in paragraph:
        return None
    parts = SENTENCE_END.split(" ".join(paragraph.split()), maxsplit=1)
    if len(parts) < 2:
        return None
    n = len(words(parts[0]))
    return parts[0] if SENTENCE_WORDS[0] <= n <= SENTENCE_WORDS[1] else None


def paragraphs(lines: list[str]) -> Iterator[str]:
    block: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            block.append(line)
        elif block:
            yield "\n".join(block)
            block = []


def section_pairs(module: str, section: Section,
                  passage: Callable[[list[str]], str]) -> list[Pair]:
    """The heading pair and the sentence pairs of one section."""
    rel = f"{module}/README"
    out = []
    if len(words(section.heading)) >= MIN_HEADING_WORDS:
        out.append(Pair(section.heading, f"{rel}\n{passage(section.lines)}", module))
    body = "\n".join(section.lines)
    for para in paragraphs(section.lines):
        sentence = first_sentence(para)
        if sentence is None:
            continue
        # cut the sentence out of the section's text (whitespace may differ from the joined form)
        pattern = r"\s+".join(re.escape(w) for w in sentence.split())
        rest = re.sub(pattern, "", body, count=1).splitlines()
        out.append(Pair(sentence, f"{rel}\n{passage(rest)}", module))
    return out


def mine(modules: tuple[str, ...], per_package: int, seed: int,
         passage: Callable[[list[str]], str]) -> tuple[list[Pair], dict[str, str]]:
    """Up to ``per_package`` pairs from each module's README, drawn in a seeded order;
    ``passage`` cuts a section's lines to the first passage ``memex index`` would make.
    A query text is used once."""
    rng = random.Random(seed)
    seen: set[str] = set()
    pairs: list[Pair] = []
    versions = {}
    for module in modules:
        text = readme(module)
        if not text:
            versions[module] = "no README"
            continue
        versions[module] = version(module)
        found = [p for s in sections(text) for p in section_pairs(module, s, passage)]
        found = list({p.query: p for p in found
                      if p.query not in seen and len(p.positive.split()) >= 12}.values())
        for p in rng.sample(found, min(per_package, len(found))):
            seen.add(p.query)
            pairs.append(p)
    return pairs, versions
