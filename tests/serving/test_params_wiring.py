"""Issue 10: the API schemas derive from speechlm.params, and a request reaches the pipeline as one
validated SynthesisParams (``params=``)."""

from __future__ import annotations

import pytest

from speechlm.errors import InputError
from speechlm.params import LIMITS, PARAMS, SynthesisParams
from speechlm.serving import ServeSettings
from speechlm.serving.schemas import SAMPLING_FIELDS, InvokeRequest
from speechlm.serving.synthesis import call_pipeline, speakable_text


@pytest.mark.parametrize("name", SAMPLING_FIELDS)
def test_invoke_schema_takes_default_range_and_help_from_params(name):
    prop = InvokeRequest.model_json_schema()["properties"][name]
    p = PARAMS[name]
    assert InvokeRequest.model_fields[name].default == p.default
    assert p.help in prop["description"]
    bounds = prop.get("anyOf", [prop])[0]
    if p.lo is not None:
        assert bounds["minimum"] == p.lo
    if p.hi is not None:
        assert bounds["maximum"] == p.hi


def test_api_seed_is_random_by_default_within_the_params_range():
    prop = InvokeRequest.model_json_schema()["properties"]["seed"]
    assert InvokeRequest.model_fields["seed"].default is None
    assert prop["anyOf"][0]["maximum"] == PARAMS["seed"].hi


def test_settings_text_limit_is_the_params_limit():
    assert ServeSettings().max_text_length == LIMITS["max_text_length"].default
    assert ServeSettings(max_text_length=0).max_text_length == 0  # 0 = no limit
    assert speakable_text("x" * 50_000, "text", 0) == "x" * 50_000
    assert not hasattr(ServeSettings(), "references_path")


class _NewPipeline:
    def synthesize(self, text, *, params=None, reference=None, should_stop=None, **overrides):
        return ("params", text, params, overrides)


def test_one_parameter_object_reaches_the_pipeline():
    params = SynthesisParams.make(top_p=0.5, num_samples=2, seed=3)
    kind, text, got, overrides = call_pipeline(_NewPipeline().synthesize, "hi", params, reference=None)
    assert kind == "params" and got is params and overrides == {}


def test_out_of_range_is_one_input_error_naming_the_field():
    with pytest.raises(InputError) as e:
        SynthesisParams().replace(top_p=0.01)
    assert e.value.field == "top_p"
