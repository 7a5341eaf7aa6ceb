"""Tests of the dataset registry: loading, URL schemes, fetch with hash checks and caching."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from xas_data import registry
from xas_data.errors import RegistryError
from xas_data.registry import RegistryEntry, RegistryFile

LOCAL_ENTRIES = ["omnixas-ml-arrays", "omnixas-cu-feff", "xaslib-k-edge", "lightshow-anatase"]


@pytest.fixture
def shared_dir(monkeypatch: pytest.MonkeyPatch, shared_data: Path) -> Path:
    monkeypatch.setenv("XAS_SHARED_DATA", str(shared_data))
    return shared_data


def _file_url_overrides(entry: RegistryEntry, shared: Path) -> dict[str, list[str]]:
    """file:// URLs for every file of ``entry``, from the shared:// URL's relative path."""
    overrides = {}
    for item in entry.files:
        rel = item.urls[0].removeprefix("shared://")
        overrides[item.filename] = [(shared / rel).resolve().as_uri()]
    return overrides


class CountingOpener:
    """Wraps registry._open_url and counts the URLs opened."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._real = registry._open_url

    def __call__(self, url: str, timeout: float):
        self.calls.append(url)
        return self._real(url, timeout)


# --------------------------------------------------------------------------- loading


def test_registry_loads_all_shipped_entries() -> None:
    entries = registry.load_registry()
    for name in [*LOCAL_ENTRIES, "omnixas-3dtm-xanes-ml2024"]:
        assert name in entries
        assert entries[name].name == name
    assert registry.list_datasets() == sorted(entries)
    assert entries["omnixas-cu-feff"].converter == "omnixas_cu_feff"
    assert entries["omnixas-ml-arrays"].converter == "omnixas_ml_arrays"
    filenames = {f.filename for f in entries["omnixas-cu-feff"].files}
    assert "splits/Cu_FEFF_train.txt" in filenames
    for name in LOCAL_ENTRIES:
        for item in entries[name].files:
            assert item.sha256 is not None and len(item.sha256) == 64


def test_zenodo_entry_points_at_record_and_is_unpinned() -> None:
    entry = registry.get_entry("omnixas-3dtm-xanes-ml2024")
    assert "14145457" in entry.homepage
    (item,) = entry.files
    assert item.urls[0].startswith("https://zenodo.org/records/14145457/files/")
    assert item.sha256 is None
    assert "not pinned" in entry.description
    assert entry.license == "CC-BY-4.0"
    assert "2409.19552" in entry.citation


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(RegistryError) as info:
        registry.get_entry("no-such-dataset")
    message = str(info.value)
    assert "no-such-dataset" in message
    for name in LOCAL_ENTRIES:
        assert name in message


def test_invalid_registry_file_names_entry(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        '{"schema_version": 1, "datasets": [{"name": "broken", "description": "x", '
        '"files": [{"filename": "../evil", "urls": ["file:///x"], "sha256": null}], '
        '"converter": "c", "license": "l", "citation": "c", "homepage": "h"}]}'
    )
    with pytest.raises(RegistryError, match=r"broken.*filename|filename.*broken"):
        registry.load_registry(path)


def test_default_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XAS_DATA_CACHE", str(tmp_path / "cache"))
    assert registry.default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("XAS_DATA_CACHE")
    assert registry.default_cache_dir().name == "xas-data"


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"abc")
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert registry.sha256_file(path) == expected


# --------------------------------------------------------------------------- URL schemes


def test_shared_url_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XAS_SHARED_DATA", str(tmp_path))
    resolved = registry.resolve_url("shared://omnixas-cu-feff/splits/Cu_FEFF_val.txt")
    assert resolved == tmp_path / "omnixas-cu-feff" / "splits" / "Cu_FEFF_val.txt"
    with pytest.raises(RegistryError, match="relative path"):
        registry.resolve_url("shared://../etc/passwd")
    monkeypatch.delenv("XAS_SHARED_DATA")
    with pytest.raises(RegistryError, match="XAS_SHARED_DATA"):
        registry.resolve_url("shared://omnixas-cu-feff/spectra.npz")


def test_shared_scheme_fetch(shared_dir: Path, tmp_path: Path) -> None:
    entry = registry.get_entry("xaslib-k-edge")
    folder = registry.fetch(entry, cache_dir=tmp_path)
    for item in entry.files:
        assert registry.sha256_file(folder / item.filename) == item.sha256


def test_file_url_resolution(tmp_path: Path) -> None:
    path = tmp_path / "x y.bin"
    assert registry.resolve_url(path.as_uri()) == path
    with pytest.raises(RegistryError, match="unsupported scheme"):
        registry.resolve_url("ftp://example.org/x")


# --------------------------------------------------------------------------- fetch


@pytest.mark.parametrize("name", LOCAL_ENTRIES)
def test_fetch_local_entries_via_file_urls(
    name: str, shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = registry.get_entry(name)
    overrides = _file_url_overrides(entry, shared_dir)
    cache = tmp_path / "cache"
    opener = CountingOpener()
    monkeypatch.setattr(registry, "_open_url", opener)

    folder = registry.fetch(name, cache_dir=cache, urls_override=overrides)
    assert folder == cache / name
    for item in entry.files:
        path = folder / item.filename
        assert path.is_file()
        assert registry.sha256_file(path) == item.sha256
        if item.size is not None:
            assert path.stat().st_size == item.size
    assert len(opener.calls) == len(entry.files)
    assert not list(folder.rglob("*.part")), "temporary files left behind"

    mtimes = {item.filename: (folder / item.filename).stat().st_mtime_ns for item in entry.files}
    registry.fetch(name, cache_dir=cache, urls_override=overrides)
    assert len(opener.calls) == len(entry.files), "cached files were downloaded again"
    for item in entry.files:
        assert (folder / item.filename).stat().st_mtime_ns == mtimes[item.filename]

    registry.fetch(name, cache_dir=cache, urls_override=overrides, force=True)
    assert len(opener.calls) == 2 * len(entry.files)


def test_tampered_source_is_rejected_and_cache_kept(shared_dir: Path, tmp_path: Path) -> None:
    entry = registry.get_entry("lightshow-anatase")
    overrides = _file_url_overrides(entry, shared_dir)
    cache = tmp_path / "cache"
    folder = registry.fetch(entry, cache_dir=cache, urls_override=overrides)
    target = "anatase_exp.txt"
    good = (folder / target).read_bytes()

    tampered = tmp_path / "tampered.txt"
    shutil.copyfile(registry.resolve_url(entry.file(target).urls[0]), tampered)
    data = bytearray(tampered.read_bytes())
    data[10] = (data[10] + 1) % 256
    tampered.write_bytes(bytes(data))

    with pytest.raises(RegistryError) as info:
        registry.fetch(
            entry, cache_dir=cache, urls_override={target: [tampered.as_uri()]}, force=True
        )
    message = str(info.value)
    assert target in message
    assert entry.file(target).sha256 in message
    assert registry.sha256_file(tampered) in message
    assert (folder / target).read_bytes() == good
    assert not list(folder.rglob("*.part"))


def test_corrupt_cached_file_is_replaced(shared_dir: Path, tmp_path: Path) -> None:
    entry = registry.get_entry("xaslib-k-edge")
    overrides = _file_url_overrides(entry, shared_dir)
    folder = registry.fetch(entry, cache_dir=tmp_path, urls_override=overrides)
    item = entry.files[0]
    (folder / item.filename).write_bytes(b"corrupt")
    registry.fetch(entry, cache_dir=tmp_path, urls_override=overrides)
    assert registry.sha256_file(folder / item.filename) == item.sha256


def test_urls_tried_in_order_and_all_failures_reported(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"payload")
    entry = RegistryEntry(
        name="toy",
        description="toy",
        files=(
            RegistryFile(
                filename="sub/data.bin",
                urls=((tmp_path / "missing.bin").as_uri(), source.as_uri()),
                sha256=registry.sha256_file(source),
                size=7,
            ),
        ),
        converter="none",
        license="CC0-1.0",
        citation="none",
        homepage="none",
    )
    folder = registry.fetch(entry, cache_dir=tmp_path / "cache")
    assert (folder / "sub" / "data.bin").read_bytes() == b"payload"

    bad = [(tmp_path / "a.bin").as_uri(), (tmp_path / "b.bin").as_uri()]
    with pytest.raises(RegistryError) as info:
        registry.fetch(entry, cache_dir=tmp_path / "c2", urls_override={"sub/data.bin": bad})
    assert bad[0] in str(info.value) and bad[1] in str(info.value)

    with pytest.raises(RegistryError, match="not in dataset"):
        registry.fetch(entry, cache_dir=tmp_path / "c3", urls_override={"nope": bad})


def test_unpinned_hash_warns_with_computed_hash(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"unpinned")
    entry = RegistryEntry(
        name="toy-unpinned",
        description="toy",
        files=(RegistryFile(filename="x.bin", urls=(source.as_uri(),), sha256=None),),
        converter="none",
        license="CC0-1.0",
        citation="none",
        homepage="none",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry.fetch(entry, cache_dir=tmp_path / "cache")
    messages = [str(w.message) for w in caught if w.category is registry.UnverifiedDownloadWarning]
    assert messages and registry.sha256_file(source) in messages[0]
    assert "pin" in messages[0]
