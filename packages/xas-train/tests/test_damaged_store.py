"""Training refuses a damaged store with one line naming the array (it used to train on
zeros served for a missing chunk, or on values changed by a flipped byte)."""

from __future__ import annotations

import shutil

import pytest

from xas_train.config import load_config
from xas_train.data import load_training_data
from xas_train.errors import TrainError

INTENSITY = "spectra/Cu/FEFF/intensity"


@pytest.fixture
def damaged(toy_store, tmp_path):
    """A private copy of the toy store (chunks of 16 rows)."""
    copy = tmp_path / "toy.zarr"
    shutil.copytree(toy_store, copy)
    return copy


def _data_config(write_config, store):
    return load_config(write_config("damaged", data={"dataset": str(store)})).data


def test_flipped_byte_is_refused_naming_the_array(write_config, damaged):
    chunk = damaged / INTENSITY / "c/1/0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    with pytest.raises(TrainError, match=f"{INTENSITY}: a chunk fails its checksum") as info:
        load_training_data(_data_config(write_config, damaged))
    assert "\n" not in str(info.value)


def test_missing_chunk_is_refused_naming_the_array(write_config, damaged):
    (damaged / INTENSITY / "c/1/0").unlink()
    with pytest.raises(TrainError, match=f"damaged: {INTENSITY}: 1 of 4 chunks missing"):
        load_training_data(_data_config(write_config, damaged))


def test_intact_store_loads(write_config, damaged):
    data = load_training_data(_data_config(write_config, damaged))
    assert len(data.train) > 0
