"""Written files follow the umask (a zoo or store on a shared cluster stays group-readable):
atomic writes must not keep ``mkstemp``'s 0600."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from xas_data.io_utils import atomic_write_text, current_umask, umask_mode


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_write_gives_the_mode_open_would_give(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "atomic.json", "{}")
        with open(tmp_path / "plain.json", "w") as handle:
            handle.write("{}")
        assert current_umask() == mask
    finally:
        os.umask(old)
    assert _mode(tmp_path / "atomic.json") == _mode(tmp_path / "plain.json") == 0o666 & ~mask


def test_executable_mode_follows_the_umask():
    assert umask_mode(executable=True) == 0o777 & ~current_umask()


@pytest.mark.parametrize("mask", ["022", "002"])
def test_a_cli_output_file_follows_the_umask(tmp_path, mask):
    """The end-to-end path users hit: a process started under a shell umask writes a store's
    index through the project's writer (here ``xas_data`` splits JSON via atomic_write)."""
    target = tmp_path / "out.json"
    code = (
        "import sys; from xas_data.io_utils import atomic_write_text; "
        "atomic_write_text(sys.argv[1], '{}')"
    )
    subprocess.run(
        ["sh", "-c", f'umask {mask} && exec "$0" -c "$1" "$2"', sys.executable, code, str(target)],
        check=True,
    )
    assert _mode(target) == 0o666 & ~int(mask, 8)
