"""URL normalization: the one place a database URL is interpreted."""

import pytest

from rollout_pipeline.store.engine import DatabaseUrlError, normalize_url, redact


@pytest.mark.parametrize(
    "given, driver",
    [
        ("postgresql://u:p@h/db", "postgresql+psycopg2"),
        ("postgres://u@h:5433/db", "postgresql+psycopg2"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_normalize_pins_psycopg2(given, driver):
    assert normalize_url(given).drivername == driver


@pytest.mark.parametrize("given", ["mysql://u@h/db", "postgresql+psycopg://u@h/db", "not a url at all"])
def test_unsupported_urls_are_refused(given):
    with pytest.raises(DatabaseUrlError):
        normalize_url(given)


def test_unparseable_url_error_does_not_echo_the_password():
    with pytest.raises(DatabaseUrlError) as info:
        normalize_url("postgresql://user:s3cret@@host:notaport/db")
    assert "s3cret" not in str(info.value)


def test_redact_hides_password():
    assert "s3cret" not in redact("postgresql://user:s3cret@host/db")
    assert "user" in redact("postgresql://user:s3cret@host/db")
