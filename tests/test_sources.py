import os

from indexer.sources import walk_directory


def test_walk_honours_gitignore_and_skips_unreadable_files(tmp_path):
    (tmp_path / ".gitignore").write_text("build/\n*.log\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "out.py").write_text("x = 1\n")
    (tmp_path / "app.log").write_text("noise\n")
    (tmp_path / "ok.py").write_text("print('hi')\n")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02abc")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp_path / "empty.txt").write_text("   \n")
    (tmp_path / "big.txt").write_text("a" * 5000)
    report = walk_directory(tmp_path, max_file_bytes=1000)
    assert [f.rel_path for f in report.files] == [".gitignore", "ok.py"]
    assert report.skipped == {"blob.bin": "binary", "latin1.txt": "not valid UTF-8",
                              "empty.txt": "empty", "big.txt": "larger than 1000 bytes"}


def test_symlinks_cannot_escape_the_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("password\n")
    root = tmp_path / "root"
    root.mkdir()
    (root / "inside.txt").write_text("hello\n")
    os.symlink(outside / "secret.txt", root / "link.txt")
    os.symlink(outside, root / "linkdir")
    os.symlink(root / "inside.txt", root / "alias.txt")
    report = walk_directory(root)
    paths = [f.rel_path for f in report.files]
    assert "link.txt" not in paths and not any(p.startswith("linkdir") for p in paths)
    assert "alias.txt" in paths  # a link that stays inside is fine
    assert report.skipped["link.txt"] == "symlink leaves the root"
