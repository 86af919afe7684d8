"""genoseq pretrain end to end on the bundled lambda genome: outputs, exact resume, CLI."""

import json

import pytest
import torch
import yaml

from genoseq.cli import main
from genoseq.models import GenoSeqLM
from genoseq.pipelines.pretrain import pretrain

TINY = dict(
    model={"d_model": 32, "pattern": "HA", "n_heads": 2, "hyena_filter_dim": 16},
    window={"length": 128, "batch_size": 4, "windows_per_epoch": 48, "max_val_windows": 8},
    optim={"warmup_steps": 5, "total_steps": 20},
)


def assert_same_weights(model_a, model_b) -> GenoSeqLM:
    """Two released models hold bit-identical weights; the first, loaded."""
    a, b = GenoSeqLM.from_pretrained(model_a), GenoSeqLM.from_pretrained(model_b)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
    return a


def _trainer(max_steps):
    return {"max_steps": max_steps, "val_check_interval": 7, "enable_progress_bar": False}


def test_pretrain_writes_a_complete_run(tmp_path):
    metrics = pretrain(out=str(tmp_path / "run"), trainer=_trainer(20), **TINY)
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.csv", "metrics.json", "training_curve.png", "checkpoints/last.ckpt",
                 "model/config.json", "model/tokenizer.json", "model/model.safetensors"):
        assert (run / name).exists(), name
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["steps"] == 20 == metrics["steps"]
    assert saved["train_tokens"] == 20 * 4 * 128
    assert 0 < saved["final_val_bits_per_base"] < 4
    # the config file is a valid --config for the same job
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["pattern"] == "HA" and config["window"]["length"] == 128
    model = GenoSeqLM.from_pretrained(run / "model")
    logits = model(torch.randint(5, 9, (1, 64)))
    assert torch.isfinite(logits).all()


def test_resume_continues_exactly(tmp_path):
    """14 steps, then --resume to 20 (mid-epoch) gives the same weights as 20 steps straight."""
    pretrain(out=str(tmp_path / "straight"), trainer=_trainer(20), **TINY)
    pretrain(out=str(tmp_path / "resumed"), trainer=_trainer(14), **TINY)
    pretrain(out=str(tmp_path / "resumed"), trainer=_trainer(20), resume=True, **TINY)
    assert_same_weights(tmp_path / "straight" / "model", tmp_path / "resumed" / "model")


def test_a_run_stopped_between_checkpoints_resumes_where_it_stopped(tmp_path, monkeypatch):
    """A run its max_time guard stops at step 10 (checkpoints every 7 steps) keeps the state of
    step 10, and --resume from there to 20 gives the weights of 20 steps straight."""
    from lightning.pytorch.callbacks import Callback

    import genoseq.pipelines.pretrain as pretrain_module

    class StopAt10(Callback):  # what Lightning's Timer does when max_time is up
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 10:
                trainer.should_stop = True

    pretrain(out=str(tmp_path / "straight"), trainer=_trainer(20), **TINY)
    make_trainer = pretrain_module.make_trainer
    with monkeypatch.context() as patch:
        patch.setattr(pretrain_module, "make_trainer",
                      lambda *a, callbacks=(), **k: make_trainer(*a, callbacks=[*callbacks, StopAt10()], **k))
        assert pretrain(out=str(tmp_path / "resumed"), trainer=_trainer(20), **TINY)["steps"] == 10
    state = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 10
    pretrain(out=str(tmp_path / "resumed"), trainer=_trainer(20), resume=True, **TINY)
    assert_same_weights(tmp_path / "straight" / "model", tmp_path / "resumed" / "model")


def test_curriculum_resume_continues_exactly(tmp_path):
    """With length buckets, 14 steps then --resume to 20 (mid-epoch and mid-curriculum: 8 batches
    an epoch, 16 curriculum steps) gives the same weights as 20 steps straight; every step counts
    tokens_per_batch tokens and the released model records the longest bucket as its window length."""
    curriculum = {**TINY, "window": {**TINY["window"], "buckets": [32, 64, 128], "tokens_per_batch": 256,
                                     "windows_per_epoch": 16, "curriculum_steps": 16}}
    straight = pretrain(out=str(tmp_path / "straight"), trainer=_trainer(20), **curriculum)
    pretrain(out=str(tmp_path / "resumed"), trainer=_trainer(14), **curriculum)
    pretrain(out=str(tmp_path / "resumed"), trainer=_trainer(20), resume=True, **curriculum)
    a = assert_same_weights(tmp_path / "straight" / "model", tmp_path / "resumed" / "model")
    assert straight["train_tokens"] == 20 * 256
    assert a.training_config.window_length == 128


def test_a_moved_run_resumes_from_its_newest_checkpoint(tmp_path, recwarn):
    """A run folder copied elsewhere and resumed twice keeps one last.ckpt, always the newest state,
    without Lightning's warnings that do not apply (the DataModules restore their own position)."""
    import shutil

    pretrain(out=str(tmp_path / "scratch"), trainer=_trainer(7), **TINY)
    shutil.copytree(tmp_path / "scratch", tmp_path / "moved")
    for steps in (14, 21):
        pretrain(out=str(tmp_path / "moved"), trainer=_trainer(steps), resume=True, **TINY)
        assert sorted(p.name for p in (tmp_path / "moved" / "checkpoints").iterdir()) == ["last.ckpt"]
        state = torch.load(tmp_path / "moved" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        assert state["global_step"] == steps
    assert json.loads((tmp_path / "moved" / "metrics.json").read_text())["steps"] == 21
    noise = [str(w.message) for w in recwarn if "not resumable" in str(w.message) or "dirpath" in str(w.message)]
    assert not noise


def test_refuses_to_clobber_and_to_resume_nothing(tmp_path):
    pretrain(out=str(tmp_path / "run"), trainer=_trainer(2), **TINY)
    with pytest.raises(FileExistsError, match="--resume"):
        pretrain(out=str(tmp_path / "run"), trainer=_trainer(2), **TINY)
    with pytest.raises(FileNotFoundError):
        pretrain(out=str(tmp_path / "fresh"), resume=True, trainer=_trainer(2), **TINY)


def test_cli_with_config_file_and_overrides(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "trainer": _trainer(50)}))
    out = tmp_path / "cli"
    assert main(["pretrain", "--config", str(cfg), "--out", str(out), "--trainer.max_steps", "3"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3
    assert "validation bits/base" in capsys.readouterr().out


def test_cli_bad_genome_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.fa"
    bad.write_text(">x\nACGTXACGT\n")
    assert main(["pretrain", "--data", str(bad), "--out", str(tmp_path / "r")] ) == 2
    err = capsys.readouterr().err
    assert "bad.fa" in err and "'X'" in err


def test_window_longer_than_the_genome_is_an_input_error_naming_both(tmp_path):
    from genoseq.errors import InputError

    with pytest.raises(InputError, match=r"no training windows of 65536 bases fit in lambda_phage\.fa: .* 46077 bases"):
        pretrain(out=str(tmp_path / "run"), trainer=_trainer(2), model=TINY["model"],
                 window={**TINY["window"], "length": 65536, "val_fraction": 0.05})


def test_tensorboard_logger_writes_events_beside_the_csv(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    pretrain(out=str(tmp_path / "run"), trainer=_trainer(14), logger="tensorboard", **TINY)
    run = tmp_path / "run"
    assert (run / "metrics.csv").exists() and (run / "training_curve.png").exists()
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    tags = events.Tags()["scalars"]
    assert "train/loss" in tags and "val/bits_per_base" in tags
    assert [e.step for e in events.Scalars("val/bits_per_base")][-1] == 14  # the final validation


def test_logger_choice_and_missing_tensorboard_are_input_errors(tmp_path, monkeypatch, capsys):
    import importlib.util

    from genoseq.errors import InputError
    from genoseq.runtime import training_loggers

    with pytest.raises(InputError, match="csv or tensorboard"):
        training_loggers("wandb", tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if "tensorboard" in name else real(name, *a))
    with pytest.raises(InputError, match=r"pip install 'genoseq\[tensorboard\]'"):
        training_loggers("tensorboard", tmp_path)
    assert main(["pretrain", "--out", str(tmp_path / "run"), "--logger", "tensorboard",
                 "--trainer.max_steps", "2"]) == 2
    assert "genoseq[tensorboard]" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model").exists()


@pytest.mark.parametrize("name", ["demo.yaml", "recipe_cpu_small.yaml", "recipe_long_cpu.yaml"])
def test_shipped_configs_parse_and_build_their_model(name, capsys):
    """Every config in configs/ is accepted by genoseq pretrain and its model section passes
    ModelConfig's checks (a field renamed or an option combination refused would show here,
    not an hour into a user's run)."""
    from pathlib import Path

    from genoseq.models import ModelConfig

    path = Path(__file__).resolve().parents[1] / "configs" / name
    with pytest.raises(SystemExit) as done:  # --print_config prints and exits
        main(["pretrain", "--config", str(path), "--data", "genome.fa", "--out", "run", "--print_config"])
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    ModelConfig(**{k: v for k, v in printed["model"].items() if v is not None})
