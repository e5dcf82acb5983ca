"""The public API: a curated top level, complete sub-packages, one lazy-import helper."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

import personakit
from personakit._lazy import attach

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC = REPO_ROOT.parent / "shared" / "SPEC.md"  # beside the checkout in the workspace, absent from the wheel

SUBPACKAGES = (
    "config", "types", "backbones", "data", "eval", "llm", "augment", "modules", "losses", "retrieval", "graph",
    "facets", "functional", "models", "training", "recipes",
)

# The components SPEC.md names (every name in `code` there is importable from personakit itself).
SPEC_NAMES = (
    "Persona", "Turn", "Dialogue", "ProfileItem", "UserProfile", "ResponseExample",
    "load_embedded", "load_sentence_encoder",
    "GenericResponseAugmenter", "StyleExtractor", "StyleEnhancedDecoder", "CJEPALoss", "PreSFT", "PreGRAG",
    "PostGRAG",
    "LowRankSpecificEncoder", "QuestionerContrastiveLoss", "QuestionClusterer", "MultiViewProjector",
    "DualTowerResponder",
    "MonotoneGate", "FacetGraph", "SoftPromptProjector", "CoPersonaModel",
    "BM25Retriever", "RecencyRetriever", "DenseRetriever", "NoRetrieval", "RRFRetriever", "ROPGRLTrainer",
    "ROPGKDTrainer", "RetrieverSelector",
)

# Helpers that stay in their modules (removed from the top level in 0.2; see the CHANGELOG).
INTERNALS = (
    # backbones: the cache and the embedded-model registry
    "file_lock", "is_prepared", "prepare_atomically", "prepared_dir", "cache_dir", "decode_batch",
    "needs_space_cleanup", "resolve_model_path", "EmbeddedModel", "embedded_names", "embedded_path",
    "embedded_status", "find_embedded", "get_embedded",
    # training: distributed plumbing, schedules, checkpoint internals
    "all_reduce_sum", "broadcast_object", "find_free_port", "rank_slice", "cosine_schedule",
    "linear_decay_schedule", "linear_warmup_decay_schedule", "latest_checkpoint", "list_checkpoints",
    "read_checkpoint_state", "get_rng_state", "set_rng_state", "score_candidate_lists", "as_rspg_items",
    "feedback_settings",
    # eval: metric internals, prompt builders, controls
    "greedy_match", "count_chunks", "meteor_alignment", "meteor_from_alignment", "check_pairs",
    "normalize_references", "References", "build_metrics", "reference_log_likelihoods", "build_judge_prompt",
    "reconcile_verdicts", "wilson_interval", "lamp_eval_fn", "lamp_eval_name", "parse_rating", "shuffle_personas",
    "blank_generic", "reference_scaffold",
    # data: parsing helpers
    "detect_format", "format_pfg_history", "lamp_retrieval_text", "load_emotion_label_map",
    "merge_consecutive_turns", "normalize_lamp_task", "parse_pfg_date", "participant_dialogues", "top_persuaders",
    # llm: prompt plumbing
    "apply_stop", "cache_key", "extract_json", "messages_to_text", "prompt_to_messages", "validate_prompt",
    # augment, modules, retrieval, graph, facets, models, recipes
    "clean_generic_response", "template_path", "add_style", "embedding_version", "as_profile_items",
    "as_text_encoder", "count_tokens", "default_tokenize", "get_lamp_template", "get_tokenizer", "lamp_query",
    "mean_pool", "retriever_names", "whitespace_tokenize", "reliability_weighted", "ChoiceSlot", "ClusterEvidence",
    "LiteralPiece", "StringSlot", "SummaryReply", "build_schema_prompt", "build_summary_prompt", "cluster_profiles",
    "facet_biased_fraction", "profile_hash", "profile_text", "quote_is_grounded", "schema_skeleton",
    "style_statistics", "summary_skeleton", "build_copersona_prompt", "demo_recipe_config", "load_grag_splits",
    "load_recipe_splits",
)

# The modules whose functions a user calls directly: readers, loaders, metrics, factories, entry points.
FUNCTION_MODULES = re.compile(
    r"personakit\.("
    r"backbones\.(loading|embedded)"
    r"|data\.\w+"
    r"|eval\.(rouge|bleu|char_f1|meteor|bertscore|classification|bpc|lamp|degenerate|significance|evaluate|io"
    r"|table|registry|judge)"
    r"|llm\.structured|augment\.(templates|io)"
    r"|modules\.(style_extractor|style_decoder\.factory|soft_prompt)"
    r"|retrieval\.(registry|lamp_prompts)|graph\.builder|facets\.embed|models\.grag\.factory"
    r"|training\.(checkpoint|ropg)|recipes\.\w+(\.run)?"
    r")"
)


def _top_level() -> list[str]:
    return [name for name in personakit.__all__ if name != "__version__"]


# -- sub-packages -----------------------------------------------------------------------------


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_every_subpackage_name_is_importable(subpackage):
    module = importlib.import_module(f"personakit.{subpackage}")
    names = list(module.__all__)
    assert len(names) == len(set(names)), f"personakit.{subpackage}.__all__ lists a name twice"
    missing = []
    for name in names:
        try:
            getattr(module, name)
        except Exception as err:  # report every failure at once
            missing.append(f"{name}: {type(err).__name__}: {err}")
    assert not missing, f"names in personakit.{subpackage}.__all__ that do not import:\n" + "\n".join(missing)
    assert set(names) <= set(dir(module))


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_subpackage_unknown_attribute_raises_attribute_error(subpackage):
    module = importlib.import_module(f"personakit.{subpackage}")
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        module.NoSuchThing  # noqa: B018


# -- the curated top level --------------------------------------------------------------------


def test_top_level_names_come_from_subpackage_all():
    """The top level re-exports a subset of each sub-package's ``__all__``, the same objects."""
    seen: set[str] = set()
    for subpackage, names in personakit._PUBLIC.items():
        module = importlib.import_module(f"personakit.{subpackage}")
        assert subpackage in SUBPACKAGES
        assert set(names) <= set(module.__all__), set(names) - set(module.__all__)
        for name in names:
            assert getattr(personakit, name) is getattr(module, name), name
        assert not seen & set(names)
        seen |= set(names)
    assert seen == set(_top_level())


def test_spec_components_are_at_the_top_level():
    missing = sorted(set(SPEC_NAMES) - set(personakit.__all__))
    assert not missing, f"SPEC components missing from personakit.__all__: {missing}"


@pytest.mark.skipif(not SPEC.is_file(), reason="SPEC.md is not beside this checkout")
def test_every_package_name_in_spec_is_at_the_top_level():
    """Every `Name` or `name(...)` in SPEC.md that a sub-package exports is importable from personakit."""
    in_spec = set(re.findall(r"`([A-Za-z_]\w*)[`(]", SPEC.read_text(encoding="utf-8")))
    exported = {name for sub in SUBPACKAGES for name in importlib.import_module(f"personakit.{sub}").__all__}
    missing = sorted((in_spec & exported) - set(personakit.__all__))
    assert not missing, f"SPEC names missing from personakit.__all__: {missing}"
    assert set(SPEC_NAMES) <= in_spec, sorted(set(SPEC_NAMES) - in_spec)


def test_top_level_holds_no_internal_helper():
    leaked = sorted(set(INTERNALS) & set(personakit.__all__))
    assert not leaked, f"internal helpers at the top level: {leaked}"
    for name in INTERNALS:  # they are still importable from their sub-package
        assert any(name in importlib.import_module(f"personakit.{sub}").__all__ for sub in SUBPACKAGES), name


def test_top_level_names_are_classes_types_or_user_functions():
    """No constants, no private names; functions only from the modules a user calls."""
    wrong = []
    for name in _top_level():
        value = getattr(personakit, name)
        if name.startswith("_"):
            wrong.append(f"{name}: a private name")
        elif inspect.isclass(value) or typing.get_origin(value) is not None:  # a class (BLEU too) or a type alias
            continue
        elif inspect.isfunction(value):
            if not FUNCTION_MODULES.fullmatch(value.__module__):
                wrong.append(f"{name}: a function of {value.__module__}, not a user-facing module")
        else:
            wrong.append(f"{name}: a {type(value).__name__}, not a class, type or function")
    assert not wrong, "\n".join(wrong)


def test_dir_lists_the_exports_before_they_are_imported():
    code = "import json, personakit; print(json.dumps([personakit.__all__, dir(personakit)]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    exported, listed = json.loads(out.stdout)
    assert set(exported) <= set(listed)


# -- the lazy-import helper -------------------------------------------------------------------


def _fake_package(monkeypatch, name: str) -> types.ModuleType:
    package = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, package)
    return package


def test_attach_imports_on_first_access_and_caches(monkeypatch):
    package = _fake_package(monkeypatch, "personakit_fake_pkg")
    getattr_, dir_, names = attach("personakit_fake_pkg", {"personakit.types": ("Persona", "Turn")})
    assert names == ["Persona", "Turn"]
    assert {"Persona", "Turn"} <= set(dir_())
    assert getattr_("Persona") is personakit.types.Persona
    assert vars(package)["Persona"] is personakit.types.Persona  # cached
    with pytest.raises(AttributeError, match="module 'personakit_fake_pkg' has no attribute 'Nope'"):
        getattr_("Nope")


def test_attach_resolves_module_names_relative_to_the_package(monkeypatch):
    _fake_package(monkeypatch, "personakit_fake_pkg")
    getattr_, _, _ = attach("personakit_fake_pkg", {"personakit.config": ("BaseConfig",)})  # a full path
    assert getattr_("BaseConfig") is personakit.config.BaseConfig
    getattr_, _, _ = attach("personakit_fake_pkg", {"types": ("Turn",)})  # personakit_fake_pkg.types
    with pytest.raises(ModuleNotFoundError, match="personakit_fake_pkg"):
        getattr_("Turn")


def test_attach_rejects_a_name_listed_twice():
    with pytest.raises(ValueError, match="'Persona' is listed twice"):
        attach("personakit", {"types": ("Persona",), "config": ("Persona",)})


def test_attach_says_what_to_install_for_a_missing_dependency(monkeypatch):
    _fake_package(monkeypatch, "personakit_fake_pkg")
    getattr_, _, _ = attach(
        "personakit_fake_pkg",
        {"personakit.types": ("Persona",)},
        requires={"personakit.types": "personakit_no_such_dependency"},
    )
    with pytest.raises(ImportError, match="personakit_fake_pkg.Persona needs the optional package"):
        getattr_("Persona")
