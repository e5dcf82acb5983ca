"""BaseConfig (validation, YAML/JSON round trip, build), atomic writes and Registry."""

from __future__ import annotations

import os
from typing import Optional

import pytest
from pydantic import Field, model_validator

from personakit.config import (
    BaseConfig,
    ConfigError,
    Registry,
    atomic_write_bytes,
    atomic_write_text,
    constructor_fields,
    normalize_name,
)
from personakit.testing import assert_config_matches


class Scale:
    def __init__(self, factor: float = 2.0, name: str = "scale", tags: Optional[list[str]] = None):
        self.factor = factor
        self.name = name
        self.tags = tags or []


class ScaleConfig(BaseConfig):
    _target_ = Scale
    factor: float = Field(2.0, gt=0, description="Multiplier.")
    name: str = "scale"
    tags: list[str] = Field(default_factory=list)


class Window(BaseConfig):
    low: int = Field(0, ge=0)
    high: int = 10

    @model_validator(mode="after")
    def _ordered(self):
        if self.high <= self.low:
            raise ValueError("high must exceed low")
        return self


class Outer(BaseConfig):
    scale: ScaleConfig = Field(default_factory=ScaleConfig)
    window: Window = Field(default_factory=Window)


# ----------------------------------------------------------------------- round trip
def test_yaml_round_trip_string_and_file(tmp_path):
    cfg = Outer(scale=ScaleConfig(factor=0.5, name="half", tags=["a", "ü"]), window=Window(low=1, high=3))
    assert Outer.from_yaml(cfg.to_yaml()) == cfg
    path = tmp_path / "cfg.yaml"
    cfg.to_yaml(path)
    assert Outer.from_yaml(path) == cfg
    assert Outer.from_file(path) == cfg
    assert Outer.from_yaml(str(path)) == cfg


def test_json_round_trip_string_and_file(tmp_path):
    cfg = Outer(scale=ScaleConfig(factor=4.0), window=Window(low=2, high=5))
    assert Outer.from_json(cfg.to_json()) == cfg
    path = tmp_path / "sub" / "cfg.json"
    cfg.to_json(path)
    assert Outer.from_file(path) == cfg
    assert Outer.from_dict(cfg.to_dict()) == cfg


def test_empty_yaml_gives_defaults():
    assert Outer.from_yaml("{}\n") == Outer()
    assert Outer.from_yaml("# nothing\n") == Outer()


def test_unknown_field_is_rejected_with_source_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("scale:\n  factr: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Outer.from_file(path)
    msg = str(info.value)
    assert str(path) in msg and "scale.factr" in msg


def test_bounds_and_cross_field_checks():
    with pytest.raises(ConfigError, match="'factor'"):
        ScaleConfig.from_dict({"factor": 0})
    with pytest.raises(ConfigError, match="high must exceed low"):
        Window.from_dict({"low": 5, "high": 5})
    with pytest.raises(Exception):
        ScaleConfig().factor = -1  # validate_assignment


def test_invalid_json_names_line_and_column():
    with pytest.raises(ConfigError, match=r"line 2, column"):
        ScaleConfig.from_json('{"factor": 1,\n  oops}')


def test_non_mapping_and_bad_suffix(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping"):
        ScaleConfig.from_yaml("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="unknown config format"):
        ScaleConfig.from_file(tmp_path / "cfg.toml")
    with pytest.raises(ConfigError, match="not found"):
        ScaleConfig.from_file(tmp_path / "missing.yaml")


# ---------------------------------------------------------------------------- build
def test_build_passes_fields_and_overrides():
    obj = ScaleConfig(factor=3, tags=["x"]).build(name="override")
    assert isinstance(obj, Scale)
    assert (obj.factor, obj.name, obj.tags) == (3.0, "override", ["x"])


def test_build_without_target_raises():
    with pytest.raises(NotImplementedError, match="Window"):
        Window().build()


def test_assert_config_matches_detects_drift():
    assert_config_matches(ScaleConfig)
    assert constructor_fields(Scale) == {"factor", "name", "tags"}

    class Drifted(BaseConfig):
        _target_ = Scale
        factor: float = 1.0
        extra_field: int = 0

    with pytest.raises(AssertionError, match="extra_field"):
        assert_config_matches(Drifted)
    with pytest.raises(AssertionError, match="not constructor arguments"):
        assert_config_matches(ScaleConfig, exclude=["model"])


# -------------------------------------------------------------------- atomic writes
def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "deep" / "file.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second ✓")
    assert path.read_text(encoding="utf-8") == "second ✓"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(path.parent) == ["file.txt"]


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "file.txt"
    atomic_write_text(path, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["file.txt"]


# ------------------------------------------------------------------------- registry
def test_normalize_name():
    assert normalize_name("BM25-Retriever") == normalize_name("bm25_retriever") == "bm25retriever"
    assert normalize_name("Dense Retriever.v2") == "denseretrieverv2"


def test_registry_register_get_and_normalised_lookup():
    reg: Registry = Registry("scaler")
    assert reg.register("my-scale", Scale, ScaleConfig) is Scale
    assert reg.get("MY_SCALE") is Scale
    assert reg.get_config("my scale") is ScaleConfig
    assert "My.Scale" in reg and "other" not in reg and 3 not in reg
    assert len(reg) == 1 and list(reg) == ["my-scale"] and reg.names() == ["my-scale"]
    assert "my-scale" in repr(reg)


def test_registry_rejects_duplicates_after_normalisation():
    reg: Registry = Registry("scaler")
    reg.register("bm25", Scale)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("BM-25", Window)
    with pytest.raises(ValueError, match="empty name"):
        reg.register(" - ", Scale)
    assert reg.get("bm25") is Scale


def test_registry_unknown_name_lists_known():
    reg: Registry = Registry("retriever")
    reg.register("bm25", Scale)
    with pytest.raises(KeyError, match="unknown retriever 'dense'.*bm25"):
        reg.get("dense")


def test_registry_resolve_validates_through_config():
    reg: Registry = Registry("scaler")
    reg.register("scale", Scale, ScaleConfig)
    assert reg.resolve("scale", factor=5).factor == 5.0
    with pytest.raises(ConfigError, match="scaler 'scale'"):
        reg.resolve("scale", factor=-1)
    with pytest.raises(ConfigError, match="unknown_arg"):
        reg.resolve("scale", unknown_arg=1)
    built = reg.resolve(ScaleConfig(factor=7))
    assert isinstance(built, Scale) and built.factor == 7.0
    instance = Scale()
    assert reg.resolve(instance) is instance


def test_registry_without_config_and_decorator():
    reg: Registry = Registry("thing")

    @reg.decorator("plain")
    class Plain:
        def __init__(self, x: int = 1):
            self.x = x

    assert reg.resolve("plain", x=4).x == 4
    assert reg.get_config("plain") is None
