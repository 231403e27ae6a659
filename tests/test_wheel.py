"""The wheels the images are built from: they build, install into a fresh venv, and
each console script the images run answers ``--help``.

The sources are copied to a temporary folder first, so that the build leaves nothing
in the work tree. The builds run pip with build isolation, as the image's build stage
does (the fast path's with maturin and cargo, whose build is cached under
CARGO_TARGET_DIR); the fresh venv gets the two wheels, and their dependencies from the
package index (pip uses its cache), without bytecode, as in the images.
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
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what the Dockerfile's build stage copies."""
    source = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    return source


def build_wheel(source: Path, dist: Path, name: str) -> Path:
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dist, source)
    (built,) = dist.glob(f"{name}-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(sources, tmp_path_factory.mktemp("dist"), "energy_pipeline")


@pytest.fixture(scope="module")
def fastpath_wheel(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fast path's wheel (Rust, built by maturin)."""
    fastpath = sources / "services" / "fastpath"
    return build_wheel(fastpath, tmp_path_factory.mktemp("dist"), "energy_fastpath")


@pytest.fixture(scope="module")
def venv(
    wheel: Path, fastpath_wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A fresh venv (not this one, no system site-packages) with the wheels installed."""
    root = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--without-pip", root)
    python = root / "bin" / "python"
    install: list[str | Path] = [sys.executable, "-m", "pip", "--python", python, "install"]
    run(*install, "--no-compile", fastpath_wheel, wheel)
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


def test_the_fast_path_wheel_holds_the_compiled_module_and_its_types(
    fastpath_wheel: Path, venv: Path
) -> None:
    with zipfile.ZipFile(fastpath_wheel) as archive:
        names = set(archive.namelist())
    assert any(
        n.startswith("energy_fastpath/energy_fastpath.") and n.endswith(".so") for n in names
    )
    assert {"energy_fastpath/__init__.pyi", "energy_fastpath/py.typed"} <= names
    # The installed transformer uses it: a plain reading takes the fast path, and the
    # compiled producer runs on the librdkafka of the venv's confluent-kafka.
    code = (
        "from energy_fastpath import Producer\n"
        "from energy_pipeline import kafka\n"
        "from energy_pipeline.transformer.logic import Thresholds, fast_path\n"
        'print(fast_path(Thresholds()).accept(b\'{"sensorId":"s","area":"a",\''
        ' b\'"energyConsumption":101,"timestamp":"2026-01-05T11:00:00Z"}\'))\n'
        "Producer(kafka.librdkafka_path(), {'bootstrap.servers': '127.0.0.1:1'}).flush(0)\n"
        "print(kafka.librdkafka_path())\n"
    )
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    printed = run(venv / "bin" / "python", "-c", code, env=env, cwd=venv).stdout
    assert 'isHighConsumption":true}' in printed, printed
    assert f"{venv}/lib/" in printed and "librdkafka" in printed, printed


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
