"""Dataset readers: every dataset turned into the shared data model of :mod:`personakit.types`.

| dataset | reader | returns |
|---|---|---|
| Synthetic-Persona-Chat | :func:`read_spc_jsonl`, :func:`read_spc_csv` | ``list[Dialogue]`` |
| ConvAI2 / PersonaChat | :func:`read_convai2` | ``list[Dialogue]`` |
| EmpatheticDialogues | :func:`read_empathetic_dialogues` | ``list[Dialogue]`` |
| Persuasion-for-Good | :func:`read_persuasion_for_good` | ``list[Dialogue]`` |
| LaMP 1-7 | :func:`read_lamp` | ``list[ProfileExample]`` |
| review histories (Amazon) | :func:`read_review_histories` | ``list[UserProfile]`` |
| the built-in sample corpus | :func:`load_builtin_corpus` | ``list[Dialogue]`` |

:func:`dialogues_to_examples` turns dialogues into
:class:`~personakit.types.ResponseExample` s, and :func:`read_dataset` picks the
reader from the file. Every reader rejects malformed input with a
:class:`DataFormatError` naming the file, the line or record, and the field.
"""

from __future__ import annotations

from personakit._lazy import attach as _attach
from personakit.data.convai2 import CONVAI2_SPEAKERS, read_convai2
from personakit.data.empathetic import ED_SPEAKERS, load_emotion_label_map, read_empathetic_dialogues
from personakit.data.errors import DataFormatError
from personakit.data.examples import DEFAULT_AGENTS, dialogues_to_examples, merge_consecutive_turns
from personakit.data.lamp import LAMP_TASKS, LampTask, lamp_retrieval_text, normalize_lamp_task, read_lamp, read_lamp_outputs
from personakit.data.pfg import (PFG_SPEAKERS, parse_pfg_date, participant_dialogues, read_persuasion_for_good,
                                 read_pfg_info, unescape_pfg_text)
from personakit.data.registry import DATASET_READERS, detect_format, read_dataset
from personakit.data.reviews import REVIEW_KEYS, read_review_histories
from personakit.data.spc import SPC_SPEAKERS, read_spc_csv, read_spc_jsonl

from personakit.data.copersona_users import CoPersonaUsers, build_pfg_users, build_review_users
from personakit.data.pfg_lamp import PFG_LAMP_SPLITS, PFG_LAMP_TASK, PFGLaMPConfig, build_pfg_lamp_task, format_pfg_history
from personakit.data.mqdialog import MQDIALOG_FIELDS, read_mqdialog
from personakit.data.pfg_questioner import (
    PFG_QUESTIONER_SPLITS,
    PFGQuestionerConfig,
    build_pfg_questioner_task,
    top_persuaders,
)

# Defined in sub-modules imported on first use.
__getattr__, __dir__, _lazy_names = _attach(__name__, {"builtin": ("load_builtin_corpus", "builtin_pfg_dialogues")})

__all__ = [
    "CoPersonaUsers",
    "build_pfg_users",
    "build_review_users",
    "MQDIALOG_FIELDS",
    "read_mqdialog",
    "PFG_QUESTIONER_SPLITS",
    "PFGQuestionerConfig",
    "build_pfg_questioner_task",
    "top_persuaders",
    "PFG_LAMP_SPLITS",
    "PFG_LAMP_TASK",
    "PFGLaMPConfig",
    "build_pfg_lamp_task",
    "format_pfg_history",
    "CONVAI2_SPEAKERS",
    "DATASET_READERS",
    "DEFAULT_AGENTS",
    "DataFormatError",
    "ED_SPEAKERS",
    "LAMP_TASKS",
    "LampTask",
    "PFG_SPEAKERS",
    "REVIEW_KEYS",
    "SPC_SPEAKERS",
    "detect_format",
    "dialogues_to_examples",
    "lamp_retrieval_text",
    "load_emotion_label_map",
    "merge_consecutive_turns",
    "normalize_lamp_task",
    "parse_pfg_date",
    "participant_dialogues",
    "read_convai2",
    "read_dataset",
    "read_empathetic_dialogues",
    "read_lamp",
    "read_lamp_outputs",
    "read_persuasion_for_good",
    "unescape_pfg_text",
    "read_pfg_info",
    "read_review_histories",
    "read_spc_csv",
    "read_spc_jsonl",
    *_lazy_names,
]
