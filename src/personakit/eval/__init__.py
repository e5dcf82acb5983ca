"""Evaluation: overlap metrics, bits per character, BERTScore, label metrics, significance tests, an LLM judge.

One metric family per module; each has a :class:`Metric` class (``update`` →
``compute``, or call it directly) and a functional form.  :func:`evaluate_texts`
scores by metric name, :func:`format_metrics_table` renders results, and
:func:`evaluate_file` reads a predictions file.

Example:
    >>> from personakit.eval import evaluate_texts, format_metrics_table
    >>> scores = evaluate_texts(["i love my dog"], ["i love dogs"], metrics=["rouge", "char_f1"])
    >>> print(format_metrics_table({"model": scores}, digits=2))
    | system | rouge1 | rouge2 | rougeL | char_f1 |
    | --- | ---: | ---: | ---: | ---: |
    | model | 0.86 | 0.40 | 0.86 | 0.84 |
"""

from personakit.eval.base import Metric, References, TextMetric, check_pairs, normalize_references
from personakit.eval.bertscore import BERTScore, BERTScoreConfig, BERTScoreOutput, bertscore, greedy_match
from personakit.eval.bleu import BLEU, CHRF, BLEUConfig, CHRFConfig, bleu, chrf
from personakit.eval.bpc import bits_per_character, model_bits_per_character, reference_log_likelihoods
from personakit.eval.char_f1 import CharF1, CharF1Config, char_f1
from personakit.eval.classification import MAE, RMSE, Accuracy, MacroF1, accuracy, macro_f1, mae, rmse
from personakit.eval.evaluate import DEFAULT_METRICS, build_metrics, evaluate_per_example, evaluate_texts
from personakit.eval.io import (
    LoadedPredictions,
    PredictionFileError,
    evaluate_file,
    load_prediction_groups,
    load_predictions,
)
from personakit.eval.judge import (
    JUDGE_QUESTIONS,
    JudgeQuestionResult,
    JudgeResult,
    PairJudgement,
    PairwiseJudge,
    PairwiseJudgeConfig,
    PairwiseVerdict,
    build_judge_prompt,
    judge_pairs,
    reconcile_verdicts,
    wilson_interval,
)
from personakit.eval.meteor import Meteor, MeteorConfig, count_chunks, meteor, meteor_alignment, meteor_from_alignment
from personakit.eval.registry import METRICS, register_metric
from personakit.eval.rouge import Rouge, RougeConfig, rouge
from personakit.eval.controls import blank_generic, reference_scaffold, shuffle_personas
from personakit.eval.degenerate import ReplyStats, distinct_share, reply_stats, runs_past_turn
from personakit.eval.significance import (
    PairedComparison,
    SignificanceResult,
    mcnemar,
    paired_bootstrap,
    paired_comparison,
    paired_ttest,
)
from personakit.eval.table import format_metrics_table

from personakit.eval.lamp import (
    LAMP_EVAL_METRICS,
    LaMPEval,
    LaMPMetric,
    lamp3_rating,
    lamp3_score,
    lamp_accuracy,
    lamp_eval_fn,
    lamp_eval_name,
    lamp_rouge1,
    parse_rating,
)

__all__ = [
    "LAMP_EVAL_METRICS",
    "LaMPEval",
    "LaMPMetric",
    "lamp3_rating",
    "lamp3_score",
    "lamp_accuracy",
    "lamp_eval_fn",
    "lamp_eval_name",
    "lamp_rouge1",
    "parse_rating",
    "Accuracy",
    "BERTScore",
    "BERTScoreConfig",
    "BERTScoreOutput",
    "BLEU",
    "BLEUConfig",
    "CHRF",
    "CHRFConfig",
    "CharF1",
    "CharF1Config",
    "DEFAULT_METRICS",
    "JUDGE_QUESTIONS",
    "JudgeQuestionResult",
    "JudgeResult",
    "LoadedPredictions",
    "MAE",
    "METRICS",
    "MacroF1",
    "Meteor",
    "MeteorConfig",
    "Metric",
    "PairJudgement",
    "PairwiseJudge",
    "PairwiseJudgeConfig",
    "PairwiseVerdict",
    "PredictionFileError",
    "RMSE",
    "References",
    "Rouge",
    "RougeConfig",
    "SignificanceResult",
    "TextMetric",
    "accuracy",
    "bertscore",
    "bits_per_character",
    "bleu",
    "build_judge_prompt",
    "build_metrics",
    "char_f1",
    "check_pairs",
    "chrf",
    "count_chunks",
    "evaluate_file",
    "evaluate_texts",
    "evaluate_per_example",
    "format_metrics_table",
    "greedy_match",
    "judge_pairs",
    "load_predictions",
    "load_prediction_groups",
    "macro_f1",
    "mae",
    "mcnemar",
    "meteor",
    "meteor_alignment",
    "meteor_from_alignment",
    "model_bits_per_character",
    "normalize_references",
    "paired_bootstrap",
    "paired_comparison",
    "PairedComparison",
    "ReplyStats",
    "reply_stats",
    "runs_past_turn",
    "distinct_share",
    "shuffle_personas",
    "blank_generic",
    "reference_scaffold",
    "paired_ttest",
    "reconcile_verdicts",
    "reference_log_likelihoods",
    "register_metric",
    "rmse",
    "wilson_interval",
    "rouge",
]
