"""The metric registry: metric names in configs and on the command line resolve here."""

from __future__ import annotations

from personakit.config import BaseConfig, Registry
from personakit.eval.base import Metric
from personakit.eval.bertscore import BERTScore, BERTScoreConfig
from personakit.eval.bleu import BLEU, CHRF, BLEUConfig, CHRFConfig
from personakit.eval.char_f1 import CharF1, CharF1Config
from personakit.eval.classification import MAE, RMSE, Accuracy, MacroF1
from personakit.eval.degenerate import ReplyStats
from personakit.eval.meteor import Meteor, MeteorConfig
from personakit.eval.rouge import Rouge, RougeConfig

__all__ = ["METRICS", "register_metric"]

#: name -> metric class (and its config); names are normalised (``"Char-F1"`` == ``"char_f1"``).
METRICS: Registry[Metric] = Registry("metric")


def register_metric(name: str, metric: type[Metric], config: type[BaseConfig] | None = None) -> type[Metric]:
    """Register a :class:`~personakit.eval.Metric` subclass under ``name``.

    Options given by name (``evaluate_texts(..., my_metric={"k": 1})``) are validated
    by ``config`` when one is given, else passed to the constructor as they are.
    Registering an existing name is an error.

    Example:
        >>> from personakit.eval import Metric, register_metric, evaluate_texts
        >>> class Length(Metric):
        ...     name = "length"
        ...     def score(self, predictions, references):
        ...         return sum(map(len, predictions)) / len(predictions)
        >>> evaluate_texts(["ab", "abcd"], ["x", "y"], metrics=[Length()])  # an instance works unregistered
        {'length': 3.0}
        >>> register_metric("length", Length)  # doctest: +SKIP
        >>> evaluate_texts(["ab", "abcd"], ["x", "y"], metrics=["length"])  # doctest: +SKIP
        {'length': 3.0}
    """
    return METRICS.register(name, metric, config)


for _name, _cls, _cfg in (
    ("char_f1", CharF1, CharF1Config),
    ("rouge", Rouge, RougeConfig),
    ("bleu", BLEU, BLEUConfig),
    ("chrf", CHRF, CHRFConfig),
    ("meteor", Meteor, MeteorConfig),
    ("bertscore", BERTScore, BERTScoreConfig),
    ("accuracy", Accuracy, None),
    ("macro_f1", MacroF1, None),
    ("mae", MAE, None),
    ("rmse", RMSE, None),
    ("reply_stats", ReplyStats, None),
):
    register_metric(_name, _cls, _cfg)
