"""Generic-response augmentation (GRAG section 3.1), built on :mod:`personakit.llm`.

* :class:`GenericResponseAugmenter`: fills ``ResponseExample.generic_response`` with the
  reply of a generic LLM that never sees the persona; batched, cached and resumable.
* :class:`AugmentTemplate` / :func:`load_template`: the prompt templates, editable YAML
  data, one per dataset (``spc``, ``convai2``, ``empathetic``, ``pfg``, ``builtin``) in the
  paper's single-message layout, and each in the chat layout for small models
  (``spc-chat``, ...); :func:`recommended_template` picks one for a model size, and :func:`default_template`
  the one used when none is given (with :data:`DEFAULT_GENERIC_MODEL` and
  :data:`DEFAULT_MAX_NEW_TOKENS`: the defaults of ``personakit augment`` and of the GRAG recipe).
* :func:`clean_generic_response`: the post-processing of raw replies;
  :func:`speaker_label_leak`: whether a reply shows the prompt's speaker labels.
* :func:`save_examples` / :func:`load_examples`: augmented examples as JSON lines.

Importing this package does not import torch or transformers.
"""

from personakit.augment.augmenter import AugmentStats, GenericResponseAugmenter, GenericResponseAugmenterConfig
from personakit.augment.io import load_examples, save_examples
from personakit.augment.postprocess import SPEAKER_LABELS, clean_generic_response, speaker_label_leak
from personakit.augment.templates import (
    DEFAULT_GENERIC_MODEL,
    DEFAULT_MAX_NEW_TOKENS,
    NAME_FIELDS,
    SMALL_MODEL_PARAMETERS,
    SYSTEM_FIELDS,
    TEMPLATE_ALIASES,
    TEMPLATE_NAMES,
    USER_FIELDS,
    AugmentTemplate,
    default_template,
    load_template,
    recommended_template,
    template_path,
)

__all__ = [
    "DEFAULT_GENERIC_MODEL",
    "DEFAULT_MAX_NEW_TOKENS",
    "AugmentStats",
    "AugmentTemplate",
    "GenericResponseAugmenter",
    "GenericResponseAugmenterConfig",
    "NAME_FIELDS",
    "SMALL_MODEL_PARAMETERS",
    "SPEAKER_LABELS",
    "SYSTEM_FIELDS",
    "TEMPLATE_ALIASES",
    "TEMPLATE_NAMES",
    "USER_FIELDS",
    "clean_generic_response",
    "default_template",
    "load_examples",
    "load_template",
    "recommended_template",
    "save_examples",
    "speaker_label_leak",
    "template_path",
]
