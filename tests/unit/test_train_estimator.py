"""The estimator allowlist and hyperparameter checks: a CR can never make the trainer import arbitrary code."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mlops_operator.runtime.train_config import InvalidInput
from mlops_operator.runtime.train_estimator import (
    build_estimator,
    check_estimator_path,
    check_hyperparameters,
    effective_parameters,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "path",
    [
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.linear_model.LogisticRegression",
        "sklearn.svm.SVR",
        "sklearn.tree.DecisionTreeRegressor",
        "sklearn.dummy.DummyClassifier",
        "sklearn.kernel_ridge.KernelRidge",
    ],
)
def test_given_allowlisted_estimator_when_built_then_instance_of_that_class(path):
    est = build_estimator(path, {})
    assert f"{type(est).__module__.split('.')[0]}.{path.split('.')[1]}" == ".".join(path.split(".")[:2])
    assert type(est).__name__ == path.rsplit(".", 1)[1]


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("os.system", "must look like 'sklearn"),
        ("subprocess.Popen", "must look like 'sklearn"),
        ("sklearn.ensemble._forest.RandomForestClassifier", "must look like 'sklearn"),
        ("sklearn.utils.Bunch", "not in the allowlist"),
        ("sklearn.pipeline.Pipeline", "not in the allowlist"),
        ("sklearn.externals.Anything", "not in the allowlist"),
        ("sklearn.ensemble.BaseEstimator", "no public estimator"),  # re-exported from sklearn.base
        ("sklearn.ensemble.NoSuchModel", "no public estimator"),
        ("sklearn.ensemble.IsolationForest", "only classifiers and regressors"),
        ("sklearn.ensemble.VotingClassifier", "cannot be built from hyperparameters alone"),
        ("sklearn.neighbors.KDTree", "not a scikit-learn estimator"),
        ("", "must look like"),
        ("sklearn.ensemble.RandomForestClassifier; import os", "must look like"),
    ],
)
def test_given_estimator_outside_allowlist_when_built_then_invalid_input_says_why(path, why):
    with pytest.raises(InvalidInput, match=why):
        build_estimator(path, {})


def test_given_disallowed_module_when_checked_then_nothing_is_imported():
    sys.modules.pop("sklearn.feature_extraction.text", None)
    with pytest.raises(InvalidInput):
        check_estimator_path("sklearn.feature_extraction.TfidfVectorizer")
    assert "sklearn.feature_extraction.text" not in sys.modules


def test_given_known_hyperparameters_when_built_then_applied():
    est = build_estimator("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 7, "max_depth": 3})
    assert (est.n_estimators, est.max_depth) == (7, 3)


def test_given_unknown_hyperparameter_when_built_then_error_names_it_and_suggests_the_close_one():
    with pytest.raises(InvalidInput, match=r"unknown hyperparameter 'n_estimatorz' \(did you mean 'n_estimators'\?\)"):
        build_estimator("sklearn.ensemble.RandomForestClassifier", {"n_estimatorz": 5})


def test_given_several_unknown_hyperparameters_then_all_are_named():
    with pytest.raises(InvalidInput) as info:
        check_hyperparameters("x.Y", {"alpha", "beta"}, {"gamma": 1, "zzz": 2, "alpha": 3})
    assert "'gamma'" in str(info.value) and "'zzz'" in str(info.value) and "'alpha'," not in str(info.value)


@pytest.mark.parametrize(
    ("hyperparameters", "name"),
    [({"n_estimators": "many"}, "n_estimators"), ({"n_estimators": 0}, "n_estimators"), ({"criterion": "best"}, "criterion")],
)
def test_given_bad_hyperparameter_value_when_built_then_invalid_input_before_any_fit(hyperparameters, name):
    with pytest.raises(InvalidInput, match=name):
        build_estimator("sklearn.ensemble.RandomForestClassifier", hyperparameters)


def test_given_estimator_when_parameters_reported_then_json_safe():
    est = build_estimator("sklearn.linear_model.LogisticRegression", {"C": 0.5})
    params = effective_parameters(est)
    assert params["C"] == 0.5 and params["max_iter"] == 100
    est.set_params(random_state=np.random.RandomState(0))
    assert effective_parameters(est)["random_state"].startswith("RandomState(")  # objects become their repr
