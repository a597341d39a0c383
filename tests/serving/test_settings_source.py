"""Issue 22 D8 and the serving refactor: ServeSettings is the one source of the server's keys — the
composed task=serve config takes its defaults from it, and the README / docs tables are made from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from speechlm.config import compose
from speechlm.serving import ServeSettings
from speechlm.serving.limits import LIMIT_NAMES, markdown_table
from speechlm.serving.ray_options import RayOptions
from speechlm.serving.settings import HELP

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "regenerate with: python -c 'from speechlm.serving.limits import markdown_table; print(markdown_table())'"


def test_readme_table_is_the_settings():
    assert markdown_table() in (ROOT / "README.md").read_text(), REGENERATE
    assert "| `max_text_length` | `10000` |" in markdown_table()  # the enforced value, not a restated one


def test_docs_limits_table_is_the_settings():
    assert markdown_table(LIMIT_NAMES) in (ROOT / "docs" / "serving.md").read_text(), REGENERATE + "(LIMIT_NAMES)"


def test_every_setting_has_help_and_every_limit_is_a_setting():
    names = {f.name for f in dataclasses.fields(ServeSettings)}
    assert set(HELP) == names
    assert set(LIMIT_NAMES) <= names


def test_composed_config_defaults_are_the_dataclass_defaults():
    cfg = compose("infer", ["task=serve"])
    assert ServeSettings.from_mapping(cfg) == ServeSettings()
    options = RayOptions.from_mapping(cfg.ray)
    assert options == RayOptions()
    serve_yaml = (ROOT / "src" / "speechlm" / "configs" / "task" / "serve.yaml").read_text()
    for name in ("queue_size:", "max_body_bytes:", "max_num_samples:", "num_cpus:", "route_prefix:"):
        assert name not in serve_yaml, f"{name} restated in serve.yaml"


def test_overrides_reach_the_parsed_objects():
    cfg = compose("infer", ["task=serve", "request_timeout_s=7", "ray.num_cpus=0.5", "log_format=json"])
    settings = ServeSettings.from_mapping(cfg)
    assert settings.request_timeout_s == 7 and settings.log_format == "json"
    assert RayOptions.from_mapping(cfg.ray).num_cpus == 0.5
