"""Trainers and training utilities (crash-safe checkpoints, ROPG retriever training, RSPG).

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
from personakit.training.grag import (
    GRAGTrainer,
    GRAGTrainingConfig,
    TrainerCallback,
    TrainingPlan,
    TrainResult,
    linear_decay_schedule,
)
from personakit.training.copersona import CoPersonaTrainer, CoPersonaTrainingConfig, cosine_schedule
from personakit.training.rspg import RSPGItem, RSPGTrainer, RSPGTrainerConfig, RSPGTrainOutput, as_rspg_items
from personakit.training.questioner import QuestionerTrainer, QuestionerTrainingConfig

__all__ = [
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
    "TrainResult",
    "TrainerCallback",
    "TrainingPlan",
    "linear_decay_schedule",
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
    "cosine_schedule",
    # rspg.py
    "RSPGItem",
    "RSPGTrainer",
    "RSPGTrainerConfig",
    "RSPGTrainOutput",
    "as_rspg_items",
]
