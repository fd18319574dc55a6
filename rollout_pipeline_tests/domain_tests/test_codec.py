"""domain.codec: frozen dataclass trees -> JSON text -> the same records (nested tuples, dates, None,
non-finite floats, defaults for fields added later), and errors that name the field."""

import datetime as dt
import enum
import json
import math
import typing
from dataclasses import dataclass

import pytest

from rollout_pipeline.domain.codec import CodecError, decode, encode
from rollout_pipeline.domain.decide import Evidence
from rollout_pipeline.domain.summary import DaySummary, Extreme, Pairing, SampleRow, VariantDay


def _variant(served: bool, mean: float | None) -> VariantDay:
    return VariantDay(variant="v1", served=served, requests=10, ok=9, errors=1, timeouts=0, unknown_status=0,
                      missing_correlation_id=0, invalid_latency=0, latency_mean=3.0, latency_max=9.5, latency_p50=2.0,
                      latency_p95=5.0, latency_p99=9.0, predictions=9, prediction_mean=mean,
                      prediction_std=float("inf"), prediction_min=-1.0, prediction_max=float("nan"),
                      nonfinite_predictions=0, prediction_histogram=(1, 2, 3), label_counts=(("a", 2), ("b", 1)))


SUMMARY = DaySummary(
    "m", dt.date(2026, 6, 1), "v1", "v2", (_variant(True, 0.5), _variant(False, None)), (0.0, 0.5, 1.0),
    Pairing(sample_fraction=0.1, served_in_sample=5, shadow_in_sample=5, matched=4, unmatched_shadow=1,
            duplicate_correlation_ids=0, diff_abs_mean=None, disagreement_rate=0.2),
    (Extreme("c1", 9.0, None, "high"),),
    (SampleRow("c1", "v1", True, 3.0, "ok", 0.5, None, entity_id="e1", complaints=2),),
    accuracy_day=dt.date(2026, 5, 30), collect_seconds=1.25)


def _through_json(value):
    return json.loads(json.dumps(encode(value), allow_nan=False))  # strict JSON: no NaN literal


def test_a_day_summary_round_trips_through_strict_json():
    back = decode(DaySummary, _through_json(SUMMARY))
    assert back.variants[0].prediction_std == math.inf and math.isnan(back.variants[0].prediction_max)
    assert back.variants[0].prediction_min == -1.0
    nan_free = lambda s: type(s.variants[0])(**{**s.variants[0].__dict__, "prediction_max": 0.0})  # noqa: E731
    assert nan_free(back) == nan_free(SUMMARY)
    assert back.sample == SUMMARY.sample and back.extremes == SUMMARY.extremes and back.pairing == SUMMARY.pairing
    assert back.day == dt.date(2026, 6, 1) and back.accuracy_day == dt.date(2026, 5, 30)
    assert back.variants[0].label_counts == (("a", 2), ("b", 1)) and isinstance(back.prediction_edges, tuple)


@pytest.mark.parametrize("x", [math.inf, -math.inf, 1e308, -0.0, 5e-324])
def test_floats_round_trip(x):
    assert decode(float, _through_json(x)) == x


def test_a_field_missing_from_stored_data_takes_its_default():
    data = _through_json(Evidence((), 3, (), 99.0))
    del data["old_variant_deployable"]
    assert decode(Evidence, data).old_variant_deployable is True


@dataclass(frozen=True)
class _Inner:
    when: dt.datetime
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Outer:
    inner: _Inner | None
    pairs: tuple[tuple[str, int], ...]
    counts: dict[str, int]


def test_nested_records_datetimes_and_none():
    value = _Outer(_Inner(dt.datetime(2026, 6, 1, 2, 3, tzinfo=dt.UTC), ("a",)), (("x", 1),), {"k": 2})
    assert decode(_Outer, _through_json(value)) == value
    assert decode(_Outer, _through_json(_Outer(None, (), {}))) == _Outer(None, (), {})


class _Color(enum.Enum):
    RED = "red"


@dataclass(frozen=True)
class _Tagged:
    kind: typing.Literal["a", "b"]
    color: _Color = _Color.RED


def test_literals_and_enums():
    assert decode(_Tagged, _through_json(_Tagged("b"))) == _Tagged("b")
    assert _through_json(_Tagged("a")) == {"kind": "a", "color": "red"}
    with pytest.raises(CodecError, match="_Tagged.kind: 'c' is not one of"):
        decode(_Tagged, {"kind": "c"})


def test_bad_data_names_the_field():
    with pytest.raises(CodecError, match=r"Evidence.candidate_requests: expected an integer"):
        decode(Evidence, {"data_quality_failures": [], "candidate_requests": "3", "critical_failures": [],
                          "score": None})
    with pytest.raises(CodecError, match="field 'score' is missing"):
        decode(Evidence, {"data_quality_failures": [], "candidate_requests": 3, "critical_failures": []})
