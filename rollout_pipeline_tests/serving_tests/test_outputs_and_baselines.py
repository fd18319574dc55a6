"""What models may return and how it is logged; the first-rollout baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rollout_pipeline.serving.baselines import ConstantModel, TopNPopular
from rollout_pipeline.serving.outputs import Output, UnsupportedOutput, decode_items, encode_items, to_output


@pytest.mark.parametrize(
    "value, prediction, label",
    [
        (3, 3.0, None),
        (0.25, 0.25, None),
        (np.float32(0.5), 0.5, None),
        (np.array([2.5]), 2.5, None),
        (True, 1.0, None),
        ("cat", None, "cat"),
        (["a", "b"], None, '["a","b"]'),
        (("x", 1), None, '["x","1"]'),
        (np.array(["p", "q"]), None, '["p","q"]'),
        (Output(prediction=0.9, label="spam"), 0.9, "spam"),
    ],
)
def test_outputs_map_to_prediction_and_label(value, prediction, label):
    out = to_output(value)
    assert (out.prediction, out.label) == (prediction, label)


def test_unsupported_outputs_are_named():
    with pytest.raises(UnsupportedOutput, match="got dict"):
        to_output({"a": 1})


def test_item_lists_round_trip_as_json_text():
    items = ["a", 'quote"d', "ünï"]
    assert decode_items(encode_items(items)) == items
    assert json.loads(encode_items(items)) == items
    assert decode_items("plain") == "plain"


def test_constant_baselines():
    assert ConstantModel.mean_of([1.0, 2.0, 6.0])(None).prediction == 3.0
    assert ConstantModel.majority_of(["b", "a", "b", "a", "c"])(None).label == "a"  # tie: smallest


def test_top_n_popular_recommends_the_most_consumed_items_to_everyone():
    model = TopNPopular(2).fit(["x", "y", "y", "z", "z", "z", "w"])
    assert model(None).value == ["z", "y"]
    assert model({"anything": 1}).label == '["z","y"]'
    with pytest.raises(RuntimeError, match="not fitted"):
        TopNPopular(3)(None)
