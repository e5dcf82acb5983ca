"""BaseConfig (validation, YAML/JSON round trip, build), atomic writes and Registry."""

from __future__ import annotations

import functools
import importlib
import math
import os
import pkgutil
import types
import typing
from typing import Optional

import pytest
from pydantic import Field, ValidationError, model_validator

import personakit

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


# ------------------------------------------------------------------ hardening (issue 23)
@functools.lru_cache(maxsize=1)
def _all_config_classes() -> tuple[type[BaseConfig], ...]:
    """Every BaseConfig subclass of the package (modules whose optional dependencies are absent are skipped)."""
    for info in pkgutil.walk_packages(personakit.__path__, prefix="personakit."):
        try:
            importlib.import_module(info.name)
        except Exception:  # an optional dependency that is not installed
            continue
    found, todo = [], [BaseConfig]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("personakit."):
                found.append(sub)
    return tuple(sorted(set(found), key=lambda c: (c.__module__, c.__qualname__)))


def _scalar(annotation) -> type | None:
    """``int``/``float``/``bool`` for a field of that type (or Optional of it), else None."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if typing.get_origin(annotation) in (
        typing.Union, types.UnionType) else [annotation]
    return args[0] if len(args) == 1 and args[0] in (int, float, bool) else None


def _fields_of(kind: type) -> list[tuple[type[BaseConfig], str]]:
    return [(cls, name) for cls in _all_config_classes() for name, f in cls.model_fields.items() if _scalar(f.annotation) is kind]


def _error_types(cls: type[BaseConfig], name: str, value) -> set[str]:
    try:
        cls.model_validate({name: value})
    except ValidationError as err:
        return {e["type"] for e in err.errors() if e["loc"][:1] == (name,)}
    return set()


def test_every_float_field_rejects_inf_and_nan():
    fields = _fields_of(float)
    assert len(fields) >= 34  # learning rates, weight decays, alpha/beta, temperatures...
    for value in (math.inf, -math.inf, math.nan):
        bad = [f"{c.__name__}.{n}" for c, n in fields if "finite_number" not in _error_types(c, n, value)]
        assert not bad, f"{value} accepted by {bad}"


def test_yaml_inf_and_nan_rejected_with_the_field_named():
    with pytest.raises(ConfigError, match="field 'factor'.*finite"):
        ScaleConfig.from_yaml("factor: .inf\n")
    with pytest.raises(ConfigError, match="field 'factor'.*finite"):
        ScaleConfig.from_json('{"factor": NaN}')


def test_every_int_field_rejects_a_boolean():
    fields = _fields_of(int)
    assert fields
    bad = [f"{c.__name__}.{n}" for c, n in fields if "bool_not_number" not in _error_types(c, n, True)]
    assert not bad, f"true accepted by {bad}"


def test_every_bool_field_rejects_numbers_and_strings():
    fields = _fields_of(bool)
    assert fields
    for value in (1, 0, "yes", "true"):
        bad = [f"{c.__name__}.{n}" for c, n in fields if "not_a_bool" not in _error_types(c, n, value)]
        assert not bad, f"{value!r} accepted by {bad}"


class Strict(BaseConfig):
    epochs: int = 1
    lr: float = 1e-3
    flag: bool = False
    steps: Optional[int] = None
    sizes: list[int] = Field(default_factory=list)
    pair: tuple[float, float] = (0.0, 1.0)
    weights: dict[str, float] = Field(default_factory=dict)


@pytest.mark.parametrize(
    "text, where",
    [
        ("epochs: true", "'epochs'.*expected a number, got the boolean true"),
        ("lr: false", "'lr'.*boolean false"),
        ("steps: true", "'steps'.*boolean true"),
        ("sizes: [1, true]", "'sizes'.*item 1: expected a number"),
        ("pair: [0.5, true]", "'pair'.*item 1"),
        ("weights: {a: true}", "'weights'.*key 'a'"),
        ("flag: 1", "'flag'.*expected true or false, got 1"),
        ("flag: 'yes'", "'flag'.*expected true or false"),
    ],
)
def test_strict_bools_in_yaml(text, where):
    with pytest.raises(ConfigError, match=where):
        Strict.from_yaml(text)


def test_strict_bools_keep_valid_values():
    cfg = Strict.from_yaml("epochs: 3\nlr: 1\nflag: true\nsteps: null\nsizes: [1, 2]\npair: [0, 1]\nweights: {a: 2}\n")
    assert (cfg.epochs, cfg.lr, cfg.flag, cfg.steps, cfg.sizes, cfg.pair, cfg.weights) == (
        3, 1.0, True, None, [1, 2], (0.0, 1.0), {"a": 2.0})
    with pytest.raises(ValidationError):
        cfg.epochs = True  # validate_assignment


def test_real_epochs_true_rejected():
    from personakit.training.trainer import TrainingConfig

    with pytest.raises(ConfigError, match="'epochs'.*boolean true"):
        TrainingConfig.from_yaml("epochs: true\n")


@pytest.mark.parametrize("value", [math.nan, -1.0, 1.5])
def test_split_fractions_and_facet_threshold_bounds(value):
    from personakit.data.pfg_lamp import PFGLaMPConfig
    from personakit.data.pfg_questioner import PFGQuestionerConfig
    from personakit.recipes.copersona import CoPersonaFacetsConfig
    from personakit.recipes.ropg import ROPGDataConfig

    for cls in (ROPGDataConfig, PFGLaMPConfig, PFGQuestionerConfig):
        with pytest.raises(ValidationError):
            cls(split_fractions=(value, 0.1, 0.1))
        assert cls(split_fractions=(0.5, 0.25, 0.25)).split_fractions == (0.5, 0.25, 0.25)
    with pytest.raises(ValidationError):
        CoPersonaFacetsConfig(threshold=value)
    with pytest.raises(ValidationError):
        CoPersonaFacetsConfig(combined_threshold=value)
    assert CoPersonaFacetsConfig(threshold=0.5).threshold == 0.5


def test_duplicate_yaml_key_is_rejected_with_its_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("factor: 3\nname: a\nfactor: 4\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'factor' \(first on line 1\)") as info:
        ScaleConfig.from_yaml(path)
    assert str(path) in str(info.value) and "line 3" in str(info.value)
    with pytest.raises(ConfigError, match="duplicate key 'low'"):
        Outer.from_yaml("window:\n  low: 1\n  low: 2\n")


def test_duplicate_json_key_is_rejected():
    with pytest.raises(ConfigError, match="duplicate key 'factor'"):
        ScaleConfig.from_json('{"factor": 3, "factor": 4}')


def test_yaml_anchors_and_merge_keys_still_load():
    assert ScaleConfig.from_yaml("tags: &t [a, b]\nname: x\n").tags == ["a", "b"]
    cfg = Outer.from_yaml("window: {<<: {low: 1, high: 5}, high: 6}\n")  # an explicit key overrides a merged one
    assert (cfg.window.low, cfg.window.high) == (1, 6)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_non_utf8_config_names_file_and_line(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    body = b"name: caf\xe9\n" if suffix == ".yaml" else b'{\n "name": "caf\xe9"\n}\n'
    path.write_bytes((b"factor: 3\n" if suffix == ".yaml" else b"") + body)
    with pytest.raises(ConfigError, match=r"line 2: not UTF-8 text: byte 0xe9") as info:
        ScaleConfig.from_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("suffix, text", [(".yaml", "factor: 3\n"), (".json", '{"factor": 3}\n')])
def test_bom_config_loads(tmp_path, suffix, text):
    path = tmp_path / f"c{suffix}"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert ScaleConfig.from_file(path).factor == 3.0
