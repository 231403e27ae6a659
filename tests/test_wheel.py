"""The wheel the images are built from: it builds, installs into a fresh venv, and each
console script the images run answers ``--help``.

The sources are copied to a temporary folder first, so that the build leaves nothing
in the work tree. The build runs pip with build isolation, as the image's build stage
does; the fresh venv gets the wheel and its dependencies from the package index (pip
uses its cache), without bytecode, as in the images.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.chart

ROOT = Path(__file__).resolve().parent.parent
# What the Dockerfile's build stage copies.
SOURCES = ("pyproject.toml", "README.md", "services", "operator", "ksql")
# The console scripts the images and the docs run.
SCRIPTS = ("energy-producer", "energy-transformer", "energy-operator", "energy-ksql")
PACKAGES = ("energy_pipeline", "energy_operator", "energy_ksql")


def run(
    *command: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(c) for c in command],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env=env,
        cwd=cwd,
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dist, source)
    (built,) = dist.glob("energy_pipeline-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv (not this one, no system site-packages) with the wheel installed."""
    root = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--without-pip", root)
    python = root / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-compile", wheel)
    yield root


def test_wheel_holds_the_packages_their_data_and_the_console_scripts(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names
        assert f"{package}/py.typed" in names
    assert any(n.startswith("energy_ksql/templates/") and n.endswith(".sql") for n in names)
    assert any(n.startswith("energy_pipeline/local/") and n.endswith(".xml") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    for script in SCRIPTS:
        assert f"{script} = " in scripts, f"the wheel has no console script {script}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_script_answers_help_in_a_fresh_venv(venv: Path, script: str) -> None:
    executable = venv / "bin" / script
    assert executable.exists(), f"{script} is not installed by the wheel"
    # As in the images: no bytecode written, nothing from this checkout on the path.
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(venv),
    }
    result = run(executable, "--help", env=env, cwd=venv)
    # argparse writes "usage:", click "Usage:".
    assert result.stdout.lower().startswith("usage:"), result.stdout
    assert script in result.stdout.splitlines()[0]
    site = next((venv / "lib").glob("python*/site-packages"))
    for package in PACKAGES:
        assert not list((site / package).rglob("__pycache__")), "bytecode was written"
    code = "import energy_pipeline; print(energy_pipeline.__file__)"
    where = run(venv / "bin" / "python", "-c", code, env=env, cwd=venv).stdout.strip()
    assert Path(where).is_relative_to(site), where
    assert not Path(where).is_relative_to(ROOT), where
