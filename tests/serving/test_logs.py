"""Issue 22 D5 (no forged log lines) and issue 21 item 6 (logs in files: one unwrapped line per record,
ISO timestamps, one access line per request, ``log_format=json``)."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from datetime import datetime

import httpx
import pytest

from speechlm.errors import InputError
from speechlm.serving import ServeSettings
from speechlm.serving.logs import escape, make_handler
from tests.serving.conftest import running_server

FORGED = "/v1/references/x%0a203.0.113.9%20%22DELETE%20/v1/references/ceo%22%20200"


@pytest.fixture()
def captured(request):
    """Records of the speechlm loggers formatted by the server's handler (format from the test's param)."""
    out = io.StringIO()
    handler = make_handler(request.param, out)
    logger = logging.getLogger("speechlm.serving")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _lines(out: io.StringIO, server_wait: float = 0.3) -> list[str]:
    time.sleep(server_wait)  # the access line is written once the response is complete
    return [line for line in out.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize("captured", ["text"], indirect=True)
def test_a_path_with_line_breaks_makes_one_escaped_access_line(tts, tmp_path, captured):
    with running_server(tts, tmp_path) as base:
        r = httpx.get(base + FORGED, timeout=10)
        assert r.status_code in (400, 404)
        lines = [line for line in _lines(captured) if "speechlm.serving.access" in line]
    assert len(lines) == 1, lines
    line = lines[0]
    assert '\\n203.0.113.9 \\"DELETE /v1/references/ceo\\" 200' in line, line
    assert not line.startswith("203.0.113.9")
    stamp = line.split(" ", 1)[0]
    assert datetime.fromisoformat(stamp).tzinfo is not None and "T" in stamp, stamp  # full ISO 8601


@pytest.mark.parametrize("captured", ["json"], indirect=True)
def test_json_lines_carry_the_access_fields(tts, tmp_path, captured):
    with running_server(tts, tmp_path) as base:
        httpx.get(base + FORGED, timeout=10)
        r = httpx.post(f"{base}/v1/invoke", json={"text": "Hello there.", "seed": 1}, timeout=60)
        assert r.status_code == 200
        records = [json.loads(line) for line in _lines(captured)]  # every line is one JSON object
    access = [rec for rec in records if rec["logger"] == "speechlm.serving.access"]
    assert len(access) == 2, access
    forged, spoken = access
    assert forged["path"] == "/v1/references/x\n203.0.113.9 \"DELETE /v1/references/ceo\" 200"
    assert spoken["method"] == "POST" and spoken["path"] == "/v1/invoke" and spoken["status"] == 200
    assert spoken["audio_s"] > 0 and spoken["latency_s"] > 0 and spoken["client_left"] is False
    assert all(datetime.fromisoformat(rec["time"]) for rec in records)


def test_long_records_are_not_wrapped_and_control_characters_are_escaped():
    out = io.StringIO()
    logger = logging.getLogger("speechlm.test_logs")
    logger.propagate = False
    logger.addHandler(make_handler("text", out))
    logger.warning("voice %s: %s", "a\r\nb\x1b[2J\u2028c", "x" * 300)
    line, = out.getvalue().splitlines()
    assert "a\\r\\nb\\x1b[2J\\u2028c" in line and len(line) > 300
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 WARNING speechlm.test_logs: voice ", line), line
    assert escape('a"b\\c', quotes=True) == 'a\\"b\\\\c'


def test_log_format_is_checked():
    assert ServeSettings(log_format="json").log_format == "json"
    with pytest.raises(InputError) as e:
        ServeSettings(log_format="xml")
    assert e.value.field == "log_format"


def test_a_terminal_handler_gets_the_escaping_too(monkeypatch):
    from speechlm.serving import logs

    out = io.StringIO()
    plain = logging.StreamHandler(out)  # stands in for the CLI's coloured handler (no escaping of its own)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [plain])
    monkeypatch.setattr(logs.sys.stderr, "isatty", lambda: True, raising=False)
    logs.configure_logging("text")
    logging.getLogger("speechlm.serving.access").warning("%s", 'x\n203.0.113.9 "DELETE /" 200')
    assert out.getvalue().count("\n") == 1 and "x\\n203.0.113.9" in out.getvalue()
