"""A new venv that installs one wheel and takes every dependency from the running environment."""

from __future__ import annotations

import subprocess
import sysconfig
import venv
from pathlib import Path


def install_in_fresh_venv(wheel: Path, env_dir: Path) -> tuple[Path, Path]:
    """Create a venv at ``env_dir``, install ``wheel`` without dependencies; (python, site-packages).

    The dependencies come from the environment running the tests (no download): a path line in a
    .pth file adds that site-packages after the new venv's own, without processing the .pth files
    in it, so an editable install of this checkout stays out of sight.
    """
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "_outer_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--quiet", str(wheel)], check=True)
    return py, Path(site)
