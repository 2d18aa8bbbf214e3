"""The memex command as a person runs it."""

import json

from tests.helpers.cli import run_memex as memex


def test_index_then_search_then_reindex(tmp_path, sample_dir):
    home = tmp_path / "home"
    first = memex(home, "index", str(sample_dir), "--name", "src")
    assert first.returncode == 0, first.stderr
    assert "3 added" in first.stdout and "3 passages encoded" in first.stdout
    found = memex(home, "search", "area of a circle", "--corpus", "src", "-k", "2", "--json")
    hits = json.loads(found.stdout)
    assert hits[0]["path"] == "math/geometry.py" and len(hits) == 2
    (sample_dir / "math/geometry.py").write_text("def cube(x):\n    return x ** 3\n")
    again = memex(home, "index", str(sample_dir), "--name", "src")
    assert "1 updated" in again.stdout and "1 passages encoded" in again.stdout


def test_errors_are_messages_not_tracebacks(tmp_path):
    r = memex(tmp_path / "home", "index", str(tmp_path / "missing"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = memex(tmp_path / "home", "search", "anything")
    assert r.returncode == 2 and "no corpus yet" in r.stderr
