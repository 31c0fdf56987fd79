"""The request files the quickstart sends: the normal one must look like the training data to the serving
pod's drift statistics (or the canary step fires a drift alert and the retrain step proves nothing), the
drifted one must not; both must be admitted by the default request limits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from mlops_operator.drift.reference import reference_stats
from mlops_operator.runtime.serve_drift import window_stats
from mlops_operator.runtime.serve_limits import Limits
from tests.conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "docs" / "examples"
PSI_ALERT = 0.25  # the shipped MLOpsFeatureDriftHigh threshold
MIN_ROWS = 100  # the serving pod's default MLOPS_DRIFT_MIN_ROWS


def rows(name: str) -> np.ndarray:
    body = json.loads((EXAMPLES / name).read_text())
    (tensor,) = body["inputs"]
    assert tensor["datatype"] == "FP64" and tensor["shape"][1] == 30
    return np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])


def max_psi(window: np.ndarray, seed: int) -> float:
    data = load_breast_cancer(as_frame=True)
    train, _ = train_test_split(data.data, test_size=0.2, random_state=seed)
    stats = window_stats(window, [], list(data.data.columns), reference_stats(train, list(data.data.columns)), MIN_ROWS)
    return max(stats.drift["psi"].values())


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_given_the_normal_rows_when_compared_to_any_training_split_then_no_feature_drifts(seed):
    normal = rows("breast-cancer-rows.json")
    dataset = {tuple(r) for r in np.round(load_breast_cancer().data, 4)}
    assert all(tuple(r) in dataset for r in np.round(normal, 4)), "every row is a row of the dataset"
    assert max_psi(normal, seed) < PSI_ALERT / 2


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_given_the_drifted_rows_when_compared_then_they_drift_far_past_the_alert(seed):
    assert np.allclose(rows("breast-cancer-drifted.json"), rows("breast-cancer-rows.json") * 3)
    assert max_psi(rows("breast-cancer-drifted.json"), seed) > 4 * PSI_ALERT


def test_given_one_row_repeated_when_compared_then_it_drifts_which_is_why_the_quickstart_sends_real_rows():
    assert max_psi(np.tile(rows("breast-cancer-rows.json")[:1], (MIN_ROWS, 1)), 0) > PSI_ALERT


@pytest.mark.parametrize("name", ["breast-cancer-rows.json", "breast-cancer-drifted.json"])
def test_given_an_example_request_then_the_default_limits_admit_it_as_a_small_request(name):
    limits = Limits()
    assert (EXAMPLES / name).stat().st_size < limits.large_bytes
    assert rows(name).shape[0] <= limits.max_rows
