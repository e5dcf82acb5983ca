"""Score texts with several metrics at once, by name: ``evaluate_texts``."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from personakit.config import ConfigError, normalize_name
from personakit.eval.base import Metric, References, check_pairs
from personakit.eval.registry import METRICS

__all__ = ["DEFAULT_METRICS", "evaluate_texts", "evaluate_per_example", "build_metrics"]

#: The metrics :func:`evaluate_texts` computes when none are named (fast, no model needed).
DEFAULT_METRICS: tuple[str, ...] = ("char_f1", "rouge", "bleu", "meteor")


def build_metrics(metrics: Sequence[str | Metric] = DEFAULT_METRICS,
                  options: Mapping[str, Mapping[str, Any]] | None = None) -> list[Metric]:
    """Resolve metric names (or pass instances through) into :class:`Metric` objects.

    Args:
        metrics: Registered names (see ``METRICS.names()``) or :class:`Metric` instances.
        options: Per-metric constructor options keyed by metric name, e.g.
            ``{"rouge": {"use_stemmer": False}}``; validated by the metric's config.

    Raises:
        ValueError: An unknown metric name (the message lists the registered ones),
            options for a metric that is not requested, or invalid options.
    """
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if not metrics:
        raise ValueError("evaluate_texts: no metrics requested")
    options = dict(options or {})
    wanted = {normalize_name(m) for m in metrics if isinstance(m, str)}
    for key in options:
        if normalize_name(key) not in wanted:
            raise ValueError(f"evaluate_texts: options given for metric {key!r}, which is not among the requested "
                             f"metrics {[m if isinstance(m, str) else type(m).__name__ for m in metrics]}")
    by_norm = {normalize_name(k): v for k, v in options.items()}
    built: list[Metric] = []
    for spec in metrics:
        if isinstance(spec, Metric):
            built.append(spec)
            continue
        if not isinstance(spec, str):
            raise TypeError(f"evaluate_texts: a metric must be a name or a Metric instance, got {type(spec).__name__}")
        if spec not in METRICS:
            raise ValueError(f"evaluate_texts: unknown metric {spec!r}; "
                             f"registered metrics: {', '.join(METRICS.names())}")
        kwargs = dict(by_norm.get(normalize_name(spec), {}))
        try:
            built.append(METRICS.resolve(spec, **kwargs))
        except ConfigError as err:  # the message already names the metric and each bad field
            raise ValueError(f"evaluate_texts: invalid options for {err}") from err
        except TypeError as err:
            raise ValueError(f"evaluate_texts: invalid options for metric {spec!r}: {err}") from err
    return built


def evaluate_texts(predictions: Sequence[str], references: References,
                   metrics: Sequence[str | Metric] = DEFAULT_METRICS,
                   **options: Mapping[str, Any]) -> dict[str, float]:
    """Score predictions against references with several metrics; flat ``{key: value}`` result.

    Keys: ``char_f1``, ``rouge1``/``rouge2``/``rougeL`` (one per ROUGE type),
    ``bleu`` (0–100), ``chrf`` (0–100), ``meteor``, ``bertscore_precision``/
    ``bertscore_recall``/``bertscore_f1``, ``accuracy``, ``macro_f1``, ``mae``,
    ``rmse``.  Sentence-level metrics are means over pairs; BLEU and chrF are corpus
    scores.

    Args:
        predictions: One generated text per example.
        references: One reference per example, or a list of references per example.
        metrics: Registered names (``"char_f1"``, ``"rouge"``, ``"bleu"``,
            ``"chrf"``, ``"meteor"``, ``"bertscore"``, ``"accuracy"``, ``"macro_f1"``,
            ``"mae"``, ``"rmse"``, or any added with
            :func:`~personakit.eval.register_metric`), a comma-separated string, or
            :class:`~personakit.eval.Metric` instances.
        **options: Per-metric options, one dict per metric name:
            ``rouge={"types": ["rougeL"]}``, ``bertscore={"model": "mpnet"}``.

    Returns:
        ``{key: value}`` in the order of ``metrics``.

    Raises:
        ValueError: Length mismatch, empty input, unknown metric, bad options, or two
            metrics producing the same key.

    Example:
        >>> scores = evaluate_texts(["the cat sat on the mat"], ["the cat sat on a mat"])
        >>> sorted(scores)
        ['bleu', 'char_f1', 'meteor', 'rouge1', 'rouge2', 'rougeL']
        >>> round(scores["rouge1"], 4)
        0.8333
    """
    check_pairs(predictions, references, "evaluate_texts")
    built = build_metrics(metrics, options)
    results: dict[str, float] = {}
    for metric in built:
        for key, value in metric.flat(metric(predictions, references)).items():
            if key in results:
                raise ValueError(f"evaluate_texts: two metrics produce the key {key!r}; request each metric once")
            results[key] = value
    return results


def evaluate_per_example(predictions: Sequence[str], references: References,
                         metrics: Sequence[str | Metric] = DEFAULT_METRICS,
                         **options: Mapping[str, Any]) -> dict[str, list[float]]:
    """Score each prediction on its own: flat ``{key: [value per example]}`` (:meth:`Metric.per_example`).

    The keys are those of :func:`evaluate_texts`.  For a sentence-level metric the mean of a
    list is the :func:`evaluate_texts` value; BLEU and chrF give sentence-level scores
    (smoothed), whose mean differs from the corpus score.  These lists are what a paired
    test (:func:`~personakit.eval.paired_comparison`) compares.

    Example:
        >>> evaluate_per_example(["the cat sat", "a dog"], ["the cat sat", "the cat sat"], metrics=["rouge"])["rouge1"]
        [1.0, 0.0]
    """
    check_pairs(predictions, references, "evaluate_per_example")
    results: dict[str, list[float]] = {}
    for metric in build_metrics(metrics, options):
        for key, values in metric.per_example(predictions, references).items():
            if key in results:
                raise ValueError(f"evaluate_per_example: two metrics produce the key {key!r}; request each metric once")
            results[key] = values
    return results
