"""Manual pages and gzipped files: read as the text a reader sees, line spans kept."""

import gzip

from indexer.man_pages import looks_like_man_page, render
from indexer.sources import walk_directory

# A page in the man macros, written here (the system's pages are reserved for checks).
PAGE = r""".\" Copyright and licence text a reader never sees
.TH FROB 1 "2026-12-04" "frob 2.1" "User Commands"
.de XX
.ft B
..
.SH NAME
frob \- twiddle the \fBwidgets\fR of a \fIgadget\fP
.SH SYNOPSIS
.B frob
[\fB\-v\fR] \fIFILE\fR...
.SH OPTIONS
.TP 8
.BR \-v ", " \-\-verbose
report each widget as it is twiddled \(em slowly
.IP "\(bu" 4
the default gadget is \*(lqmain\*(rq
.rr XX
.BI \-C\  file
.if n \{\
.\" a comment line
"""

# The same ideas in mdoc, which BSD-derived pages use.
MDOC_PAGE = r""".Dd December 4, 2026
.Dt FROB 1
.Os
.Sh NAME
.Nm frob
.Nd twiddle widgets
.Sh SYNOPSIS
.Nm
.Op Fl v
.Ar file
"""


def test_render_keeps_the_words_and_one_line_per_source_line():
    text = render(PAGE)
    lines = text.split("\n")
    assert len(lines) == len(PAGE.split("\n"))
    assert lines[6] == "frob - twiddle the widgets of a gadget"
    assert lines[9] == "[-v] FILE..."
    assert lines[12] == "-v, --verbose"  # alternating fonts join without spaces
    assert lines[13] == "report each widget as it is twiddled \u2014 slowly"
    assert lines[14] == "\u2022"  # .IP's tag, not its indent
    assert lines[15] == "the default gadget is \u201cmain\u201d"
    assert lines[16:19] == ["", "-C file", ""]  # a request; "\ " does not split an argument
    assert "Copyright" not in text and ".ft" not in text and "\\f" not in text
    assert not lines[2] and not lines[3] and not lines[4]  # the macro definition's body


def test_render_mdoc():
    lines = render(MDOC_PAGE).split("\n")
    assert lines[4:10] == ["frob", "twiddle widgets", "SYNOPSIS", "frob", "-v", "file"]


def test_man_page_detection_needs_a_title_request():
    assert looks_like_man_page(PAGE) and looks_like_man_page(MDOC_PAGE)
    assert not looks_like_man_page(".PHONY: all\nall:\n\tmake it\n")
    assert not looks_like_man_page("A note about .TH in the middle of a line\n")


def test_walk_reads_gzipped_files_and_renders_man_pages(tmp_path):
    (tmp_path / "frob.1.gz").write_bytes(gzip.compress(PAGE.encode()))
    (tmp_path / "frob.1").write_text(PAGE)  # uncompressed, as in a source tree
    (tmp_path / "notes.txt.gz").write_bytes(gzip.compress(b".TH is a man macro\nplain text\n"))
    (tmp_path / "broken.gz").write_bytes(b"\x1f\x8b\x08\x00not really gzip")
    (tmp_path / "bomb.txt.gz").write_bytes(gzip.compress(b"a" * 50_000))  # ~100 bytes on disk
    (tmp_path / "blob.gz").write_bytes(gzip.compress(b"\x00\x01\x02" * 10))
    report = walk_directory(tmp_path, max_file_bytes=5_000)
    files = {f.rel_path: f.text for f in report.files}
    assert files["frob.1.gz"] == files["frob.1"] == render(PAGE)
    assert files["notes.txt.gz"] == ".TH is a man macro\nplain text\n"  # not a page: as is
    assert report.skipped == {"broken.gz": "not valid gzip", "blob.gz": "binary",
                              "bomb.txt.gz": "larger than 5000 bytes uncompressed"}


def test_a_man_page_is_searchable_with_exact_line_spans(corpora, tmp_path):
    root = tmp_path / "man"
    (root / "man1").mkdir(parents=True)
    (root / "man1" / "frob.1.gz").write_bytes(gzip.compress(PAGE.encode()))
    corpora.create("man", str(root))
    assert corpora.sync("man").added == ["man1/frob.1.gz"]
    for mode in ("bm25", "hybrid"):
        hit = corpora.search(["man"], ["report each widget verbose"], k=1, mode=mode)[0][0]
        assert hit.path == "man1/frob.1.gz" and hit.start_line <= 14 <= hit.end_line
        assert hit.text.split("\n")[14 - hit.start_line] == \
            "report each widget as it is twiddled \u2014 slowly"
        assert "\\f" not in hit.text
