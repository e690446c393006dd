"""Specs and records reuse the parameter definitions: one field, every place it appears."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from common.errors import InvalidInputError
from common.jobs.schedules import ScheduleSpec
from common.params import (
    DEFAULT_FORMATS,
    Precision,
    RecipeOverrides,
    SamplingOptions,
    TuneOptions,
)
from common.presets import DEFAULT_PRESET, PRESETS
from common.schemas import BatchRecord, BatchSpec, ModelRecord, TrainSpec

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
    assert batch.formats == schedule.formats == DEFAULT_FORMATS
    assert batch.precision == schedule.precision == Precision.AUTO
    assert batch.seed == 0 and schedule.seed is None  # a schedule draws a seed per firing
    # The batch spec is the sampler's parameters: the same checks, the same error.
    with pytest.raises(InvalidInputError, match="temperature"):
        BatchSpec(count=1, model_id=MODEL_ID, temperature=11)
    with pytest.raises(InvalidInputError, match="max-chars"):
        ScheduleSpec(name="s", cron="* * * * *", corpus="c", max_chars=1)


def test_batch_and_schedule_specs_share_the_gate_and_output_fields_with_one_default() -> None:
    for spec_type in (BatchSpec, ScheduleSpec):
        assert set(TuneOptions.model_fields) <= set(spec_type.model_fields)
        for name, field in TuneOptions.model_fields.items():
            assert spec_type.model_fields[name].default == field.default, name
    batch = BatchSpec(count=1, model_id=MODEL_ID)
    schedule = ScheduleSpec(name="s", cron="* * * * *", corpus="c")
    assert batch.valid_only is schedule.valid_only is True  # as submit-batch and schedule add


def test_formats_are_validated_and_canonical_in_every_spec() -> None:
    batch = BatchSpec.model_validate(
        {"count": 1, "model_id": MODEL_ID, "formats": ["OGG", "mid", "ogg"]}
    )
    schedule = ScheduleSpec(name="s", cron="* * * * *", corpus="c", formats=("svg",))
    assert batch.formats == ("abc", "mid", "ogg") and schedule.formats == ("abc", "svg")
    with pytest.raises(InvalidInputError, match=r"unknown output format.*'aiff'.*choose from"):
        BatchSpec(count=1, model_id=MODEL_ID, formats=("mid", "aiff"))
    with pytest.raises(InvalidInputError, match="'aiff'"):
        ScheduleSpec(name="s", cron="* * * * *", corpus="c", formats=("aiff",))
    with pytest.raises(ValidationError):
        BatchSpec.model_validate({"count": 1, "model_id": MODEL_ID, "formats": 3})


#: A batch record as written before the formats were a validated type and the gate's fields a
#: shared model (JSON as Redis and local records hold it, manifests embed it): it must still load.
OLD_BATCH = {
    "count": 20, "model_id": MODEL_ID, "temperature": 0.9, "top_k": 0, "max_chars": 1500,
    "bar_tracker": True, "form": True, "precision": "auto", "seed": 7, "primer": "X:",
    "primers": None, "primed_by": None, "valid_only": False, "max_tries": 5,
    "near_copy_threshold": 0.5, "formats": ["abc", "mid", "wav", "ogg"], "audio": "standard",
    "instrument": "piano", "chunk_size": 256,
}  # fmt: skip
OLD_SCHEDULE = {
    "name": "nightly", "cron": "0 3 * * *", "corpus": "oneills", "per_tune": 1,
    "model": "latest", "retrain_if_changed": False, "seed": None, "valid_only": True,
    "max_tries": 5, "formats": ["abc", "mid"], "audio": "standard", "instrument": "piano",
    "temperature": 1.0, "top_k": 0, "max_chars": 1500, "bar_tracker": True, "form": True,
    "precision": "auto",
}  # fmt: skip


def test_old_records_load_and_write_the_same_json_shape() -> None:
    batch = BatchRecord.model_validate_json(
        json.dumps({"id": "b20260101-000000-abcdef", "spec": OLD_BATCH})
    )
    assert batch.spec.formats == ("abc", "mid", "wav", "ogg") and batch.spec.valid_only is False
    assert json.loads(batch.spec.model_dump_json()) == OLD_BATCH  # a list again on the wire
    schedule = ScheduleSpec.model_validate_json(json.dumps(OLD_SCHEDULE))
    assert schedule.formats == ("abc", "mid") and schedule.near_copy_threshold == 0.5
    assert json.loads(schedule.model_dump_json())["formats"] == ["abc", "mid"]


def test_model_record_keeps_the_recipe_and_reads_records_with_the_unmeasured_validity() -> None:
    record = model_record(precision="mixed_bfloat16", sample_validity=None)
    assert record.precision == "mixed_bfloat16" and record.units == PRESETS["tiny"].units
    assert "sample_validity" not in record.model_dump()
    with pytest.raises(ValidationError):
        model_record(sample_validity=0.5)
