"""xas-data CLI: library errors on bad input files are one 'error:' line with exit status 2,
no traceback; --debug shows it (issue 16 item 9)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from xas_data.cli import app


def _invoke(args, env=None):
    return CliRunner().invoke(app, args, env={"XAS_DEBUG": "", **(env or {})})


def test_truncated_npz_is_one_line(tmp_path):
    bad = tmp_path / "arrays.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    out = tmp_path / "o.zarr"
    result = _invoke(["ingest", "omnixas-ml-arrays", str(bad), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "truncated or not an .npz" in result.output and not out.exists()
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_invalid_utf8_measured_json_is_one_line(tmp_path):
    good = json.dumps([{"element": "Cu", "edge": "K", "sample": "Cu", "energy": [1, 2]}])
    bad = tmp_path / "m.json"
    bad.write_bytes(good[:20].encode() + b"\xff\xfe" + good[20:].encode())
    result = _invoke(["ingest-measured", str(bad), "--out", str(tmp_path / "o.zarr")])
    assert result.exit_code == 2, result.output
    assert "not UTF-8" in result.output


def test_debug_keeps_the_traceback(tmp_path):
    bad = tmp_path / "arrays.npz"
    bad.write_bytes(b"not a zip")
    args = ["--debug", "ingest", "omnixas-ml-arrays", str(bad), "--out", str(tmp_path / "o")]
    result = _invoke(args)
    assert result.exit_code != 0 and not isinstance(result.exception, SystemExit | None)
