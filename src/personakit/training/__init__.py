"""Trainers and training utilities: the one training loop (:class:`Trainer`) and its family subclasses
(GRAG, questioner, CoPersona, ROPG, RSPG), schedules, the JSONL log, callbacks, crash-safe checkpoints.

Importing this package imports torch but none of the optional heavy packages
(torch_geometric, sentence_transformers, peft).
"""

from personakit.training.checkpoint import (
    CHECKPOINT_PREFIX,
    CheckpointError,
    get_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_state,
    save_checkpoint,
    set_rng_state,
)
from personakit.training.callbacks import FunctionCallback, TrainerCallback
from personakit.training.logging import LOG_FILE, JsonlLog
from personakit.training.schedules import (
    cosine_schedule,
    linear_decay_schedule,
    linear_warmup_decay_schedule,
    warmup_factor,
    warmup_steps_from_ratio,
)
from personakit.training.trainer import (
    PlateauConfig,
    Trainer,
    TrainingConfig,
    TrainingPlan,
    TrainResult,
    data_digest,
    epoch_permutation,
    parameter_groups,
    seed_everything,
)
from personakit.training.ropg import (
    ROPGItem,
    ROPGKDTrainer,
    ROPGRLTrainer,
    ROPGTrainer,
    ROPGTrainerConfig,
    prepare_ropg_items,
    score_candidate_lists,
)

from personakit.training.feedback import DEFAULT_FEEDBACK_MODEL, LLMFeedbackScorer, PromptScores, feedback_settings
from personakit.training.distributed import all_reduce_sum, broadcast_object, find_free_port, rank_slice
from personakit.training.grag import GRAGTrainer, GRAGTrainingConfig
from personakit.training.copersona import CoPersonaTrainer, CoPersonaTrainingConfig
from personakit.training.rspg import RSPGItem, RSPGTrainer, RSPGTrainerConfig, RSPGTrainOutput, as_rspg_items
from personakit.training.questioner import QuestionerTrainer, QuestionerTrainingConfig

__all__ = [
    # trainer.py
    "Trainer",
    "PlateauConfig",
    "TrainingConfig",
    "TrainResult",
    "TrainingPlan",
    "data_digest",
    "epoch_permutation",
    "seed_everything",
    "parameter_groups",
    # schedules.py
    "warmup_factor",
    "warmup_steps_from_ratio",
    "linear_decay_schedule",
    "linear_warmup_decay_schedule",
    "cosine_schedule",
    # callbacks.py
    "TrainerCallback",
    "FunctionCallback",
    # logging.py
    "JsonlLog",
    "LOG_FILE",
    # questioner.py
    "QuestionerTrainer",
    "QuestionerTrainingConfig",
    # checkpoint.py
    "CHECKPOINT_PREFIX",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "read_checkpoint_state",
    "get_rng_state",
    "set_rng_state",
    # ropg.py
    "ROPGItem",
    "ROPGTrainer",
    "ROPGRLTrainer",
    "ROPGKDTrainer",
    "ROPGTrainerConfig",
    "prepare_ropg_items",
    "score_candidate_lists",
    # grag.py
    "GRAGTrainer",
    "GRAGTrainingConfig",
    # distributed.py
    "all_reduce_sum",
    "broadcast_object",
    "find_free_port",
    "rank_slice",
    # feedback.py
    "DEFAULT_FEEDBACK_MODEL",
    "LLMFeedbackScorer",
    "PromptScores",
    "feedback_settings",
    # copersona.py
    "CoPersonaTrainer",
    "CoPersonaTrainingConfig",
    # rspg.py
    "RSPGItem",
    "RSPGTrainer",
    "RSPGTrainerConfig",
    "RSPGTrainOutput",
    "as_rspg_items",
]
