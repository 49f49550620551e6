from __future__ import annotations

from pathlib import Path

import pytest

from cyclesr_dist.config import ConfigError, config_to_dict, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_production_config_holds_the_reference_hyper_parameters_and_the_benchmarked_recipe():
    c = load_config(ROOT / "configs" / "cyclesr.yaml")
    assert (c.loss.lambda_cycle, c.loss.lambda_identity, c.loss.pool_size) == (10.0, 0.5, 50)
    assert (c.loss.sr_lam, c.loss.cycle_sr_lam, c.optim.grad_clip) == (1000.0, 1000.0, 50.0)
    # sr_lr: 1e-3, not vega's 1e-4 (measured at these widths: docs/training.md, "Fidelity to vega")
    assert (c.optim.cyc_lr, c.optim.sr_lr, c.optim.n_epoch, c.optim.n_epoch_decay) == (2e-4, 1e-3, 100, 100)
    assert (c.data.hr_patch, c.data.scale, c.data.batch_size) == (480, 4, 64)
    assert (c.stages.sr_pretrain_epoch, c.stages.joint_epoch, c.train.val_every_epochs) == (6, 7, 5)
    assert c.model.sr.name == "vdsr_lr" and c.model.generator.name == "resnet"
    g, d, sr = c.model.generator.args, c.model.discriminator.args, c.model.sr.args
    assert (g["ngf"], g["n_blocks"], d["ndf"], d["n_layers"], sr["nf"], sr["nb"]) == (64, 9, 64, 3, 64, 20)
    # the options the quality benchmark's CycleSR rows run with (docs/history/quality-four-operators.md)
    assert (g["n_downsampling"], g["residual"], g["noise_channels"], g["noise_at"]) == (0, True, 3, "tail")
    assert (g["jpeg_quality"], d["high_pass"], sr["bicubic_skip"], c.loss.content_low_pass) == ("auto", 1.0, True, 1.0)
    assert g["input_blur"] == "auto"


def test_every_shipped_config_loads_and_builds_its_networks(demo_data):
    from cyclesr_dist.cyclesr import build_networks
    from cyclesr_dist.cyclesr.measured import with_measured_recipe

    paths = sorted((ROOT / "configs").glob("*.yaml"))
    assert {p.name for p in paths} >= {"cyclesr.yaml", "demo.yaml", "vega.yaml"}
    for path in paths:  # `jpeg_quality` / `input_blur: auto` measured on the demo photos, as `cyclesr train` would
        config = with_measured_recipe(load_config(path, ["data.kind=folder", f"data.root={demo_data}"]))
        nets = build_networks(config.model)
        assert set(nets) == {"gen_clean_to_real", "gen_real_to_clean", "disc_clean", "disc_real", "sr"}, path


def test_vega_config_is_the_reference_where_the_code_can_be():
    c = load_config(ROOT / "configs" / "vega.yaml")
    assert c.model.sr.args["norm"] == "batch" and c.model.generator.args["n_downsampling"] == 2
    assert (c.train.mixed_precision, c.train.batched_calls, c.train.val_max_shift) == ("no", "auto", 10)
    assert (c.data.hr_augment, c.data.lr_augment) == ("flips", "none")
    assert (c.loss.lambda_cycle, c.loss.lambda_identity, c.loss.sr_lam, c.loss.cycle_sr_lam) == (10, 0.5, 1000, 1000)
    assert c.loss.sr_pretrain_lam == 1 and c.optim.clip_per_network
    assert c.model.discriminator.args["head_channels"] == c.model.discriminator.args["ndf"]
    assert c.model.generator.args["block_padding"] == "zero"
    assert c.data.steps_per_epoch == 0  # one pass over the HR sub-images
    assert c.data.value_range == (0.0, 1.0)  # vega's to_tensor


def test_cross_key_checks():
    with pytest.raises(ConfigError, match="data.hr_patch=30 must be a positive multiple of data.scale=4"):
        load_config(None, ["data.hr_patch=30"])
    with pytest.raises(ConfigError, match="checkpoint.keep=0 must be at least 1"):
        load_config(None, ["checkpoint.keep=0"])
    with pytest.raises(ConfigError, match="stages.joint_epoch=2 comes before stages.sr_pretrain_epoch=6"):
        load_config(None, ["stages.joint_epoch=2"])
    with pytest.raises(ConfigError, match=r"data.value_range=\[1.0, 0.0\] must be \[low, high\] with low < high"):
        load_config(None, ["data.value_range=[1, 0]"])


def test_overrides_are_typed_and_nested():
    c = load_config(ROOT / "configs" / "demo.yaml", ["optim.cyc_lr=1e-3", "model.sr.args.nb=2", "seed=7"])
    assert c.optim.cyc_lr == 1e-3 and c.seed == 7
    assert c.model.sr.args["nb"] == 2 and c.model.sr.args["nf"] == 32  # merged into the file's args
    assert config_to_dict(c)["optim"]["betas"] == [0.5, 0.999]


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.cyc_lrr=1", r"unknown config key 'optim.cyc_lrr'; valid keys here: cyc_lr, sr_lr"),
        ("nope=1", r"unknown config key 'nope'; valid keys here: output_dir, seed, max_steps"),
        ("seed=1.5", r"seed: expected an integer, got 1.5"),
        ("optim.cyc_lr=fast", r"optim.cyc_lr: expected a number, got 'fast'"),
        ("data.kind=hdf5", r"data.kind: 'hdf5' is not one of \['folder', 'webdataset'\]"),
        ("optim.betas=[0.5]", r"optim.betas: expected a list of 2 values"),
        ("train.deterministic=maybe", r"train.deterministic: expected true/false"),
        ("seed", r"must look like key.sub=value"),
    ],
)
def test_bad_keys_and_types_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "configs" / "demo.yaml", [override])


def test_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss:\n  lambda_cycl: 10\n")
    with pytest.raises(ConfigError, match="unknown config key 'loss.lambda_cycl'"):
        load_config(bad)


def test_the_collective_timeout_reaches_the_process_group_even_at_accelerates_default():
    """Accelerate passes on only the fields of its handler that differ from its defaults: 600 s (its default) must
    reach torch too, or gloo would wait 30 minutes for a dead peer."""
    from cyclesr_dist.engine.backends.base import process_group_kwargs

    for seconds in (600, 8):
        kwargs = process_group_kwargs(load_config(None, [f"dist.timeout_s={seconds}"]), gloo=True).to_kwargs()
        assert kwargs["backend"] == "gloo" and abs(kwargs["timeout"].total_seconds() - seconds) < 0.01
    with pytest.raises(ConfigError, match="dist.timeout_s=0.0 must be a positive number of seconds"):
        load_config(None, ["dist.timeout_s=0"])
