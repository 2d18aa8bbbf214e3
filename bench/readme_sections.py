"""Sections of a README (markdown ``#`` headings or reStructuredText underlines), for the
readme validation set (``bench/validation_sets.py``).

A changelog ends a README: version headings and "Fix #123" lines are not prose a
person searches.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

MIN_HEADING_WORDS = 3  # "Installation" or "Usage" name a section of every README alike
STOP_AT = re.compile(r"change ?log|changes|history|release notes|what's new", re.I)
MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.])\1{2,}\s*$")


@dataclass(frozen=True)
class Section:
    heading: str
    lines: list[str]  # the body, heading cut out
    heading_line: int  # 0-based index of the heading's text line in the README
    first_line: int  # 0-based index of ``lines[0]``


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]{2,}", text)


def clean_heading(text: str) -> str:
    """A heading as a person would type it: markup, links and emoji codes dropped."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [text](url), images
    text = re.sub(r"<[^>]+>|[`*_]|:[a-z_]+:", "", text)
    return " ".join(text.split())


def sections(text: str) -> Iterator[Section]:
    """The README's sections with a body, in order, up to a changelog.

    >>> [(s.heading, s.lines) for s in sections("# Quick start guide\\n\\nRun it.\\n## Changelog\\n- x")]
    [('Quick start guide', ['Run it.'])]
    """
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
