"""Typed configuration and registries shared by every personakit component.

Every leaf component takes plain keyword arguments; a :class:`BaseConfig` subclass
mirrors those arguments with validation (``extra="forbid"``, bounds, cross-field
checks) and builds the component with :meth:`BaseConfig.build`.  Configs round-trip
through YAML and JSON, so a recipe configuration is a file a user can write by hand.

Example:
    >>> from pydantic import Field
    >>> from personakit.config import BaseConfig
    >>> class Scale:
    ...     def __init__(self, factor: float = 2.0):
    ...         self.factor = factor
    >>> class ScaleConfig(BaseConfig):
    ...     _target_ = Scale
    ...     factor: float = Field(2.0, gt=0, description="Multiplier.")
    >>> ScaleConfig(factor=3).build().factor
    3.0
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import os
import re
import tempfile
import types
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, Iterator, Optional, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "BaseConfig",
    "ConfigError",
    "Fraction",
    "Registry",
    "atomic_write_text",
    "atomic_write_bytes",
    "normalize_name",
]

C = TypeVar("C", bound="BaseConfig")
T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or value could not be loaded or validated."""


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed and fsynced,
    and the temporary file is renamed over ``path``.  A reader never sees a
    half-written file, and an interrupted write leaves the old file (or none).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode(encoding))


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
"""A float in ``[0, 1]`` (a split fraction, a probability, a similarity threshold)."""


def _strip_annotated(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _kinds(annotation: Any) -> set[str]:
    """What a field accepts at its top level: ``"bool"``, ``"number"``, ``"none"`` or ``"other"``."""
    annotation = _strip_annotated(annotation)
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        out: set[str] = set()
        for arg in get_args(annotation):
            out |= _kinds(arg)
        return out
    if annotation is bool:
        return {"bool"}
    if annotation in (int, float):
        return {"number"}
    if annotation is type(None):
        return {"none"}
    return {"other"}


def _strict_scalar_problem(annotation: Any, value: Any, where: str) -> Optional[PydanticCustomError]:
    """A bool given to a number field, or a non-bool given to a bool field (recursing into containers)."""
    kinds = _kinds(annotation)
    if isinstance(value, bool):
        if "number" in kinds and not kinds & {"bool", "other"}:
            # a preformatted message, no context: pydantic then leaves the text as it is
            return PydanticCustomError("bool_not_number", f"{where}expected a number, got the boolean {str(value).lower()}")
    elif isinstance(value, (int, float, str)) and kinds - {"none"} == {"bool"}:
        return PydanticCustomError("not_a_bool", f"{where}expected true or false, got {value!r}")
    annotation = _strip_annotated(annotation)
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin in (Union, types.UnionType):
        # Optional[list[int]] and the like: look inside the one non-None member
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return _strict_scalar_problem(members[0], value, where)
        return None
    if origin in (list, set, frozenset, collections.abc.Sequence) and args and isinstance(value, (list, tuple, set)):
        for i, item in enumerate(value):
            problem = _strict_scalar_problem(args[0], item, f"{where}item {i}: ")
            if problem is not None:
                return problem
    elif origin is tuple and args and isinstance(value, (list, tuple)):
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        for i, (item_type, item) in enumerate(zip(item_types, value)):
            problem = _strict_scalar_problem(item_type, item, f"{where}item {i}: ")
            if problem is not None:
                return problem
    elif origin in (dict, collections.abc.Mapping) and len(args) == 2 and isinstance(value, dict):
        for key, item in value.items():
            problem = _strict_scalar_problem(args[1], item, f"{where}key {key!r}: ")
            if problem is not None:
                return problem
    return None


class BaseConfig(BaseModel):
    """Base class of every personakit config.

    Subclasses declare their fields with bounds and a description, and set the
    class attribute ``_target_`` to the component they build.  Unknown fields are
    rejected (``extra="forbid"``) so a typo in a YAML file is an error, not a
    silently ignored setting.

    Values are checked more strictly than pydantic's defaults, for every subclass:

    * a float field never accepts ``inf``, ``-inf`` or ``nan`` (``.inf`` / ``.nan``
      in YAML): ``allow_inf_nan=False``;
    * a number field (``int`` or ``float``) does not accept a boolean
      (``epochs: true`` is an error, not ``1``), and a ``bool`` field accepts only
      ``true`` / ``false`` (not ``1`` or ``"yes"``); lists, tuples and dicts of them
      are checked item by item.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    _target_: ClassVar[Any] = None
    _renamed_: ClassVar[dict[str, str]] = {}
    """Old field name -> new name: an old key is still read (with a ``FutureWarning``), giving both is an error."""

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, data: Any) -> Any:
        renamed = cls._renamed_
        if not renamed or not isinstance(data, dict) or not any(old in data for old in renamed):
            return data
        import warnings

        data = dict(data)
        for old, new in renamed.items():
            if old not in data:
                continue
            if new in data:
                raise ValueError(f"{cls.__name__}: give {new!r} only ({old!r} is its old name)")
            warnings.warn(f"{cls.__name__}: field {old!r} is now {new!r}; the old name will be removed",
                          FutureWarning, stacklevel=2)
            data[new] = data.pop(old)
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _strict_bools(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name) if info.field_name else None
        if field is not None:
            problem = _strict_scalar_problem(field.annotation, value, "")
            if problem is not None:
                raise problem
        return value

    # ------------------------------------------------------------------ build
    def build(self, **overrides: Any) -> Any:
        """Construct the component this config describes.

        Nested configs are built recursively only where the target's constructor
        expects a component rather than a config; by default the fields are passed
        as keyword arguments, and ``overrides`` replace or add arguments (for
        objects that do not belong in a file, such as a model instance).
        """
        target = type(self)._target_
        if target is None:
            raise NotImplementedError(f"{type(self).__name__} does not declare `_target_`, so it cannot build.")
        kwargs = {name: getattr(self, name) for name in type(self).model_fields}
        kwargs.update(overrides)
        return target(**kwargs)

    # ------------------------------------------------------------- round trip
    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict of the config (JSON-compatible values)."""
        return self.model_dump(mode="json")

    def to_json(self, path: str | os.PathLike[str] | None = None, indent: int = 2) -> str:
        """Serialise to JSON; write atomically to ``path`` when given."""
        text = self.model_dump_json(indent=indent)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> str:
        """Serialise to YAML; write atomically to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, source: str = "<dict>") -> C:
        """Validate ``data``; errors name the source and each offending field."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(_format_validation_error(err, source, cls.__name__)) from err

    @classmethod
    def from_json(cls: type[C], text_or_path: str | os.PathLike[str]) -> C:
        """Load from a JSON string or a path to a ``.json`` file."""
        text, source = _read_text_or_path(text_or_path, "<json>")
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_pairs)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{source}: line {err.lineno}, column {err.colno}: invalid JSON ({err.msg})") from err
        except _DuplicateKey as err:
            raise ConfigError(f"{source}: duplicate key {err.key!r} (a key may appear once in each mapping)") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_yaml(cls: type[C], text_or_path: str | os.PathLike[str]) -> C:
        """Load from a YAML string or a path to a ``.yaml``/``.yml`` file."""
        text, source = _read_text_or_path(text_or_path, "<yaml>")
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.YAMLError as err:
            raise ConfigError(f"{source}: invalid YAML: {err}") from err
        return cls.from_dict(data if data is not None else {}, source=source)

    @classmethod
    def from_file(cls: type[C], path: str | os.PathLike[str]) -> C:
        """Load a ``.json``, ``.yaml`` or ``.yml`` file."""
        suffix = Path(path).suffix.lower()
        if suffix == ".json":
            return cls.from_json(Path(path))
        if suffix in {".yaml", ".yml"}:
            return cls.from_yaml(Path(path))
        raise ConfigError(f"{path}: unknown config format {suffix!r} (use .json, .yaml or .yml)")


class _DuplicateKey(ValueError):
    def __init__(self, key: Any) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key repeated in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: let the base class report it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first on line {first.line + 1}); a key may appear once",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _read_text_or_path(text_or_path: str | os.PathLike[str], default_source: str) -> tuple[str, str]:
    if isinstance(text_or_path, os.PathLike) or (
        isinstance(text_or_path, str) and "\n" not in text_or_path and len(text_or_path) < 4096
        and Path(text_or_path).suffix.lower() in {".json", ".yaml", ".yml"}
    ):
        path = Path(text_or_path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
            raise ConfigError(
                f"{path}: line {line}: not UTF-8 text: byte 0x{data[err.start]:02x} (byte {column} of the line) "
                "cannot be decoded; save the config file as UTF-8"
            ) from None
        return text.removeprefix("\ufeff"), str(path)
    return str(text_or_path).removeprefix("\ufeff"), default_source


def _format_validation_error(err: ValidationError, source: str, model: str) -> str:
    lines = [f"{source}: invalid {model} ({err.error_count()} error{'s' if err.error_count() != 1 else ''})"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"  field {loc!r}: {e['msg']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- registry
def normalize_name(name: str) -> str:
    """Normalise a registry name: case, ``-``, ``_``, ``.`` and spaces are ignored.

    >>> normalize_name("BM25-Retriever") == normalize_name("bm25_retriever")
    True
    """
    return re.sub(r"[\s_\-.]+", "", name).lower()


class Registry(Generic[T]):
    """An explicit name → component registry.

    Names are normalised with :func:`normalize_name`; registering the same
    normalised name twice is an error.  Each entry may carry the config class that
    mirrors the component, so a config string such as ``"bm25"`` resolves to both.

    Example:
        >>> reg = Registry("retriever")
        >>> class A: ...
        >>> reg.register("my-a", A)
        <class 'personakit.config.A'>
        >>> reg.get("MY_A") is A
        True
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, tuple[str, type[T], type[BaseConfig] | None]] = {}

    def register(self, name: str, component: type[T], config: type[BaseConfig] | None = None) -> type[T]:
        key = normalize_name(name)
        if not key:
            raise ValueError(f"cannot register a {self.kind} under an empty name")
        if key in self._entries:
            prev = self._entries[key]
            raise ValueError(
                f"a {self.kind} named {name!r} is already registered ({prev[1].__module__}.{prev[1].__qualname__} "
                f"as {prev[0]!r}); choose another name"
            )
        self._entries[key] = (name, component, config)
        return component

    def decorator(self, name: str, config: type[BaseConfig] | None = None):
        """Class decorator form of :meth:`register`."""

        def wrap(cls: type[T]) -> type[T]:
            return self.register(name, cls, config)

        return wrap

    def _entry(self, name: str) -> tuple[str, type[T], type[BaseConfig] | None]:
        key = normalize_name(name)
        if key not in self._entries:
            known = ", ".join(sorted(v[0] for v in self._entries.values())) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {known}")
        return self._entries[key]

    def get(self, name: str) -> type[T]:
        """The component class registered under ``name``."""
        return self._entry(name)[1]

    def get_config(self, name: str) -> type[BaseConfig] | None:
        """The config class registered with ``name`` (``None`` if there is none)."""
        return self._entry(name)[2]

    def resolve(self, spec: str | BaseConfig | T, **kwargs: Any) -> T:
        """Turn a name, a config or an instance into an instance.

        A string is looked up and constructed with ``kwargs`` (validated through the
        registered config when there is one); a config is built; anything else is
        returned unchanged.
        """
        if isinstance(spec, str):
            _, cls, cfg = self._entry(spec)
            if cfg is not None:
                return cfg.from_dict(kwargs, source=f"{self.kind} {spec!r}").build()
            return cls(**kwargs)
        if isinstance(spec, BaseConfig):
            return spec.build(**kwargs)
        return spec

    def names(self) -> list[str]:
        return sorted(v[0] for v in self._entries.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def constructor_fields(component: Any) -> set[str]:
    """Names of the keyword arguments of ``component``'s constructor."""
    sig = inspect.signature(component)
    return {
        n for n, p in sig.parameters.items()
        if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
