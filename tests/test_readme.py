"""The README's examples run as written.

Every ```bash block preceded by the marker ``<!-- test: run -->`` needs only shipped data (the
zoo, ``docs/examples``, the default dataset); this test runs each of them with bash in a
scratch folder that sees the repository's ``docs/``, ``model-zoo/`` and ``packages/`` (uv
finds the workspace through ``UV_PROJECT``), so the outputs they write land there, not in the
checkout. A block that fails shows its command and the tail of its output.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from xas_testkit import run_logged

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- test: run -->"
BLOCK = re.compile(re.escape(MARKER) + r"\s*\n```bash\n(.*?)\n```", re.DOTALL)


def readme_blocks(text: str) -> list[str]:
    """The bash blocks right after a ``<!-- test: run -->`` marker, in README order."""
    return [m.group(1) for m in BLOCK.finditer(text)]


def test_marked_blocks_are_found_and_every_marker_has_a_block():
    text = (ROOT / "README.md").read_text()
    blocks = readme_blocks(text)
    assert len(blocks) == text.count(MARKER) >= 2, "a marker without a ```bash block after it"
    assert readme_blocks(f"x\n{MARKER}\n```bash\necho hi\n```\n") == ["echo hi"]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(readme_blocks((ROOT / "README.md").read_text()))))
def test_readme_block_runs_as_written(index, tmp_path):
    block = readme_blocks((ROOT / "README.md").read_text())[index]
    for name in ("docs", "model-zoo", "packages", "configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    script = tmp_path / "block.sh"
    script.write_text("set -euo pipefail\n" + block + "\n")
    env = os.environ | {"UV_PROJECT": str(ROOT), "OMP_NUM_THREADS": "1"}
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH; the README's commands need it (pip install uv)"
    proc = run_logged(["bash", str(script)], tmp_path / "block.out", cwd=tmp_path, env=env)
    assert proc.returncode == 0
