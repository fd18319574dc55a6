"""The teardown action without Dagster: which failures are retried, and how a webhook URL's credentials are handled.

Covers: a checked command and webhook URL (configuration errors in one line, never
the password), the one retry loop (transient failures only, bounded, growing
pauses), and a command that disappears after it was checked.
"""

import base64
import datetime as dt
import sys

import pytest

from rollout_pipeline import actions
from rollout_pipeline.actions import ActionConfigError, TransientActionError

DAY = dt.date(2026, 7, 4)


def test_webhook_credentials_become_a_basic_auth_header_and_leave_the_url():
    hook = actions.parse_webhook("https://ops%40corp:p%40ss:w0rd@hooks.example.com:8443/scale?token=t0k#frag")
    assert hook.url == "https://hooks.example.com:8443/scale?token=t0k"  # the query is sent, the userinfo is not
    assert hook.safe_url == "https://hooks.example.com:8443/scale"
    assert hook.authorization == "Basic " + base64.b64encode(b"ops@corp:p@ss:w0rd").decode()
    assert "p@ss" not in repr(hook) and "p%40ss" not in repr(hook) and "t0k" not in hook.safe_url


def test_a_webhook_without_credentials_sends_no_authorization():
    hook = actions.parse_webhook("http://[::1]:9000/hook")
    assert (hook.url, hook.authorization) == ("http://[::1]:9000/hook", None)


@pytest.mark.parametrize(("url", "says"), [
    ("ftp://user:hunter2@files.example.com/x", "http:// or https://"),
    ("hooks.example.com/scale", "http:// or https://"),
    ("https://user:hunter2@/scale", "no host"),
    ("https://user:hunter2@hooks.example.com:99999/scale", "not a valid URL"),
    ("http://user:hunter2@hooks.example.com/scale", "only over https"),  # Basic auth in clear text
])
def test_an_unusable_webhook_url_is_a_configuration_error_that_never_shows_the_password(url, says):
    with pytest.raises(ActionConfigError) as caught:
        actions.parse_webhook(url)
    message = str(caught.value)
    assert says in message and "hunter2" not in message and "\n" not in message


def test_credentials_over_plain_http_are_allowed_to_this_machine_only():
    assert actions.parse_webhook("http://u:pw@127.0.0.1:8080/x").authorization
    assert actions.parse_webhook("http://u:pw@localhost/x").authorization


@pytest.mark.parametrize(("command", "says"), [
    ("", "empty"),
    ("kubectl scale 'deploy/{model}", "cannot be parsed"),
    (f"{sys.executable} --model {{modle}}", "unknown placeholder {modle}"),
    (f"{sys.executable} {{}}", "unknown placeholder"),
    (f"{sys.executable} {{model", "teardown command word"),
    ("/nonexistent/bin/scaler --model {model}", "'/nonexistent/bin/scaler' not found"),
])
def test_an_unusable_command_is_a_configuration_error(command, says):
    with pytest.raises(ActionConfigError, match="teardown command") as caught:
        actions.parse_command(command)
    assert says in str(caught.value)


def test_a_command_gets_its_placeholders_and_environment(tmp_path):
    script = tmp_path / "echo.py"
    script.write_text("import os, sys; print(' '.join(sys.argv[1:]), os.environ['ROLLOUT_DAY'])")
    words = actions.parse_command(f"{sys.executable} {script} --model {{model}} --variant={{variant}}")
    assert actions.run_command(words, "churn", "v1", DAY) == "--model churn --variant=v1 2026-07-04"


def test_a_failing_command_is_transient_and_a_vanished_one_is_a_configuration_error(tmp_path):
    script = tmp_path / "scale.sh"
    script.write_text("#!/bin/sh\necho 'cluster unreachable' >&2\nexit 3\n")
    script.chmod(0o755)
    words = actions.parse_command(str(script))
    with pytest.raises(TransientActionError, match="status 3: cluster unreachable"):
        actions.run_command(words, "churn", "v1", DAY)
    script.unlink()  # checked, then gone before the run: retrying cannot bring it back
    with pytest.raises(ActionConfigError, match="cannot be run"):
        actions.run_command(words, "churn", "v1", DAY)


def _scripted(*outcomes):
    """A fake single attempt that raises or returns each outcome in turn, counting calls."""
    calls = []

    def once():
        outcome = outcomes[len(calls)]
        calls.append(outcome)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return once, calls


@pytest.mark.parametrize(("outcomes", "attempts", "ok", "made", "pauses", "config_error"), [
    (["HTTP 204"], 3, True, 1, [], False),
    ([TransientActionError("HTTP 503"), "HTTP 204"], 3, True, 2, [2.0], False),
    ([TransientActionError("a"), TransientActionError("b"), TransientActionError("c")], 3, False, 3, [2.0, 4.0],
     False),
    ([ActionConfigError("answered HTTP 401")], 5, False, 1, [], True),  # never retried
    ([TransientActionError("HTTP 502"), ActionConfigError("answered HTTP 404")], 5, False, 2, [2.0], True),
])
def test_only_transient_failures_are_retried_with_growing_pauses(outcomes, attempts, ok, made, pauses, config_error):
    once, calls = _scripted(*outcomes)
    slept = []
    result = actions.with_retries("webhook: POST https://h/x", once, label="churn/v1", attempts=attempts,
                                  backoff_seconds=2.0, sleep=slept.append)
    assert (result.ok, result.attempts, len(calls), slept, result.config_error) == (ok, made, made, pauses,
                                                                                     config_error)
    if config_error:
        assert result.detail.startswith("configuration error: ")
    elif not ok:
        assert result.detail == "failed 3 time(s); last error: c"


def test_zero_attempts_is_a_configuration_error_not_a_silent_success():
    once, calls = _scripted("HTTP 204")
    result = actions.with_retries("x", once, label="churn/v1", attempts=0, backoff_seconds=0, sleep=lambda s: None)
    assert (result.ok, result.config_error, calls) == (False, True, [])
