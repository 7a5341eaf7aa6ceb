"""Zoo client: listing, loading, 'latest', sha256 verification, cache and zoo URL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import xas_models.checkpoint as checkpoint_module
from xas_models import ModelError, XASBlock, list_pretrained, load_pretrained
from xas_models.zoo import ZooWarning, cache_dir, checkout_zoo, load_pretrained_entry, version_key


def flip_byte(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def no_load(monkeypatch):
    """Record every load_checkpoint call (a refused file must never be loaded)."""
    calls: list = []
    real = checkpoint_module.load_checkpoint

    def spy(folder, *args, **kwargs):
        calls.append(Path(folder))
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "load_checkpoint", spy)
    return calls


def test_version_key_is_semantic():
    versions = ["0.9.0", "0.10.0", "0.2.0", "1.0.0-rc1", "1.0.0", "0.10.0-dev"]
    assert sorted(versions, key=version_key) == [
        "0.2.0",
        "0.9.0",
        "0.10.0-dev",
        "0.10.0",
        "1.0.0-rc1",
        "1.0.0",
    ]
    assert version_key("v2.1") == version_key("2.1.0")


def test_list_pretrained_reads_the_index(tiny_zoo):
    entries = list_pretrained(tiny_zoo)
    assert [(e.name, e.version) for e in entries] == [
        ("tiny-badkey", "0.1.0"),
        ("tiny-concat", "0.1.0"),
        ("tiny-cuni", "0.9.0"),
        ("tiny-cuni", "0.10.0"),
    ]
    cuni = entries[-1]
    assert cuni.elements == ["Cu", "Ni"]
    assert cuni.energy_grids["Ni"].start == 8325.0
    assert cuni.featurizer.name == "chgnet"
    assert set(cuni.files) == {"README.md", "model.json", "model.safetensors"}
    assert cuni.source == str(tiny_zoo)


def test_env_zoo_folder_is_used(tiny_zoo, monkeypatch):
    monkeypatch.setenv("XAS_MODEL_ZOO", str(tiny_zoo))
    assert {e.name for e in list_pretrained()} == {"tiny-badkey", "tiny-concat", "tiny-cuni"}
    _, meta = load_pretrained("tiny-cuni", "0.9.0")
    assert meta.elements == ["Cu", "Ni"]


def test_load_latest_picks_the_highest_semantic_version(tiny_zoo, tiny_zoo_source):
    model, meta, entry = load_pretrained_entry("tiny-cuni", zoo=tiny_zoo)
    assert entry.version == "0.10.0"
    assert isinstance(model, XASBlock) and not model.training
    assert meta.grid_for("Ni").start == 8325.0
    reference, _ = checkpoint_module.load_checkpoint(tiny_zoo_source / "tiny-cuni" / "0.10.0")
    older, _ = load_pretrained("tiny-cuni", "0.9.0", zoo=tiny_zoo)
    x = torch.randn(3, 64)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
        assert not torch.allclose(older(x), reference(x))


def test_unknown_name_or_version_lists_what_is_available(tiny_zoo):
    with pytest.raises(ModelError, match="unknown model 'nope'") as info:
        load_pretrained("nope", zoo=tiny_zoo)
    assert "tiny-cuni (0.9.0, 0.10.0)" in str(info.value)
    with pytest.raises(ModelError, match="no version '3.0.0'") as info:
        load_pretrained("tiny-cuni", "3.0.0", zoo=tiny_zoo)
    assert "0.9.0, 0.10.0" in str(info.value)


def test_missing_zoo_folder_is_refused(tmp_path):
    with pytest.raises(ModelError, match="has no index.json"):
        list_pretrained(tmp_path / "nowhere")


@pytest.mark.parametrize("filename", ["model.json", "model.safetensors", "README.md"])
def test_tampered_file_is_refused_and_not_loaded(tiny_zoo, no_load, filename):
    path = tiny_zoo / "tiny-cuni" / "0.10.0" / filename
    index = json.loads((tiny_zoo / "index.json").read_text())
    expected = next(e["files"][filename] for e in index["models"] if e["version"] == "0.10.0")
    flip_byte(path)
    with pytest.raises(ModelError, match="sha256 mismatch") as info:
        load_pretrained("tiny-cuni", zoo=tiny_zoo)
    message = str(info.value)
    assert filename in message and expected in message
    assert "found" in message and "re-publish" in message
    assert no_load == []
    # the untouched version still loads
    load_pretrained("tiny-cuni", "0.9.0", zoo=tiny_zoo)
    assert len(no_load) == 1


def test_index_entry_without_weights_hash_is_refused(tiny_zoo, no_load):
    index = json.loads((tiny_zoo / "index.json").read_text())
    for e in index["models"]:
        e["files"].pop("model.safetensors")
    (tiny_zoo / "index.json").write_text(json.dumps(index))
    with pytest.raises(ModelError, match="no sha256 for"):
        load_pretrained("tiny-cuni", zoo=tiny_zoo)
    assert no_load == []


def test_download_from_url_fills_the_cache_then_loads_offline(tiny_zoo, monkeypatch):
    monkeypatch.setenv("XAS_MODEL_ZOO_URL", tiny_zoo.as_uri())
    names = {(e.name, e.version) for e in list_pretrained()}
    assert ("tiny-cuni", "0.10.0") in names
    model, meta, entry = load_pretrained_entry("tiny-cuni")
    cached = cache_dir() / "tiny-cuni" / "0.10.0"
    assert entry.version == "0.10.0" and entry.source == str(cached)
    assert sorted(p.name for p in cached.iterdir()) == [
        "README.md",
        "entry.json",
        "model.json",
        "model.safetensors",
    ]
    assert not [p for p in cache_dir().iterdir() if p.name.startswith(".tmp")]
    x = torch.randn(2, 64)
    with torch.no_grad():
        expected = model(x)

    # the zoo disappears: an explicit version and 'latest' load from the cache
    shutil.rmtree(tiny_zoo)
    again, _, entry = load_pretrained_entry("tiny-cuni", "0.10.0")
    assert entry.source == f"cache:{cached}"
    with pytest.warns(ZooWarning, match="cannot download"):
        latest, _, entry = load_pretrained_entry("tiny-cuni")
    assert entry.version == "0.10.0"
    with torch.no_grad():
        assert torch.equal(again(x), expected) and torch.equal(latest(x), expected)
    # a version that was never downloaded cannot be found
    with pytest.raises(ModelError, match="cannot download"):
        load_pretrained("tiny-cuni", "0.9.0")


def test_corrupted_cache_file_is_refused(tiny_zoo, monkeypatch, no_load):
    monkeypatch.setenv("XAS_MODEL_ZOO_URL", tiny_zoo.as_uri())
    load_pretrained("tiny-cuni", "0.9.0")
    assert len(no_load) == 1
    cached = cache_dir() / "tiny-cuni" / "0.9.0"
    flip_byte(cached / "model.safetensors")
    with pytest.raises(ModelError, match="sha256 mismatch") as info:
        load_pretrained("tiny-cuni", "0.9.0")
    assert "delete the cache entry" in str(info.value) and str(cached) in str(info.value)
    assert len(no_load) == 1
    # the fix works: delete the entry, load again
    shutil.rmtree(cached)
    load_pretrained("tiny-cuni", "0.9.0")
    assert len(no_load) == 2


def test_download_of_a_tampered_file_caches_nothing(tiny_zoo, monkeypatch, no_load):
    monkeypatch.setenv("XAS_MODEL_ZOO_URL", tiny_zoo.as_uri())
    flip_byte(tiny_zoo / "tiny-cuni" / "0.10.0" / "model.safetensors")
    with pytest.raises(ModelError, match="sha256 mismatch") as info:
        load_pretrained("tiny-cuni")
    assert "model.safetensors" in str(info.value) and "nothing was cached" in str(info.value)
    assert no_load == []
    assert not (cache_dir() / "tiny-cuni" / "0.10.0").exists()
    assert not [p for p in cache_dir().iterdir() if p.name.startswith(".tmp")]


def test_explicit_url_zoo_argument(tiny_zoo):
    _, _, entry = load_pretrained_entry("tiny-cuni", "0.9.0", zoo=tiny_zoo.as_uri())
    assert entry.version == "0.9.0"
    assert (cache_dir() / "tiny-cuni" / "0.9.0" / "entry.json").is_file()


def test_checkout_zoo_is_the_default_local_zoo(monkeypatch):
    zoo = checkout_zoo()
    if zoo is None:
        pytest.skip("not running from a source checkout with model-zoo/")
    monkeypatch.delenv("XAS_MODEL_ZOO")
    names = {e.name for e in list_pretrained()}
    assert "xasblock-chgnet-default-feff-fast-tuned-cu" in names


def test_below_baseline_names_the_elements_with_eta_below_one():
    from xas_models.zoo import below_baseline

    assert below_baseline({"Cu/eta": 0.93, "Fe/eta": 1.3, "Cu/xi": 0.1}) == ["Cu"]
    assert below_baseline({"eta": 0.5}) == ["all"] and below_baseline({"eta": 2.0}) == []
    assert below_baseline({"OS_f1_macro": 0.2}) == []
