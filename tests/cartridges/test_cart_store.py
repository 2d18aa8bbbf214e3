import shutil

import pytest

from cartridges.config import CartridgeConfig
from cartridges.store import CartridgeStore
from indexer.errors import NotFound


def test_lifecycle(trained, tmp_path):
    store = CartridgeStore(tmp_path / "carts")
    info = store.create("faq", 3, CartridgeConfig(p=8))
    assert info["status"] == "queued" and store.list() == [info]
    with pytest.raises(NotFound, match="not ready"):
        store.file(info["id"])
    store.update(info["id"], status="training")
    work = store.work_dir(info["id"])
    work.mkdir()
    shutil.copy(trained[0], work / "cartridge.safetensors")
    ready = store.finish(info["id"], work / "cartridge.safetensors")
    assert ready["status"] == "ready" and ready["bytes"] == trained[0].stat().st_size
    assert ready["training"]["heldout_loss_final"] is not None and not work.exists()
    assert store.file(info["id"]).read_bytes() == trained[0].read_bytes()
    assert store.list("other") == []
    store.delete(info["id"])
    with pytest.raises(NotFound):
        store.info(info["id"])


@pytest.mark.parametrize("bad", ["../etc", "nope", "0" * 32])
def test_unknown_ids(tmp_path, bad):
    with pytest.raises(NotFound):
        CartridgeStore(tmp_path).info(bad)
