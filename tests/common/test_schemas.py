"""Specs and records reuse the parameter definitions: one field, every place it appears."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from common.errors import InvalidInputError
from common.jobs.schedules import ScheduleSpec
from common.params import DEFAULT_FORMATS, Precision, RecipeOverrides, SamplingOptions
from common.presets import DEFAULT_PRESET, PRESETS
from common.schemas import BatchSpec, ModelRecord, TrainSpec

MODEL_ID = hashlib.sha256(b"model").hexdigest()


def model_record(**fields: object) -> ModelRecord:
    recipe = PRESETS["tiny"].model_dump(exclude={"name", "description"})
    return ModelRecord.model_validate({
        **recipe, "id": MODEL_ID, "preset": "tiny", "vocab_size": 3, "chars": ["a", "b", "\n"],
        "corpus": "tiny", "corpus_sha256": "0" * 64, **fields,
    })  # fmt: skip


def test_train_spec_takes_every_override_and_only_known_presets() -> None:
    assert set(RecipeOverrides.model_fields) <= set(TrainSpec.model_fields)
    assert TrainSpec(corpus="c").preset == DEFAULT_PRESET
    with pytest.raises(ValidationError, match="unknown preset 'huge'"):
        TrainSpec(corpus="c", preset="huge")


def test_batch_and_schedule_specs_carry_every_sampling_option() -> None:
    for spec_type in (BatchSpec, ScheduleSpec):
        assert set(SamplingOptions.model_fields) <= set(spec_type.model_fields)
    batch = BatchSpec(count=1, model_id=MODEL_ID)
    schedule = ScheduleSpec(name="s", cron="* * * * *", corpus="c")
    assert batch.formats == schedule.formats == list(DEFAULT_FORMATS)
    assert batch.precision == schedule.precision == Precision.AUTO
    assert batch.seed == 0 and schedule.seed is None  # a schedule draws a seed per firing
    # The batch spec is the sampler's parameters: the same checks, the same error.
    with pytest.raises(InvalidInputError, match="temperature"):
        BatchSpec(count=1, model_id=MODEL_ID, temperature=11)
    with pytest.raises(InvalidInputError, match="max-chars"):
        ScheduleSpec(name="s", cron="* * * * *", corpus="c", max_chars=1)


def test_model_record_keeps_the_recipe_and_reads_records_with_the_unmeasured_validity() -> None:
    record = model_record(precision="mixed_bfloat16", sample_validity=None)
    assert record.precision == "mixed_bfloat16" and record.units == PRESETS["tiny"].units
    assert "sample_validity" not in record.model_dump()
    with pytest.raises(ValidationError):
        model_record(sample_validity=0.5)
