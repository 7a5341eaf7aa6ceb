"""The package skeleton imports and reports its version."""

import xas_models


def test_import_has_version():
    assert xas_models.__version__ == "0.1.0"
