"""One definition of each parameter: recipes, overrides, sampling options, precision, formats."""

from __future__ import annotations

import math
from typing import get_args

import pytest
from pydantic import ValidationError

from common.errors import InvalidInputError
from common.params import (
    ARCHITECTURE_FIELDS,
    DEFAULT_FORMATS,
    FORMATS,
    MAX_CHARS_MAX,
    TEMPERATURE_MAX,
    Precision,
    Recipe,
    RecipeOverrides,
    SamplerPrecision,
    SamplingOptions,
    SamplingParams,
    TrainingPolicy,
    TrainOn,
    recipe_overrides,
)
from common.presets import PRESETS


def test_every_recipe_field_but_the_architecture_can_be_overridden_with_the_same_rules() -> None:
    overridable = set(Recipe.model_fields) - ARCHITECTURE_FIELDS
    assert set(RecipeOverrides.model_fields) == overridable
    recipe = Recipe.model_json_schema()["properties"]
    overrides = RecipeOverrides.model_json_schema()["properties"]
    for name in overridable:
        # The override is the recipe's field (type, bounds, description) or None.
        assert overrides[name]["default"] is None, name
        field = {k: v for k, v in recipe[name].items() if k not in ("default", "title")}
        assert overrides[name]["anyOf"] == [field, {"type": "null"}], name


def test_overrides_replace_only_what_they_set() -> None:
    tiny = PRESETS["tiny"]
    spec = RecipeOverrides(epochs=9, train_on=TrainOn.TUNES)
    assert spec.overrides() == {"epochs": 9, "train_on": TrainOn.TUNES}
    resolved = tiny.model_copy(update=spec.overrides())
    assert (resolved.epochs, resolved.train_on, resolved.units) == (9, TrainOn.TUNES, tiny.units)
    assert RecipeOverrides().overrides() == {}
    # An override of every field reproduces the recipe.
    assert RecipeOverrides(**recipe_overrides(tiny)).overrides() == recipe_overrides(tiny)


def test_recipe_constraints_hold_for_overrides_too() -> None:
    with pytest.raises(ValidationError):
        RecipeOverrides(epochs=0)
    with pytest.raises(ValidationError):
        RecipeOverrides(window_fraction=1.5)
    with pytest.raises(ValidationError):
        Recipe(**{**PRESETS["tiny"].model_dump(include=set(Recipe.model_fields)), "epochs": 0})


def test_precision_values_are_defined_once_and_recorded_as_strings() -> None:
    assert [p.value for p in Precision] == ["auto", "float32", "bfloat16", "mixed_float16"]
    assert set(get_args(SamplerPrecision)) == {p.value for p in Precision} - {"auto"}
    # A recipe takes a request or the Keras policy a model record keeps; JSON holds strings.
    for value in [*Precision, *get_args(TrainingPolicy)]:
        overrides = RecipeOverrides(precision=value)
        assert overrides.precision == value
        assert f'"precision":"{value}"' in overrides.model_dump_json()
    with pytest.raises(ValidationError):
        RecipeOverrides(precision="float64")  # type: ignore[arg-type]


def test_sampling_options_check_their_ranges_with_our_error() -> None:
    params = SamplingParams(temperature=0.5, top_k=3, seed=7, max_chars=80)
    assert (params.precision, params.bar_tracker, params.form) == (Precision.AUTO, True, True)
    off = SamplingParams(form=False).model_dump_json()
    assert SamplingParams.model_validate_json(off).form is False
    for bad in ({"temperature": -1}, {"temperature": math.nan},
                {"temperature": TEMPERATURE_MAX + 1}, {"top_k": -1}, {"max_chars": 2},
                {"max_chars": MAX_CHARS_MAX + 1}, {"seed": -1}):  # fmt: skip
        with pytest.raises(InvalidInputError, match=next(iter(bad)).replace("_", "-")):
            SamplingParams(**bad)
    with pytest.raises(ValidationError):
        SamplingParams(temprature=1.0)  # type: ignore[call-arg]
    assert set(SamplingParams.model_fields) == set(SamplingOptions.model_fields) | {"seed"}


def test_default_formats_are_formats() -> None:
    assert set(DEFAULT_FORMATS) <= set(FORMATS) and FORMATS[0] == DEFAULT_FORMATS[0] == "abc"
