"""The trainer's environment contract: MLOPS_* variables and spec.training JSON in CRD camelCase."""

from __future__ import annotations

import json

import pytest

from mlops_operator.providers.storage import S3Uri
from mlops_operator.runtime.train_config import InvalidInput, load_config, parse_training

pytestmark = pytest.mark.unit

TRAINING = {
    "dataset": {"builtin": "breast_cancer"},
    "estimator": "sklearn.ensemble.RandomForestClassifier",
    "hyperparameters": {"n_estimators": 20},
    "split": {"testFraction": 0.25, "seed": 7, "stratify": False},
    "metrics": ["accuracy", "roc_auc"],
    "resources": {"limits": {"cpu": "1"}},  # for the Job, ignored by the trainer
    "timeout": "30m",
}


def _env(**overrides: str) -> dict[str, str]:
    env = {
        "MLOPS_MODEL": "breast-cancer",
        "MLOPS_MODEL_VERSION": "bc-v1",
        "MLOPS_TRAINING": json.dumps(TRAINING),
        "MLOPS_ARTIFACT_PREFIX": "s3://mlops/models/breast-cancer/bc-v1",
    }
    env.update(overrides)
    return env


def test_given_complete_env_when_loaded_then_camel_case_fields_parse_and_prefix_is_a_directory():
    cfg = load_config(_env())
    assert (cfg.model, cfg.model_version) == ("breast-cancer", "bc-v1")
    assert cfg.artifact_prefix == S3Uri("mlops", "models/breast-cancer/bc-v1/")
    t = cfg.training
    assert t.dataset.builtin == "breast_cancer" and t.feature_set is None
    assert (t.split.test_fraction, t.split.seed, t.split.stratify) == (0.25, 7, False)
    assert t.hyperparameters == {"n_estimators": 20} and t.metrics == ["accuracy", "roc_auc"]


def test_given_minimal_training_when_parsed_then_split_defaults_apply():
    t = parse_training(json.dumps({"dataset": {"builtin": "iris"}, "estimator": "sklearn.tree.DecisionTreeClassifier"}))
    assert (t.split.test_fraction, t.split.seed, t.split.stratify) == (0.2, 42, True)
    assert t.hyperparameters == {} and t.metrics == []


@pytest.mark.parametrize("missing", ["MLOPS_MODEL", "MLOPS_MODEL_VERSION", "MLOPS_TRAINING", "MLOPS_ARTIFACT_PREFIX"])
def test_given_missing_variable_when_loaded_then_invalid_input_names_it(missing):
    env = _env()
    del env[missing]
    with pytest.raises(InvalidInput, match=missing):
        load_config(env)


@pytest.mark.parametrize("prefix", ["http://mlops/models/x/", "s3://mlops/models/../x/", "s3:///x/", "s3://mlops/"])
def test_given_bad_artifact_prefix_when_loaded_then_invalid_input(prefix):
    with pytest.raises(InvalidInput, match="MLOPS_ARTIFACT_PREFIX"):
        load_config(_env(MLOPS_ARTIFACT_PREFIX=prefix))


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1]", "JSON object"),
        ({"dataset": {"builtin": "iris"}}, "training.estimator"),
        ({"estimator": "sklearn.svm.SVC"}, "exactly one of training.featureSet or training.dataset"),
        ({"estimator": "sklearn.svm.SVC", "dataset": {"builtin": "iris"}, "featureSet": {"name": "f"}},
         "exactly one of training.featureSet"),
        ({"estimator": "sklearn.svm.SVC", "dataset": {}}, "exactly one of dataset.builtin or dataset.uri"),
        ({"estimator": "sklearn.svm.SVC", "dataset": {"uri": "s3://b/d.csv"}}, "dataset.target is required"),
        ({"estimator": "sklearn.svm.SVC", "dataset": {"builtin": "iris"}, "split": {"testFraction": 1.5}},
         "training.split.testFraction"),
        ({"estimator": "sklearn.svm.SVC", "dataset": {"uri": "s3://b/d", "format": "xls", "target": "y"}},
         "training.dataset.format"),
    ],
)
def test_given_invalid_training_when_parsed_then_invalid_input_names_the_field(training, message):
    raw = training if isinstance(training, str) else json.dumps(training)
    with pytest.raises(InvalidInput, match=message):
        parse_training(raw)
