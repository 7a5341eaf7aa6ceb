"""The package skeleton imports and reports its version."""

import xas_eval


def test_import_has_version():
    assert xas_eval.__version__ == "0.1.0"
