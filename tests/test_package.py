"""Packaging contract: a light top-level import, resolvable public names, one version."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import personakit

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch_geometric", "sentence_transformers", "peft")


def _imported_heavy_modules(statement: str) -> list[str]:
    """Run ``statement`` in a fresh interpreter; return the heavy modules it imported."""
    code = (
        "import json, sys\n"
        f"{statement}\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{statement!r} failed:\n{out.stderr}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_personakit_is_light():
    assert _imported_heavy_modules("import personakit") == []


def _subpackages() -> list[str]:
    return sorted(f"personakit.{m.name}" for m in pkgutil.iter_modules(personakit.__path__))


@pytest.mark.parametrize("module", _subpackages())
def test_importing_a_subpackage_is_light(module):
    """Every sub-package and module imports without torch_geometric, sentence_transformers or peft."""
    assert _imported_heavy_modules(f"import {module}") == []


def test_every_public_name_resolves():
    missing = []
    for name in personakit.__all__:
        try:
            getattr(personakit, name)
        except Exception as err:  # report every failure at once
            missing.append(f"{name}: {type(err).__name__}: {err}")
    assert not missing, "names in personakit.__all__ that do not resolve:\n" + "\n".join(missing)


def test_public_names_are_listed_in_dir():
    assert set(personakit.__all__) <= set(dir(personakit))


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        personakit.NoSuchThing  # noqa: B018


def test_version_matches_pyproject_and_metadata():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    version = pyproject["project"]["version"]
    assert personakit.__version__ == version
    assert importlib.metadata.version("personakit") == version


def test_console_script_points_at_cli_main():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    target = pyproject["project"]["scripts"]["personakit"]
    module, _, func = target.partition(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_cli_help_runs():
    code = "import sys; from personakit.cli import main; sys.argv = ['personakit', '--help']; sys.exit(main())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower()
    assert "demo" in out.stdout


def test_py_typed_marker_is_shipped():
    assert (Path(personakit.__file__).parent / "py.typed").is_file()


@pytest.mark.parametrize("package", ["transformers", "torch", "peft"])
def test_installed_versions_are_inside_the_declared_bounds(package):
    """The versions the tests run against satisfy pyproject's bounds (a bound that excludes them is stale)."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    declared = [*project["dependencies"], *(d for ds in project["optional-dependencies"].values() for d in ds)]
    reqs = [Requirement(d) for d in declared if Requirement(d).name == package]
    assert reqs, f"{package} is not declared in pyproject.toml"
    try:
        installed = Version(importlib.metadata.version(package))
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{package} is not installed")
    for req in reqs:
        assert req.specifier.contains(installed, prereleases=True), f"{package} {installed} is outside {req}"
