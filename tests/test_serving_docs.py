"""The example request in docs/serving.md is generated from the bundled data and stays so."""

import importlib.util
import json

import numpy as np
import pandas as pd

from tests.helpers import ETTH1, REPO


def _generator():
    spec = importlib.util.spec_from_file_location("serving_example", REPO / "scripts" / "serving_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_example_is_what_the_bundled_data_gives():
    stale = [str(p.relative_to(REPO)) for p, text in _generator().expected().items() if p.read_text() != text]
    assert not stale, f"{stale} differ from the data; run python scripts/serving_example.py"


def test_the_example_request_is_the_last_96_rows_of_etth1():
    body = json.loads((REPO / "docs" / "examples" / "request.json").read_text())["dataframe_split"]
    data = pd.read_csv(ETTH1).tail(96)
    assert body["columns"] == list(data.columns)
    assert [row[0] for row in body["data"]] == list(data["date"])
    np.testing.assert_array_equal(np.array([row[1:] for row in body["data"]]), data.iloc[:, 1:].to_numpy())
    csv = pd.read_csv(REPO / "docs" / "examples" / "request.csv")
    pd.testing.assert_frame_equal(csv, data.reset_index(drop=True))
    page = (REPO / "docs" / "serving.md").read_text()
    assert json.dumps(body["data"][-1]) in page and "from 2018-06-26T20:00:00 to 2018-06-30T19:00:00" in page
