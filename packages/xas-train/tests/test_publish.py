"""Publishing checkpoints into a model zoo folder."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from xas_testkit import Background, wait_all

from xas_train.config import load_config
from xas_train.errors import TrainError
from xas_train.publish import publish, read_index
from xas_train.trainer import train


@pytest.fixture
def trained(write_config) -> Path:
    return Path(
        train(load_config(write_config("pub", training={"max_epochs": 2})), progress=None).run_dir
    )


def test_publish_writes_files_hashes_and_index(trained, tmp_path):
    zoo = tmp_path / "zoo"
    # the toy model (a few epochs) is worse than the mean spectrum: publishing needs the flag
    ok = {"allow_below_baseline": True}
    entry = publish(trained, zoo, "toy-cu", "0.1.0", **ok)
    folder = zoo / "toy-cu" / "0.1.0"
    assert sorted(entry["files"]) == ["README.md", "model.json", "model.safetensors"]
    for name, digest in entry["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    index = read_index(zoo)
    assert index["schema_version"] == 1
    assert [(e["name"], e["version"]) for e in index["models"]] == [("toy-cu", "0.1.0")]
    assert entry["elements"] == ["Cu"] and entry["featurizer"]["key"] == "toy-v1-0000"
    assert "Cu/eta" in entry["metrics"]
    assert entry["below_baseline"] == ["Cu"]
    assert publish(trained, zoo, "toy-cu", "0.1.0", **ok) == entry  # same files: a no-op
    publish(trained, zoo, "toy-cu", "0.1.0", overwrite=True, **ok)
    assert entry["sizes"]["model.safetensors"] == (folder / "model.safetensors").stat().st_size
    publish(trained / "model", zoo, "toy-cu", "0.2.0", **ok)
    assert len(read_index(zoo)["models"]) == 2
    with pytest.raises(TrainError, match="semantic version"):
        publish(trained, zoo, "toy-cu", "latest")
    with pytest.raises(TrainError, match="neither a checkpoint"):
        publish(tmp_path, zoo, "toy-cu", "0.3.0")


def test_concurrent_publishers_lose_no_entry(trained, tmp_path):
    zoo = tmp_path / "zoo"
    code = (
        "import sys; from xas_train.publish import publish; "
        "publish(sys.argv[1], sys.argv[2], 'toy-' + sys.argv[3], '1.0.0', "
        "allow_below_baseline=True)"
    )
    procs = [
        Background([sys.executable, "-c", code, trained, zoo, str(i)], tmp_path / f"pub{i}.log")
        for i in range(4)
    ]
    codes = wait_all(procs, "the 4 publishers to finish")
    assert codes == [0, 0, 0, 0], "\n".join(p.tail() for p in procs)
    names = sorted(e["name"] for e in json.loads((zoo / "index.json").read_text())["models"])
    assert names == [f"toy-{i}" for i in range(4)]


BELOW = (
    Path(__file__).parents[3] / "model-zoo" / "xasblock-chgnet-default-feff-fast-tuned-cu" / "0.1.0"
)


def test_a_model_worse_than_the_mean_spectrum_needs_allow_below_baseline(tmp_path):
    """The zoo's tuned-cu (test eta 0.93 on Cu) is refused unless allowed, then flagged."""
    with pytest.raises(TrainError, match=r"eta < 1 for Cu .*--allow-below-baseline"):
        publish(BELOW, tmp_path / "zoo", "tuned-cu", "0.1.0")
    assert not (tmp_path / "zoo" / "tuned-cu").exists()
    entry = publish(BELOW, tmp_path / "zoo", "tuned-cu", "0.1.0", allow_below_baseline=True)
    assert entry["below_baseline"] == ["Cu"]
    from xas_models.cli import format_models
    from xas_models.zoo import list_pretrained

    table = format_models(list_pretrained(str(tmp_path / "zoo")))
    assert "! below baseline (eta < 1: Cu)" in table


def _other_weights(trained: Path, dst: Path) -> Path:
    """A copy of ``trained``'s checkpoint with every weight changed (the same architecture)."""
    from xas_models import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(trained / "model")
    for p in model.parameters():
        p.data.add_(0.01)
    save_checkpoint(dst, model, meta)
    return dst


def test_published_versions_are_immutable(trained, tmp_path):
    """Issue 16: other weights under a published version are refused, even with overwrite;
    the zoo is left exactly as it was."""
    zoo, ok = tmp_path / "zoo", {"allow_below_baseline": True}
    entry = publish(trained, zoo, "toy-cu", "0.1.0", **ok)
    other = _other_weights(trained, tmp_path / "other")
    before = (zoo / "index.json").read_bytes()
    for overwrite in (False, True):
        with pytest.raises(TrainError, match="other weights; published versions are immutable"):
            publish(other, zoo, "toy-cu", "0.1.0", overwrite=overwrite, **ok)
    assert (zoo / "index.json").read_bytes() == before
    folder = zoo / "toy-cu" / "0.1.0"
    for name, digest in entry["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert publish(other, zoo, "toy-cu", "0.1.1", **ok)["version"] == "0.1.1"


def test_killed_publish_leaves_an_intact_index_and_is_cleaned_up(trained, tmp_path):
    """A publish --overwrite killed after copying, before the swap: the indexed version keeps
    all its files, and the next publish removes the dead publisher's temporary folder."""
    zoo, ok = tmp_path / "zoo", {"allow_below_baseline": True}
    entry = publish(trained, zoo, "toy-cu", "0.1.0", **ok)
    (tmp_path / "meta").mkdir()
    for name in ("model.json", "model.safetensors"):
        (tmp_path / "meta" / name).write_bytes((trained / "model" / name).read_bytes())
    (tmp_path / "meta" / "README.md").write_text("# a new model card\n")
    code = (
        "import os, signal, sys; import xas_train.publish as p\n"
        "p._install = lambda tmp, dest: os.kill(os.getpid(), signal.SIGKILL)\n"
        "p.publish(sys.argv[1], sys.argv[2], 'toy-cu', '0.1.0', overwrite=True, "
        "allow_below_baseline=True)"
    )
    proc = Background([sys.executable, "-c", code, tmp_path / "meta", zoo], tmp_path / "k.log")
    assert proc.wait("the publisher to be killed") == -9, proc.tail()
    folder = zoo / "toy-cu" / "0.1.0"
    assert read_index(zoo)["models"][0]["files"] == entry["files"]
    for name, digest in entry["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert (zoo / "toy-cu" / f".0.1.0.tmp-{proc.pid}").is_dir()  # what the kill left
    new = publish(tmp_path / "meta", zoo, "toy-cu", "0.1.0", overwrite=True, **ok)
    assert (folder / "README.md").read_text() == "# a new model card\n"
    assert new["files"]["README.md"] != entry["files"]["README.md"]
    assert sorted(p.name for p in (zoo / "toy-cu").iterdir()) == ["0.1.0"]


def test_a_corrupt_index_is_a_one_line_error(trained, tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "index.json").write_text("{not json")
    with pytest.raises(TrainError, match="is not valid JSON"):
        publish(trained, zoo, "toy-cu", "0.1.0", allow_below_baseline=True)
