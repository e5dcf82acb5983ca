r"""The questioner-aware recipe (``personakit run questioner``): a dual-tower responder against LoRA and persona-in-prompt.

* :mod:`~personakit.recipes.questioner.config`: :class:`QuestionerRecipeConfig` and its parts.
* :mod:`~personakit.recipes.questioner.run`: :func:`run_questioner_recipe` (the method, step
  by step), :class:`QuestionerRecipeResults`, :func:`questioner_diversity`.

Example:
    >>> from personakit.recipes.base import load_recipe_config
    >>> config = load_recipe_config("questioner", "tiny")
    >>> config.data.source, [s.label for s in config.systems]
    ('builtin', ['LoRA', 'Dual-tower', 'Persona-in-prompt'])
"""

from __future__ import annotations

from personakit.recipes.questioner.config import (
    QUESTIONER_SOURCES,
    QUESTIONER_SYSTEM_KINDS,
    QuestionerDataConfig,
    QuestionerEvalConfig,
    QuestionerInputConfig,
    QuestionerRecipeConfig,
    QuestionerSystemSpec,
    QuestionerTestSetConfig,
)
from personakit.recipes.questioner.run import (
    PERSONA_PROMPT_SYSTEM,
    QuestionerRecipeResults,
    load_questioner_splits,
    questioner_diversity,
    run_questioner_recipe,
)

__all__ = [
    "QUESTIONER_SYSTEM_KINDS",
    "QUESTIONER_SOURCES",
    "QuestionerDataConfig",
    "QuestionerTestSetConfig",
    "QuestionerInputConfig",
    "QuestionerSystemSpec",
    "QuestionerEvalConfig",
    "QuestionerRecipeConfig",
    "QuestionerRecipeResults",
    "load_questioner_splits",
    "run_questioner_recipe",
    "questioner_diversity",
    "PERSONA_PROMPT_SYSTEM",
]
