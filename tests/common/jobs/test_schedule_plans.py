"""The pure part of schedules: retraining like a model was trained."""

from __future__ import annotations

from common.jobs.schedules import retrain_spec
from common.params import RecipeOverrides, TrainOn
from tests.common.test_schemas import model_record


def test_retrain_spec_keeps_every_recipe_field_precision_included() -> None:
    model = model_record(
        precision="mixed_bfloat16", epochs=3, window_step=7, batch_size=5, learning_rate=0.004,
        window_fraction=0.5, stateful=False, train_on=TrainOn.STREAMS,
    )  # fmt: skip
    spec = retrain_spec("newcorpus", model)
    assert (spec.corpus, spec.preset) == ("newcorpus", "tiny")
    for name in RecipeOverrides.model_fields:
        assert getattr(spec, name) == getattr(model, name), name
    assert spec.precision == "mixed_bfloat16"
