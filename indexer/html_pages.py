"""Generated HTML pages (a built documentation site) as the text a reader sees.

Indexed as it is, a Sphinx or DocBook page's passages are mostly tags, attributes and
scripts. ``render`` keeps the words and drops the rest, line for line, so that a
passage's line span is the span of the source lines it came from: a tag, comment, script
or style block that spans lines leaves its newlines behind. Inline tags (``<code>``,
``<em>``...) go without a trace, so ``<code>os.path</code>.join`` stays one word; other
tags leave a space, so the cells of a table row do not run together.

Only pages that say a tool generated them are rendered (``<meta name="generator">``, as
Docutils/Sphinx, DocBook, makeinfo and most site generators write): in a code repository
an ``.html`` file is usually a template, and there the markup is what a developer
searches for.
"""

from __future__ import annotations

import html
import re

_GENERATED = re.compile(r"<meta\s[^>]*name\s*=\s*[\"']?generator\b", re.I)
_HIDDEN_START = re.compile(r"<(script|style|template)\b|<!--", re.I)
_CLOSING = {name: re.compile(rf"</{name}\s*>", re.I) for name in ("script", "style", "template")}
_COMMENT_END = re.compile("-->")
# A tag, its quoted attributes may hold ">"; bounded, so a page of unclosed "<a" stays linear.
_TAG = re.compile(r"</?([a-zA-Z][a-zA-Z0-9-]*)(?:[^>\"']|\"[^\"]{0,4096}\"|'[^']{0,4096}'){0,4096}>"
                  r"|<![^>]{0,4096}>|<\?[^>]{0,4096}>")
_INLINE = frozenset(
    "a abbr b bdi bdo cite code data del dfn em font i ins kbd mark q s samp small span strong "
    "sub sup time tt u var wbr".split())
_SPACES = re.compile(r"[ \t\r\f\v\xa0]+")


def is_generated_page(text: str) -> bool:
    """Whether ``text`` is an HTML page that names the tool that generated it."""
    head = text[:16384]
    return "<html" in head.lower() and bool(_GENERATED.search(head))


def render(text: str) -> str:
    """The page's words, line for line: ``render(t).count("\\n") == t.count("\\n")``."""
    text = _TAG.sub(_tag, _without_hidden(text))
    return "\n".join(_SPACES.sub(" ", html.unescape(line).replace("\n", " ")).strip()
                     for line in text.split("\n"))


def _without_hidden(text: str) -> str:
    """``text`` with comments, scripts, styles and templates reduced to their newlines (one
    left open runs to the end, as a browser reads it)."""
    out, pos = [], 0
    while m := _HIDDEN_START.search(text, pos):
        close = _COMMENT_END if m.group(0) == "<!--" else _CLOSING[m.group(1).lower()]
        found = close.search(text, m.end())
        end = found.end() if found else len(text)
        out += [text[pos:m.start()], "\n" * text.count("\n", m.start(), end)]
        pos = end
    return "".join(out) + text[pos:]


def _newlines_only(m: re.Match[str]) -> str:
    return "\n" * m.group(0).count("\n")


def _tag(m: re.Match[str]) -> str:
    gap = "" if (m.group(1) or "").lower() in _INLINE else " "
    return gap + _newlines_only(m)
