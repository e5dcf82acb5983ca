"""Accuracy, macro-F1, MAE and RMSE against scikit-learn."""

from __future__ import annotations

import math
import random

import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error

from personakit.eval import MAE, RMSE, Accuracy, MacroF1, accuracy, macro_f1, mae, rmse

random.seed(0)
Y_TRUE = [random.choice("abcd") for _ in range(50)]
Y_PRED = [random.choice("abcde") for _ in range(50)]  # "e" never occurs in the references
R_TRUE = [random.randint(1, 5) for _ in range(40)]
R_PRED = [random.uniform(1, 5) for _ in range(40)]


def test_accuracy_agrees_with_sklearn():
    assert accuracy(Y_PRED, Y_TRUE) == pytest.approx(accuracy_score(Y_TRUE, Y_PRED))
    assert accuracy([1, 2, 3], [1, 2, 4]) == pytest.approx(2 / 3)


def test_macro_f1_agrees_with_sklearn_including_unseen_predicted_labels():
    expected = f1_score(Y_TRUE, Y_PRED, average="macro", zero_division=0)
    assert macro_f1(Y_PRED, Y_TRUE) == pytest.approx(expected)
    assert macro_f1(["x", "x"], ["x", "y"]) == pytest.approx(f1_score(["x", "y"], ["x", "x"], average="macro",
                                                                      zero_division=0))


def test_mae_rmse_agree_with_sklearn():
    assert mae(R_PRED, R_TRUE) == pytest.approx(mean_absolute_error(R_TRUE, R_PRED))
    assert rmse(R_PRED, R_TRUE) == pytest.approx(math.sqrt(mean_squared_error(R_TRUE, R_PRED)))


def test_numbers_may_be_strings_and_bad_values_are_named():
    assert mae(["4", " 2.5"], [4, 3]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"mae: prediction 1 is '4 stars', which is not a number"):
        mae(["3", "4 stars"], [3, 4])
    with pytest.raises(TypeError, match="rmse: reference 0 is a bool"):
        rmse([1], [True])
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        accuracy(["a", "b"], ["a"])


def test_direction_and_class_form():
    assert Accuracy.higher_is_better and MacroF1.higher_is_better
    assert not MAE.higher_is_better and not RMSE.higher_is_better
    metric = RMSE()
    metric.update([1.0], [2.0])
    metric.update([3.0], [3.0])
    assert metric.compute() == pytest.approx(math.sqrt(0.5))
