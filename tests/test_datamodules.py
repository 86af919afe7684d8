"""DataModules: deterministic epochs, disjoint train/val windows, workers, DDP shards, labelled batches."""

from __future__ import annotations

from collections import Counter

import lightning as L
import numpy as np
import pytest
import torch

from genoseq import InputError, Tokenizer
from genoseq.datamodules import (
    GenomeWindowDataModule,
    LabelledSequenceDataModule,
    PlanSampler,
    count_n,
    split_regions,
)
from genoseq.fasta import iter_fasta
from genoseq.genome import open_genome
from genoseq.pipelines.prepare import prepare
from genoseq.tables import read_labelled

LAMBDA = "NC_001416.1"
ECOLI = "K-12-MG1655"


@pytest.fixture(scope="module")
def lambda_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("dm") / "lambda.h5"
    prepare(out=str(out), progress=False)
    return out


def batches(loader, limit=None):
    out = []
    for i, batch in enumerate(loader):
        if limit is not None and i == limit:
            break
        out.append(batch["input_ids"].clone())
    return out


def window_rows(dm, split="train", epoch=0):
    planner = dm._train_planner if split == "train" else dm._val_planner
    return planner(epoch)


def test_same_seed_same_batches_other_seed_or_epoch_different(ecoli_fasta):
    def run(seed, epoch=0):
        dm = GenomeWindowDataModule(str(ecoli_fasta), window_length=512, sampling="random",
                                    windows_per_epoch=64, rc_augment=True, batch_size=8, seed=seed)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return batches(loader)

    first, again = run(seed=3), run(seed=3)
    assert len(first) == 8 and first[0].shape == (8, 512) and first[0].dtype == torch.int64
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    other_seed, next_epoch = run(seed=4), run(seed=3, epoch=1)
    assert not any(torch.equal(a, b) for a, b in zip(first, other_seed))
    assert not any(torch.equal(a, b) for a, b in zip(first, next_epoch))
    # windows are real genome: only base tokens
    assert all(((b >= 5) & (b <= 9)).all() for b in first)


def test_batches_are_the_planned_windows_on_the_planned_strand(lambda_store, lambda_fasta):
    dm = GenomeWindowDataModule([str(lambda_store)], window_length=300, stride=150, rc_augment=True, batch_size=4, seed=1)
    loader = dm.train_dataloader()
    rows = window_rows(dm)
    assert set(rows[:, 2].tolist()) == {0, 1}
    fasta = open_genome(lambda_fasta)
    got = batches(loader, limit=5)
    for b, batch in enumerate(got):
        for j in range(4):
            cid, start, reverse = rows[4 * b + j]
            expected = fasta.fetch(LAMBDA, start, start + 300, "-" if reverse else "+")
            assert torch.equal(batch[j], torch.from_numpy(expected.astype(np.int64)))
    # sliding with stride 150 over 48,502 bp: every start 0, 150, ... appears once
    assert sorted(rows[:, 1].tolist()) == list(range(0, 48_502 - 300 + 1, 150))


def test_two_workers_give_the_same_batches_as_none(lambda_store):
    def run(workers):
        dm = GenomeWindowDataModule([str(lambda_store)], window_length=256, stride=64, rc_augment=True,
                                    batch_size=16, num_workers=workers, seed=11)
        return batches(dm.train_dataloader(), limit=20)

    in_process, with_workers = run(0), run(2)
    assert len(in_process) == len(with_workers) == 20
    assert all(torch.equal(a, b) for a, b in zip(in_process, with_workers))


def overlaps(a_starts, b_starts, length):
    a, b = np.sort(a_starts), np.sort(b_starts)
    # for each a-window, the nearest b-window starting at or after/before it
    idx = np.searchsorted(b, a)
    after = b[np.minimum(idx, len(b) - 1)]
    before = b[np.maximum(idx - 1, 0)]
    return bool(np.any(np.abs(after - a) < length) or np.any(np.abs(a - before) < length))


def test_held_out_fraction_gives_disjoint_train_and_val_windows(ecoli_fasta):
    dm = GenomeWindowDataModule(str(ecoli_fasta), window_length=1000, stride=100, val_fraction=0.1,
                                val_block_length=50_000, batch_size=32)
    dm.setup()
    train, val = window_rows(dm, "train")[:, 1], window_rows(dm, "val")[:, 1]
    assert len(val) > 0 and len(train) > 0
    assert not overlaps(train, val, 1000)
    held_out = sum(len(r) for r in dm.val_regions)
    assert held_out == pytest.approx(0.1 * 4_639_675, rel=0.01)
    assert all(r.end - r.start <= 5000 for r in dm.val_regions)  # spread out, not one block
    # validation batches are in order, forward strand, non-overlapping
    assert np.all(np.diff(val) >= 1000) and not window_rows(dm, "val")[:, 2].any()
    val_batches = batches(dm.val_dataloader())
    assert sum(len(b) for b in val_batches) == len(val)
    # random sampling respects the same regions
    dm_random = GenomeWindowDataModule(str(ecoli_fasta), window_length=1000, sampling="random",
                                       windows_per_epoch=5000, val_fraction=0.1, val_block_length=50_000)
    dm_random.setup()
    assert not overlaps(window_rows(dm_random, "train")[:, 1], val, 1000)


def test_whole_sources_and_contigs_held_out(lambda_store, saureus_fasta):
    sources = [str(lambda_store), str(saureus_fasta)]
    dm = GenomeWindowDataModule(sources, window_length=2048, val_sources=[str(lambda_store)], max_val_windows=10)
    dm.setup()
    assert [r.contig for r in dm.val_regions] == [LAMBDA]
    assert {dm.contig_keys[c] for c in window_rows(dm, "train")[:, 0]} == {(1, "gi|29165615|ref|NC_002745.2|")}
    assert len(window_rows(dm, "val")) == 10
    batch = next(iter(dm.val_dataloader()))["input_ids"]
    assert batch.shape == (8, 2048)
    by_name = GenomeWindowDataModule(sources, window_length=2048, val_contigs=["gi|29165615|ref|NC_002745.2|"])
    by_name.setup()
    assert [(r.source, r.contig) for r in by_name.train_regions] == [(0, LAMBDA)]
    with pytest.raises(InputError, match="chrZ"):
        GenomeWindowDataModule(sources, val_contigs=["chrZ"]).setup()


def test_windows_with_too_many_n_are_skipped(tmp_path, lambda_fasta):
    (record,) = list(iter_fasta(lambda_fasta))
    seq = record.sequence[:10_000] + "N" * 3000 + record.sequence[10_000:20_000]
    fa = tmp_path / "gappy.fa"
    fa.write_text(">gappy\n" + seq + "\n")
    dm = GenomeWindowDataModule(str(fa), window_length=1000, stride=50, max_n_fraction=0.1, shuffle=False)
    dm.setup()
    starts = window_rows(dm)[:, 1]
    n_in_window = np.array([seq[s : s + 1000].count("N") for s in starts])
    assert n_in_window.max() <= 100
    every = np.arange(0, len(seq) - 1000 + 1, 50)
    kept_expected = [s for s in every if seq[s : s + 1000].count("N") <= 100]
    assert starts.tolist() == kept_expected
    assert len(kept_expected) < len(every)
    runs = open_genome(fa).n_runs("gappy")
    assert count_n(runs, every, 1000).tolist() == [seq[s : s + 1000].count("N") for s in every]


def test_ddp_shards_are_disjoint_and_equal_sized():
    plan = np.arange(103 * 3).reshape(103, 3)
    shards = [list(PlanSampler(lambda epoch: plan, rank=r, world_size=4)) for r in range(4)]
    assert {len(s) for s in shards} == {25}
    rows = [row for s in shards for row in s]
    assert len(set(rows)) == 100 and set(rows) <= {tuple(r) for r in plan.tolist()}
    uneven = [list(PlanSampler(lambda epoch: plan, rank=r, world_size=4, drop_tail=False)) for r in range(4)]
    assert sum(len(s) for s in uneven) == 103
    with pytest.raises(ValueError):
        PlanSampler(lambda epoch: plan, rank=4, world_size=4)


class _TinyLM(L.LightningModule):
    """A real (tiny) model, to see what Lightning feeds it from the DataModule."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.head = torch.nn.Linear(4, 10)
        self.seen: list[tuple[int, torch.Tensor]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append((self.current_epoch, batch["input_ids"].clone()))
        logits = self.head(self.embed(batch["input_ids"][:, :-1]))
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 10), batch["input_ids"][:, 1:].reshape(-1))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_fit_gets_the_planned_batches_and_reshuffles_each_epoch(lambda_store, tmp_path):
    dm = GenomeWindowDataModule([str(lambda_store)], window_length=128, sampling="random",
                                windows_per_epoch=32, batch_size=8, seed=5)
    model = _TinyLM()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    epoch0 = [b for e, b in model.seen if e == 0]
    epoch1 = [b for e, b in model.seen if e == 1]
    assert len(epoch0) == len(epoch1) == 4
    expected = batches(GenomeWindowDataModule([str(lambda_store)], window_length=128, sampling="random",
                                              windows_per_epoch=32, batch_size=8, seed=5).train_dataloader())
    assert all(torch.equal(a, b) for a, b in zip(epoch0, expected))
    assert not torch.equal(torch.cat(epoch0), torch.cat(epoch1))


def test_too_short_genome_or_val_region_is_a_clear_error(lambda_fasta):
    with pytest.raises(InputError, match="no training windows"):
        GenomeWindowDataModule(str(lambda_fasta), window_length=60_000).setup()
    with pytest.raises(InputError, match="validation regions hold no window"):
        GenomeWindowDataModule(str(lambda_fasta), window_length=4096, val_fraction=0.01).setup()


def test_split_regions_cover_each_contig_exactly():
    train, val = split_regions([{"a": 250_000, "b": 1000}], val_fraction=0.2, val_block_length=100_000)
    for contig, length in [("a", 250_000), ("b", 1000)]:
        pieces = sorted((r.start, r.end) for r in train + val if r.contig == contig)
        assert pieces[0][0] == 0 and pieces[-1][1] == length
        assert all(prev[1] == nxt[0] for prev, nxt in zip(pieces, pieces[1:]))
    assert [(r.start, r.end) for r in val if r.contig == "a"] == [(80_000, 100_000), (180_000, 200_000), (240_000, 250_000)]


# ----------------------------------------------------------------------------- labelled
def test_labelled_table_stratified_split_and_batches(data_dir):
    path = data_dir / "ecoli_regions.tsv.gz"
    dm = LabelledSequenceDataModule(str(path), val_fraction=0.2, batch_size=32, rc_augment=True, seed=0)
    dm.setup()
    assert dm.classes == ["coding", "downstream", "upstream"] and dm.num_classes == 3
    rows = read_labelled(path)
    total = Counter(r.label for r in rows)
    val = Counter(dm.classes[i] for i in dm.datasets["val"].labels)
    assert all(abs(val[c] - 0.2 * total[c]) <= 1 for c in total)
    assert len(dm.datasets["train"]) + len(dm.datasets["val"]) == len(rows)

    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == (32, 200) and batch["attention_mask"].all()
    assert batch["labels"].dtype == torch.long
    tok = Tokenizer()
    by_sequence = {r.sequence: r.label for r in rows}
    rc_seen = 0
    for ids, label in zip(batch["input_ids"], batch["labels"]):
        seq = tok.decode(ids)
        if seq not in by_sequence:
            seq = tok.decode(tok.reverse_complement(ids))
            rc_seen += 1
        assert by_sequence[seq] == dm.classes[label]
    assert 0 < rc_seen < 32
    val_batch = next(iter(dm.val_dataloader()))
    assert all(tok.decode(ids) in by_sequence for ids in val_batch["input_ids"])  # no augmentation

    again = LabelledSequenceDataModule(str(path), val_fraction=0.2, batch_size=32, rc_augment=True, seed=0)
    assert torch.equal(next(iter(again.train_dataloader()))["input_ids"], batch["input_ids"])


def test_genomic_benchmarks_folder_with_padding_and_saved_classes(tmp_path, data_dir):
    rows = read_labelled(data_dir / "saureus_regions.tsv.gz")[:90]
    root = tmp_path / "gb"
    for split, part in (("train", rows[:60]), ("test", rows[60:])):
        for i, row in enumerate(part):
            folder = root / split / row.label
            folder.mkdir(parents=True, exist_ok=True)
            # different lengths so that padding shows
            (folder / f"seq{i}.txt").write_text(row.sequence[: 100 + i] + "\n")
    dm = LabelledSequenceDataModule(str(root), val_fraction=0.1, batch_size=8, padding_side="left",
                                    max_length=150, num_workers=0, seed=2)
    dm.setup()
    assert set(dm.datasets) == {"train", "val", "test"} and len(dm.datasets["test"]) == 30
    batch = next(iter(dm.test_dataloader()))
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape[1] == min(150, int(lengths.max()))
    assert (batch["input_ids"][~batch["attention_mask"]] == 0).all()
    assert batch["attention_mask"][:, -1].all()  # left padding: the real tokens are at the end
    path = dm.save_classes(tmp_path / "classes.json")
    assert path.read_text().count('"') == 2 + 2 * dm.num_classes
    restored = LabelledSequenceDataModule(str(root))
    restored.load_state_dict(dm.state_dict())
    assert restored.classes == dm.classes


def test_labels_outside_the_classes_are_rejected(tmp_path):
    train = tmp_path / "train.tsv"
    val = tmp_path / "val.tsv"
    train.write_text("sequence\tlabel\nACGT\ta\nGGCC\tb\n")
    val.write_text("sequence\tlabel\nACGT\tc\n")
    with pytest.raises(InputError, match="not among the classes") as err:
        LabelledSequenceDataModule(str(train), val=str(val)).setup()
    assert err.value.path == str(val)
