"""The package skeleton imports and reports its version."""

import xas_features


def test_import_has_version():
    assert xas_features.__version__ == "0.1.0"
