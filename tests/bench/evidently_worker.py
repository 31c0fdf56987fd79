"""Runs inside the Evidently venv (not the project's): times Evidently's drift preset on .npy inputs.

    python evidently_worker.py REFERENCE.npy CURRENT.npy REPEATS WARMUP [METHODS] [--no-peak]  ->  one JSON line

METHODS: comma-separated preset methods (default psi,ks). --no-peak skips the extra tracemalloc run.
"""

import json
import sys
import tracemalloc

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from common import median_time  # the sibling tests/bench/common.py (stdlib only): this script's dir is on sys.path


def main(ref_file: str, cur_file: str, repeats: int, warmup: int, methods: str = "psi,ks", peak: bool = True) -> None:
    ref, cur = np.load(ref_file), np.load(cur_file)
    cols = [f"f{j}" for j in range(ref.shape[1])]
    definition = DataDefinition(numerical_columns=cols)
    reference = Dataset.from_pandas(pd.DataFrame(ref, columns=cols), data_definition=definition)
    current = Dataset.from_pandas(pd.DataFrame(cur, columns=cols), data_definition=definition)
    out = {}
    for method in methods.split(","):
        median, times = median_time(lambda: Report([DataDriftPreset(method=method)]).run(current, reference),
                                    repeats, warmup)
        out[method] = {"median_s": median, "times": times}
    if peak:
        tracemalloc.start()
        Report([DataDriftPreset(method="psi")]).run(current, reference)
        out["psi"]["peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--no-peak"]
    main(args[0], args[1], int(args[2]), int(args[3]), *args[4:5], peak="--no-peak" not in sys.argv)
