"""A generated project's optional compiled wheel: the mypyc hook in its pyproject.toml builds.

The README tells users ``HATCH_BUILD_HOOK_ENABLE_MYPYC=true pip install .``; this builds that wheel
(without build isolation: hatchling, hatch-mypyc and mypy come from this environment), installs it
into a fresh venv and checks that every module the hook lists is imported compiled from there.
The compiled modules' behaviour is the render matrix's ``market-feed-mypyc`` case.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from .fresh_venv import install_in_fresh_venv
from .matrix import Case
from .test_render_matrix import render_case

pytestmark = pytest.mark.slow  # builds a project's mypyc-compiled wheel


def build_wheel(project: Path, dist: Path, *, compiled: bool) -> Path:
    """``pip wheel .`` without build isolation, with the mypyc hook on or off; the wheel's path."""
    env = {**os.environ, "HATCH_BUILD_HOOK_ENABLE_MYPYC": "true" if compiled else "false"}
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), "."],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return next(dist.glob("market_feed-*.whl"))


def test_compiled_wheel_installs_every_listed_module_compiled(tmp_path: Path) -> None:
    project = render_case(Case("market-feed", "market-feed.yaml"), tmp_path)
    config = tomllib.loads((project / "pyproject.toml").read_text())
    include = config["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["mypyc"]["include"]
    modules = [".".join(Path(p).relative_to("/src").with_suffix("").parts) for p in include]

    wheel = build_wheel(project, tmp_path / "dist", compiled=True)
    assert f"-cp{sys.version_info[0]}{sys.version_info[1]}-" in wheel.name  # a platform wheel: compiled

    py, site = install_in_fresh_venv(wheel, tmp_path / "venv")
    probe = "import importlib, sys\nfor m in sys.argv[1:]: print(importlib.import_module(m).__file__)"
    files = subprocess.run(
        [str(py), "-c", probe, *modules], cwd=tmp_path, check=True, capture_output=True, text=True
    ).stdout.split()
    assert modules and len(files) == len(modules)
    assert all(f.startswith(str(site)) and f.endswith(".so") for f in files), files


def test_pure_wheel_leaves_in_place_extensions_out(tmp_path: Path) -> None:
    """After ``scripts/compile.py``, a plain ``pip install .`` must not ship those extensions.

    They were built for this machine, and the shared runtime library mypyc puts in ``src/`` is not
    part of the package, so a wheel carrying them would not even import. ``.gitignore`` (which
    hatchling follows) keeps them out; stand-in files are enough to check that.
    """
    project = render_case(Case("market-feed", "market-feed.yaml"), tmp_path)
    package = project / "src" / "market_feed"
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for stand_in in (package / f"protocol{suffix}", package / "broker" / f"memory{suffix}"):
        stand_in.write_bytes(b"")
    (project / "src" / f"0123456789abcdef0123__mypyc{suffix}").write_bytes(b"")
    wheel = build_wheel(project, tmp_path / "dist", compiled=False)
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert not [n for n in archive.namelist() if n.endswith((".so", ".pyd"))]
