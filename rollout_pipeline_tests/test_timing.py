"""The timing helper fails a call that waits and forgives a lone stall."""

import pytest

from rollout_pipeline_tests.timing import assert_rarely_slow


def test_a_lone_stall_is_forgiven():
    assert_rarely_slow([0.0001] * 39 + [0.45], slow=0.05, allowed=2)


def test_waiting_on_one_call_in_four_fails():
    with pytest.raises(AssertionError, match="10 of 40 requests took 50 ms or more"):
        assert_rarely_slow([0.0001, 0.0001, 0.0001, 0.2] * 10, slow=0.05, allowed=2, what="request")


def test_a_slow_median_fails():
    with pytest.raises(AssertionError, match="median"):
        assert_rarely_slow([0.01] * 40, slow=0.05)


def test_a_call_as_slow_as_a_real_wait_fails():
    with pytest.raises(AssertionError, match="as long as waiting would"):
        assert_rarely_slow([0.0001] * 99 + [2.1], slow=0.05, allowed=2, waiting_costs=2.0, what="submit")
