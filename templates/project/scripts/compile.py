"""Compile the server's hot modules with mypyc, in place, or remove the compiled modules again.

    python scripts/compile.py            # build a C extension beside each listed .py file
    python scripts/compile.py --check    # exit 1 unless every listed module imports compiled
    python scripts/compile.py --clean    # delete them: back to pure Python

Why in place: Python imports an extension module before a ``.py`` of the same name, so the test
suite, ``python -m <package>`` and the load generator all run the compiled build unchanged, and
``--clean`` undoes it. The modules are the ones that ``pyproject.toml`` lists for the wheel's
mypyc hook (``[tool.hatch.build.targets.wheel.hooks.mypyc] include``): one list for both builds.

Needs the ``dev`` extra (mypy, which ships mypyc, and setuptools), a C compiler and the Python
headers. Recompile after editing a listed module: a stale extension shadows the new source.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def listed_modules() -> list[Path]:
    """Source files of the mypyc hook's ``include`` list, relative to ``src/``."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["mypyc"]["include"]
    return [Path(pattern.lstrip("/")).relative_to("src") for pattern in include]


def module_name(source: Path) -> str:
    return ".".join(source.with_suffix("").parts)


def extensions(sources: list[Path]) -> list[Path]:
    """The extensions mypyc left for the listed modules, and its shared runtime library."""
    found = [SRC.glob("*__mypyc.*")]
    found += [(SRC / source).parent.glob(f"{source.stem}.*") for source in sources]
    return sorted(p for paths in found for p in paths if p.suffix in (".so", ".pyd"))


def clean(sources: list[Path]) -> int:
    removed = extensions(sources)
    for path in removed:
        path.unlink()
    shutil.rmtree(SRC / "build", ignore_errors=True)
    print(f"removed {len(removed)} compiled module(s)")
    return 0


def check(sources: list[Path]) -> int:
    """Import each listed module in this interpreter and report whether it is the compiled one."""
    sys.path.insert(0, str(SRC))
    pure = []
    for source in sources:
        module = importlib.import_module(module_name(source))
        if not str(module.__file__).endswith((".so", ".pyd")):
            pure.append(module_name(source))
    if pure:
        print(f"not compiled: {', '.join(pure)}", file=sys.stderr)
        return 1
    print(f"{len(sources)} module(s) compiled")
    return 0


def compile_in_place(sources: list[Path]) -> int:
    clean(sources)
    command = [sys.executable, "-m", "mypyc", *map(str, sources)]
    # mypyc builds under ./build and copies each extension beside its source; run it from src/ so
    # that the shared runtime library lands on the import path too.
    result = subprocess.run(command, cwd=SRC, capture_output=True, text=True, check=False)  # noqa: S603
    shutil.rmtree(SRC / "build", ignore_errors=True)
    if result.returncode != 0:
        print(result.stdout[-4000:], result.stderr[-4000:], sep="\n", file=sys.stderr)
        return result.returncode
    print(f"compiled {len(sources)} module(s): {', '.join(module_name(s) for s in sources)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--clean", action="store_true", help="remove the compiled modules")
    mode.add_argument("--check", action="store_true", help="fail unless every listed module is compiled")
    args = parser.parse_args(argv)
    sources = listed_modules()
    if args.clean:
        return clean(sources)
    return check(sources) if args.check else compile_in_place(sources)


if __name__ == "__main__":
    sys.exit(main())
