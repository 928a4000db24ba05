"""Templates and schemas ship inside the wheel: install it in a fresh venv and run from elsewhere."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from ..conftest import EXAMPLES, REPO


def test_wheel_installs_and_generates_outside_checkout(tmp_path: Path) -> None:
    """`pip install <wheel>` then `wsforge new` in an unrelated directory writes a project and docs."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("wsforge-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # wsforge's dependencies come from the environment running this test (no download): a path
    # line in a .pth file adds that site-packages after the new venv's own, without processing
    # the .pth files in it, so the editable install of this checkout stays out of sight.
    new_site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(new_site, "_outer_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--quiet", str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    answers = elsewhere / "answers.yaml"
    answers.write_text((EXAMPLES / "chat.yaml").read_text())
    result = subprocess.run(
        [str(env_dir / "bin" / "wsforge"), "new", "--answers", "answers.yaml", "--non-interactive"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    located = subprocess.run(
        [str(py), "-c", "import wsforge._resources as r; print(r.templates_dir())"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert located.startswith(str(env_dir)) and str(REPO) not in located
    assert (elsewhere / "chat-demo" / "src" / "chat_demo").is_dir()
    assert (elsewhere / "claudedocs" / "websocket_architecture_chat-demo.md").is_file()
