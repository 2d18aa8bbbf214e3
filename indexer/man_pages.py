"""Manual pages (troff: the man and mdoc macros) as the plain text a reader sees.

A man page's source is mostly markup: ``.SH``, ``.TP``, ``\\fBbold\\fR``. Indexed as it is,
its passages are full of tokens no one searches for, and a search hit shows markup.
``render`` turns each source line into one line of text, so that a passage's line span
is the span of the source lines it came from (what ``sed -n`` on the decompressed page
shows). It covers what pages use to say things, not troff's layout: requests that only
set up layout become empty lines, macros that format their arguments become the
arguments, escapes become their characters or nothing. Tables (tbl) pass through as text.
"""

from __future__ import annotations

import re

# Macros that carry no words of their own: an empty line. (troff's own requests, all
# lower case, never do: ``.ds``, ``.nr``, ``.if``...)
_LAYOUT = frozenset(
    "TH Dd Dt Os PP LP P RS RE HP PD UE ME IX TS TE EQ EN YS EX EE "
    "Bl El Bd Ed Pp Lp Ns Sm Bk Ek".split())
_DEFINITIONS = frozenset({"de", "de1", "am", "ig"})  # their body runs to a ".." line
# man's font macros that alternate fonts between arguments written without spaces.
_ALTERNATING = frozenset({"BR", "RB", "BI", "IB", "IR", "RI"})
_MDOC = re.compile(r"[A-Z][a-z]")  # mdoc macro names (man's are upper case)
_PREFIX = {"Fl": "-"}  # mdoc macros that stand for their argument with a prefix

_GLYPHS = {
    "em": "\u2014", "en": "\u2013", "hy": "-", "mi": "-", "aq": "'", "dq": '"', "lq": "\u201c",
    "rq": "\u201d", "oq": "\u2018", "cq": "\u2019", "bu": "\u2022", "co": "\u00a9", "rg": "\u00ae",
    "tm": "\u2122", "de": "\u00b0", "ti": "~", "ha": "^", "rs": "\\", "sl": "/", "ba": "|",
    "or": "|", "lt": "<", "gt": ">", "<=": "\u2264", ">=": "\u2265", "mu": "\u00d7",
    "->": "\u2192", "<-": "\u2190", "pl": "+", "eq": "=", "ga": "`", "aa": "\u00b4",
}
_STRINGS = {"R": "\u00ae", "Tm": "\u2122", "lq": "\u201c", "rq": "\u201d"}

# One escape sequence: \fX \f(XX \f[...], \s±N, \*X \*(XX \*[..], \(XX, \[..], \n.., \X.
_ESCAPE = re.compile(
    r"""\\(?:
        f(?:\(..|\[[^\]]*\]|.)          # font change
      | s[-+]?(?:\(..|\[[^\]]*\]|\d{1,2})  # size change
      | \*(?:\(..|\[[^\]]*\]|.)         # string reference
      | n[-+]?(?:\(..|\[[^\]]*\]|.)     # number register
      | [kmMYgV](?:\(..|\[[^\]]*\]|.)   # marks, colours, environment
      | [hvwloDLNRSxZbXAB]'[^']*'       # motions, drawing, and other quoted arguments
      | \(..                            # two-character glyph
      | \[[^\]]*\]                      # named glyph
      | .                               # one character
    )""",
    re.VERBOSE,
)
_REQUEST = re.compile(r"^[.'][ \t]*(\S+)[ \t]*(.*)$")
_ARG = re.compile(r'"((?:[^"]|"")*)"?|((?:\\.|\S)+)')  # "quoted" or bare; "\ " is no break


def looks_like_man_page(text: str) -> bool:
    """Whether ``text`` is troff with man or mdoc macros: a title request (``.TH``, or
    mdoc's ``.Dd``) among its first lines (Pod::Man's preamble runs ~150 lines before it)."""
    for line in text.splitlines()[:400]:
        request = _REQUEST.match(line)
        if request and request.group(1) in ("TH", "Dd"):
            return True
    return False


def render(text: str) -> str:
    """The page's words, line for line: ``render(t).count("\\n") == t.count("\\n")``."""
    out, skipping, name = [], False, ""
    for line in text.split("\n"):
        request = _REQUEST.match(line)
        if skipping:  # inside a macro definition or an ignored block, up to ".."
            skipping = line.strip() != ".."
            out.append("")
        elif request and request.group(1) in _DEFINITIONS:
            skipping = True
            out.append("")
        else:
            rendered = _line(line, request)
            if request and request.group(1) == "Nm":  # mdoc: a bare .Nm is the page's name
                name = name or rendered
                rendered = rendered or name
            out.append(rendered)
    return "\n".join(out)


def _line(line: str, request: re.Match[str] | None) -> str:
    """One line that is not inside a definition (comments are requests named ``\\"``)."""
    if not request:
        return _text(line).rstrip()
    name, rest = request.group(1), request.group(2)
    if name in _LAYOUT or name.islower() or not name[0].isalpha():
        return ""
    args = [bare or quoted.replace('""', '"') for quoted, bare in _ARG.findall(rest)]
    if name in ("IP", "TP"):  # the tag (IP's first argument); the indent is layout
        args = args[:1] if name == "IP" else []
    if _MDOC.fullmatch(name):
        return " ".join(_mdoc_words([name, *args])).rstrip()
    sep = "" if name in _ALTERNATING else " "
    return sep.join(_text(a) for a in args).rstrip()


def _mdoc_words(tokens: list[str]) -> list[str]:
    """mdoc's callable macros inside a line are markup: ``Fl`` prefixes the next word
    with a dash, the others go."""
    words, prefix = [], ""
    for t in tokens:
        if t in _PREFIX:
            prefix = _PREFIX[t]
        elif not _MDOC.fullmatch(t):
            words.append(prefix + _text(t))
            prefix = ""
    return words


def _text(s: str) -> str:
    """A text line with its escapes resolved (a ``\\"`` comment ends it; a final ``\\``
    joins the next line, which here stays a line of its own)."""
    s = s.split('\\"', 1)[0]
    return _ESCAPE.sub(_escape, s[:-1] if s.endswith("\\") and not s.endswith("\\\\") else s)


def _escape(m: re.Match[str]) -> str:
    e = m.group(0)[1:]
    if e[0] == "(":
        return _GLYPHS.get(e[1:], "")
    if e[0] == "[":
        return _GLYPHS.get(e[1:-1], "")
    if e[0] == "*":
        key = e[1:].strip("([]")
        return _STRINGS.get(key, "")
    if len(e) == 1:
        return {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "t": "\t",
                "'": "\u00b4", "`": "`", ".": ".", "c": ""}.get(e, "")
    return ""
