"""Packed variable-length batches: no sequence crosses a boundary, nothing is lost or repeated,
and a packed batch gives the model the same per-sequence losses as the sequences one by one."""

import gzip

import lightning as L
import numpy as np
import pytest
import torch

from genoseq.datamodules import PackedSequenceDataModule, pack_rows
from genoseq.models import GenoSeqLM, ModelConfig
from genoseq.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def regions_tsv(data_dir, tmp_path_factory):
    """240 real labelled regions with their lengths varied (cut at random ends): 60-200 bp."""
    rng = np.random.default_rng(0)
    with gzip.open(data_dir / "ecoli_regions.tsv.gz", "rt") as fh:
        lines = fh.read().splitlines()
    path = tmp_path_factory.mktemp("packed") / "regions.tsv"
    rows = [line.split("\t") for line in lines[1:241]]
    path.write_text("sequence\tlabel\n" + "".join(f"{s[: rng.integers(60, 201)]}\t{l}\n" for s, l in rows))
    return path


def test_pack_rows_fills_in_order():
    assert pack_rows([3, 3, 4, 2, 5], 6) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError):
        pack_rows([7], 6)


def test_every_sequence_once_per_epoch_and_deterministic(regions_tsv):
    dm = PackedSequenceDataModule(regions_tsv, pack_length=512, rows_per_batch=2, val_fraction=0.1, seed=3)
    dm.setup()
    n_train = len(dm.datasets["train"])
    assert n_train == 216 and len(dm.datasets["val"]) == 24
    batches = list(dm.train_dataloader())
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    assert tokens == sum(len(x) for x in dm.datasets["train"].ids)  # nothing lost, nothing repeated
    rows = sum(b["input_ids"].shape[0] for b in batches)
    assert rows * 512 - tokens < rows * 200  # only row tails are padding
    segments = sum(int((b["seq_idx"] * b["attention_mask"]).amax(1).add(1).sum()) for b in batches)
    assert segments == n_train
    again = list(PackedSequenceDataModule(regions_tsv, pack_length=512, rows_per_batch=2, val_fraction=0.1, seed=3).train_dataloader())
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, again))


def test_packed_losses_equal_one_by_one(regions_tsv):
    torch.manual_seed(0)
    model = GenoSeqLM(ModelConfig(d_model=32, pattern="HMA", n_heads=2, d_state=16, headdim=16, hyena_filter_dim=16)).eval()
    dm = PackedSequenceDataModule(regions_tsv, pack_length=400, rows_per_batch=2, val_fraction=0.0, seed=1)
    batch = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        loss, n = model.lm_loss(batch)
        total = 0.0
        for r in range(batch["input_ids"].shape[0]):
            row, seg, mask = batch["input_ids"][r], batch["seq_idx"][r], batch["attention_mask"][r]
            for s in seg[mask].unique():
                alone = row[(seg == s) & mask][None]
                l1, n1 = model.lm_loss({"input_ids": alone})
                total += float(l1) * int(n1)
    assert torch.isclose(loss * n, torch.tensor(total, dtype=loss.dtype), rtol=1e-4)


def test_condition_tokens_lead_each_sequence_on_both_strands(regions_tsv):
    tok = Tokenizer()
    dm = PackedSequenceDataModule(regions_tsv, pack_length=256, rows_per_batch=4, condition_column="label",
                                  tokenizer=tok, rc_augment=True, val_fraction=0.0, seed=0)
    dm.setup()
    assert sorted(tok.condition_labels) == ["coding", "downstream", "upstream"]
    batch = next(iter(dm.train_dataloader()))
    ids, seg, mask = batch["input_ids"], batch["seq_idx"], batch["attention_mask"]
    starts = mask & torch.cat([torch.ones_like(seg[:, :1], dtype=torch.bool), seg[:, 1:] != seg[:, :-1]], 1)
    cond = set(tok.condition_id(label) for label in tok.condition_labels)
    assert set(ids[starts].tolist()) <= cond  # every sequence starts with its condition token
    assert int((ids[mask] >= 10).sum()) == int(starts.sum())  # and only there


def test_trains_with_lightning(regions_tsv, tmp_path):
    dm = PackedSequenceDataModule(regions_tsv, pack_length=256, rows_per_batch=4, val_fraction=0.1)
    model = GenoSeqLM(ModelConfig(d_model=32, pattern="MA", n_heads=2, d_state=16, headdim=16), {"warmup_steps": 1, "total_steps": 4})
    trainer = L.Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        default_root_dir=tmp_path, limit_val_batches=2, val_check_interval=4)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 4 and np.isfinite(float(trainer.callback_metrics["val/loss"]))


def test_each_epoch_of_a_lightning_fit_is_packed_anew(regions_tsv, tmp_path):
    class Seen(L.Callback):
        def __init__(self):
            self.by_epoch = {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.by_epoch.setdefault(trainer.current_epoch, []).append(batch["input_ids"].clone())

    dm = PackedSequenceDataModule(regions_tsv, pack_length=256, rows_per_batch=4, val_fraction=0.1, rc_augment=True)
    model = GenoSeqLM(ModelConfig(d_model=16, pattern="A", n_heads=2), {"warmup_steps": 1, "total_steps": 6})
    seen = Seen()
    trainer = L.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, callbacks=[seen])
    trainer.fit(model, datamodule=dm)
    assert sorted(seen.by_epoch) == [0, 1] and all(len(b) == 3 for b in seen.by_epoch.values())
    assert not torch.equal(seen.by_epoch[0][0], seen.by_epoch[1][0])  # shuffled (seed + epoch), not replayed
    # and epoch 1 is exactly the module's own plan for epoch 1
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(1)
    for got, want in zip(seen.by_epoch[1], loader):
        assert torch.equal(got, want["input_ids"])
