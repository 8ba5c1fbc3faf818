"""RunConfig: JSON round trip and one clear message per invalid value."""

import math

import pytest

from tl_core.config import RunConfig


def test_json_round_trip_preserves_every_field():
    cfg = RunConfig(name="x", seed=3, device="cpu")
    cfg.model.freeze = 2
    cfg.optim.lr = 0.003
    cfg.method.name = "finetune"
    back = RunConfig.from_json(cfg.to_json())
    assert back == cfg
    assert back.to_json() == cfg.to_json()


def test_defaults_are_valid():
    assert RunConfig().validate() == []


@pytest.mark.parametrize("field,value,fragment", [
    ("lr", 0.0, "optim.lr"), ("lr", -1.0, "optim.lr"), ("lr", math.nan, "optim.lr"),
    ("lr", 1e6, "far too large"), ("epochs", 0, "optim.epochs"), ("batch_size", 0, "optim.batch_size"),
])
def test_invalid_optim_values_are_explained(field, value, fragment):
    cfg = RunConfig()
    setattr(cfg.optim, field, value)
    problems = cfg.validate()
    assert any(fragment in p for p in problems), problems


def test_negative_freeze_and_unknown_choices():
    cfg = RunConfig()
    cfg.model.freeze = -1
    cfg.method.name = "magic"
    cfg.device = "tpu"
    text = " ".join(cfg.validate())
    assert "model.freeze" in text and "method.name" in text and "device" in text


def test_folder_needs_a_path():
    cfg = RunConfig()
    cfg.data.source = "folder"
    assert any("data.source_path" in p for p in cfg.validate())


def test_unknown_keys_are_refused_by_name():
    with pytest.raises(ValueError, match="learning_rate"):
        RunConfig.from_dict({"optim": {"learning_rate": 0.1}})


def test_label_names_the_method():
    cfg = RunConfig()
    assert cfg.label().startswith("DANN")
    cfg.method.name = "finetune"
    assert cfg.label().startswith("Source only")
    cfg.method.train_on = "target"
    assert cfg.label().startswith("Target supervised")


def test_configs_stored_before_method_params_still_load():
    """Runs stored before methods had ``params`` kept DANN's settings flat in ``method``, whatever the method."""
    flat = {"lambda_max": 0.5, "lambda_schedule": "warmup", "gamma": 10.0, "source_warmup": 0.2,
            "disc_hidden": 64, "disc_layers": 2}
    old_dann = RunConfig.from_dict({"method": {"name": "dann", "train_on": "source", **flat}})
    assert old_dann.method.params == flat and old_dann.validate() == []
    old_finetune = RunConfig.from_dict({"method": {"name": "finetune", "train_on": "target", **flat}})
    assert old_finetune.method.params == {} and old_finetune.labelled_domain() == "target"
    with pytest.raises(ValueError, match="unknown settings"):
        RunConfig.from_dict({"method": {"name": "dann", "nonsense": 1}})
