"""The package skeleton imports and reports its version."""

import xas_train


def test_import_has_version():
    assert xas_train.__version__ == "0.1.0"
