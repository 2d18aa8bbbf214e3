"""Generated HTML pages: read as the text a reader sees, line spans kept; templates as they are."""

from indexer.html_pages import is_generated_page, render
from indexer.sources import walk_directory

PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8" />
<meta name="generator" content="Docutils 0.19: https://docutils.sourceforge.io/" />
<title>Library FAQ &mdash; Python docs</title>
<script>
  var layout = "a < b && c > d";
</script>
<style>body { color: red }</style>
</head><body>
<!-- navigation
     that spans lines -->
<h2>How do I join <code>os.path</code>.join parts?</h2>
<p class="first"
   id="answer">Use <em>pathlib</em> &amp; friends: a&lt;b &#10;done.</p>
<table><tr><td>left</td><td>right</td></tr></table>
<a href="x.html" title="a > b">link text</a>
</body></html>
"""


def test_render_keeps_the_words_and_one_line_per_source_line():
    lines = render(PAGE).split("\n")
    assert len(lines) == len(PAGE.split("\n"))
    assert lines[4] == "Library FAQ \u2014 Python docs"
    assert lines[5:12] == [""] * 7  # script, style, comment: gone, their lines kept
    assert lines[12] == "How do I join os.path.join parts?"  # inline tags leave no space
    assert lines[13] == ""  # the first line of a tag spanning two
    assert lines[14] == "Use pathlib & friends: a<b done."  # entities, even a newline one
    assert lines[15] == "left right"  # block tags leave a space
    assert lines[16] == "link text"  # a quoted ">" inside a tag is the tag's


def test_an_unclosed_script_runs_to_the_end():
    page = PAGE.replace("</script>", "")
    lines = render(page).split("\n")
    assert len(lines) == len(page.split("\n")) and not any(lines[5:])


def test_only_generated_pages_are_rendered(tmp_path):
    template = ('<!DOCTYPE html>\n<html>\n<body class="{{ theme }}">\n'
                '{% block body %}{% endblock %}\n</body>\n</html>\n')
    assert is_generated_page(PAGE) and not is_generated_page(template)
    assert not is_generated_page('<meta name="generator" content="x">, but no page')
    (tmp_path / "faq.html").write_text(PAGE)
    (tmp_path / "base.html").write_text(template)
    files = {f.rel_path: f.text for f in walk_directory(tmp_path).files}
    assert files == {"faq.html": render(PAGE), "base.html": template}


def test_a_generated_page_is_searchable_with_exact_line_spans(corpora, tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "faq.html").write_text(PAGE)
    corpora.create("site", str(root))
    corpora.sync("site")
    hit = corpora.search(["site"], ["pathlib friends"], k=1, mode="bm25")[0][0]
    assert hit.path == "faq.html" and hit.start_line <= 15 <= hit.end_line
    assert hit.text.split("\n")[15 - hit.start_line] == "Use pathlib & friends: a<b done."
    assert "<p" not in hit.text and "layout" not in hit.text
