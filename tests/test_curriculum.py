"""The sequence-length curriculum: one length per batch, constant tokens, short-to-long unlocking,
deterministic plans, sharding, resume position and its input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genoseq import InputError
from genoseq.datamodules import CurriculumWindowDataModule, PlanSampler, bucket_weights
from genoseq.fasta import iter_fasta
from genoseq.genome import open_genome


@pytest.fixture(scope="module")
def lambda_slice(tmp_path_factory, lambda_fasta):
    """The first 20 kb of the phage lambda genome, with a run of N in the middle."""
    (record,) = iter_fasta(lambda_fasta)
    text = record.sequence[:20_000]
    text = text[:9_000] + "N" * 1_000 + text[10_000:]
    path = tmp_path_factory.mktemp("curriculum") / "lambda_20k.fa"
    path.write_text(">slice\n" + "\n".join(text[i : i + 80] for i in range(0, len(text), 80)) + "\n")
    return path


def module(path, **options):
    settings = dict(buckets=[128, 256, 512], tokens_per_batch=1024, curriculum_steps=40, batches_per_epoch=16,
                    rc_augment=True, seed=3)
    return CurriculumWindowDataModule(str(path), **{**settings, **options})


def input_ids(loader):
    return [batch["input_ids"] for batch in loader]


def test_every_batch_is_one_bucket_length_with_the_same_tokens(lambda_slice):
    dm = module(lambda_slice, curriculum="uniform")
    batches = input_ids(dm.train_dataloader())
    assert len(batches) == 16
    assert {b.shape[1] for b in batches} == {128, 256, 512}
    for b in batches:
        assert b.dtype == torch.int64 and b.numel() == 1024 and b.shape[0] == 1024 // b.shape[1]
        assert ((b >= 5) & (b <= 9)).all()
    # each batch is the planned windows, on the planned strands, with at most 10% N
    genome = open_genome(lambda_slice)
    plan = dm._train_planner(0)
    for rows, batch in zip(plan, batches):
        for (cid, start, reverse, length), ids in zip(rows.tolist(), batch):
            expected = genome.fetch("slice", start, start + length, "-" if reverse else "+")
            assert torch.equal(ids, torch.from_numpy(expected.astype(np.int64)))
            assert (ids == 9).sum() <= 0.1 * length
    strands = np.concatenate([rows[:, 2] for rows in plan])
    assert set(strands.tolist()) == {0, 1}


def test_bucket_weights_unlock_longer_buckets_in_turn():
    expected = {0.0: [1, 0, 0, 0], 1 / 6: [1, 0.5, 0, 0], 1 / 3: [1, 1, 0, 0], 0.5: [1, 1, 0.5, 0],
                5 / 6: [1, 1, 1, 0.5], 1.0: [1, 1, 1, 1], 2.0: [1, 1, 1, 1]}
    for progress, weights in expected.items():
        np.testing.assert_allclose(bucket_weights(progress, 4), weights, atol=1e-12)
    np.testing.assert_allclose(bucket_weights(np.array([0.0, 0.4]), 4, "uniform"), np.ones((2, 4)))
    np.testing.assert_allclose(bucket_weights(0.7, 1), [1.0])


def test_short_to_long_starts_short_and_ends_mixed(lambda_slice):
    dm = module(lambda_slice, buckets=[64, 128, 256, 512], tokens_per_batch=512, curriculum_steps=60,
                batches_per_epoch=40)
    dm.setup()
    planner = dm._train_planner
    lengths = np.concatenate([[rows[0, 3] for rows in planner(epoch)] for epoch in range(4)])
    step = np.arange(len(lengths))  # batch g of the run, counted across epochs
    frontier = np.minimum(1, step / 60) * 3
    for k, length in enumerate([64, 128, 256, 512]):
        # a bucket is drawn only once the frontier has passed the bucket before it
        assert (frontier[lengths == length] > k - 1).all()
    assert (lengths[:20] == 64).sum() > 10 and lengths[0] == 64
    first_seen = [int(np.flatnonzero(lengths == length)[0]) for length in (64, 128, 256, 512)]
    assert first_seen == sorted(first_seen)
    after = lengths[60:]  # all equally likely: every bucket, the shortest still in the mix
    assert {int(n) for n in after} == {64, 128, 256, 512}
    assert (after == 64).sum() >= 10
    # the ablation mixes every length from the first batches on
    uniform = module(lambda_slice, buckets=[64, 128, 256, 512], tokens_per_batch=512, curriculum="uniform",
                     batches_per_epoch=40)
    uniform.setup()
    assert {int(rows[0, 3]) for rows in uniform._train_planner(0)[:20]} == {64, 128, 256, 512}


def test_progress_counts_optimiser_steps(lambda_slice):
    """With two batches per step (two data-parallel ranks, or gradient accumulation) the
    curriculum advances per step, not per batch."""
    dm = module(lambda_slice, curriculum_steps=8, batches_per_epoch=8)
    dm.setup()
    planner = dm._train_planner
    np.testing.assert_allclose(planner.progress(1), [1.0] * 8)
    planner.batches_per_step = 2
    np.testing.assert_allclose(planner.progress(0), [0, 0, 1 / 8, 1 / 8, 2 / 8, 2 / 8, 3 / 8, 3 / 8])
    np.testing.assert_allclose(planner.progress(1), [4 / 8, 4 / 8, 5 / 8, 5 / 8, 6 / 8, 6 / 8, 7 / 8, 7 / 8])


def test_same_batches_for_any_number_of_workers_new_ones_each_epoch(lambda_slice):
    def run(workers, seed=3, epoch=0):
        loader = module(lambda_slice, num_workers=workers, seed=seed).train_dataloader()
        loader.sampler.set_epoch(epoch)
        return input_ids(loader)

    in_process, with_workers = run(0), run(2)
    assert len(in_process) == len(with_workers) == 16
    assert all(torch.equal(a, b) for a, b in zip(in_process, with_workers))
    for other in (run(0, seed=4), run(0, epoch=1)):
        assert not any(a.shape == b.shape and torch.equal(a, b) for a, b in zip(in_process, other))


def test_ranks_take_disjoint_equal_shares_of_the_same_plan(lambda_slice):
    dm = module(lambda_slice, batches_per_epoch=15)
    dm.setup()
    plan = dm._train_planner(0)
    shards = [list(PlanSampler(dm._train_planner, rank=r, world_size=2)) for r in range(2)]
    assert [len(s) for s in shards] == [7, 7]  # cut to a multiple of the world size
    for r, shard in enumerate(shards):
        assert all(np.array_equal(a, b) for a, b in zip(shard, plan[r:14:2]))
        assert all(rows[0, 3] * len(rows) == 1024 for rows in shard)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_skips_the_batches_already_trained(lambda_slice, workers):
    straight = module(lambda_slice).train_dataloader()
    straight.sampler.set_epoch(1)
    expected = input_ids(straight)
    resumed = module(lambda_slice, num_workers=workers)
    resumed.load_state_dict({"sources": [str(lambda_slice)], "position": {"epoch": 1, "batches": 5}})
    loader = resumed.train_dataloader()
    assert len(loader) == 16  # Lightning counts the restored batches towards the epoch
    # as Lightning does when it resumes mid-epoch: the iterator first, then the epoch
    iterator = iter(loader)
    loader.sampler.set_epoch(1)
    rest = [batch["input_ids"] for batch in iterator]
    assert len(rest) == 11 and all(torch.equal(a, b) for a, b in zip(rest, expected[5:]))
    assert len(input_ids(loader)) == 16  # only the first pass skips


def test_validation_windows_are_forward_non_overlapping_and_capped(lambda_slice):
    dm = module(lambda_slice, val_fraction=0.25, val_block_length=8_000)
    dm.setup()
    assert all(len(r) <= 2_000 for r in dm.val_regions)
    batches = list(dm._val_planner(0))
    rows = np.concatenate(batches)
    assert {len(b) for b in batches[:-1]} == {2} and (rows[:, 3] == 512).all() and not rows[:, 2].any()
    assert np.all(np.diff(rows[:, 1]) >= 512)
    val = input_ids(dm.val_dataloader())
    assert [b.shape for b in val] == [torch.Size([len(b), 512]) for b in batches]
    # no training window overlaps a validation window
    train = np.concatenate(dm._train_planner(0))
    for start, length in zip(train[:, 1], train[:, 3]):
        assert all(start + length <= r.start or start >= r.end for r in dm.val_regions)
    capped = module(lambda_slice, val_fraction=0.25, val_block_length=8_000, val_length=256, max_val_windows=5)
    capped.setup()
    assert sum(len(b) for b in capped._val_planner(0)) == 5
    assert {len(b) for b in capped._val_planner(0)} <= {4, 1}


def test_bad_options_are_input_errors_naming_option_and_numbers(lambda_slice, lambda_fasta):
    with pytest.raises(InputError, match=r"tokens_per_batch=1000 is not a multiple of bucket\(s\) 128, 256, 512") as err:
        module(lambda_slice, tokens_per_batch=1000)
    assert err.value.field == ("tokens_per_batch",)
    with pytest.raises(InputError, match="tokens_per_batch=256 is less than the longest bucket, 512"):
        module(lambda_slice, tokens_per_batch=256)
    with pytest.raises(InputError, match="curriculum_steps"):
        module(lambda_slice, curriculum_steps=None)
    with pytest.raises(InputError, match="short_to_long, uniform"):
        module(lambda_slice, curriculum="long_to_short")
    with pytest.raises(InputError, match="more than once: 256"):
        module(lambda_slice, buckets=[256, 128, 256])
    too_long = module(lambda_fasta, buckets=[1024, 65536], tokens_per_batch=65536, val_fraction=0.05)
    with pytest.raises(InputError, match=r"bucket 65536 is longer than every training region of lambda_phage\.fa: "
                                         r"the longest is 46077 bases") as err:
        too_long.setup()
    assert err.value.field == ("buckets",)
    with pytest.raises(InputError, match="no window of 512 bases"):
        module(lambda_slice, val_fraction=0.02, val_block_length=10_000).setup()


def test_pretrain_refuses_two_length_schedules(tmp_path):
    from genoseq.pipelines.pretrain import pretrain

    with pytest.raises(InputError, match="seq_len_warmup and window.buckets"):
        pretrain(out=str(tmp_path / "run"), window={"buckets": [128, 256]}, seq_len_warmup=[(0, 64), (10, 128)])


def test_resume_warns_when_the_curriculum_schedule_changed(lambda_slice, recwarn):
    """The checkpoint keeps the schedule its batches were drawn for; resuming on another one
    (curriculum_steps, or data-parallel ranks x gradient accumulation) is not exact and says so."""
    first = module(lambda_slice)
    first.train_dataloader()
    state = {**first.state_dict(), "position": {"epoch": 1, "batches": 5}}
    assert state["schedule"] == {"curriculum_steps": 40, "batches_per_step": 1}
    same = module(lambda_slice)
    same.load_state_dict(state)
    same.train_dataloader()
    assert not [w for w in recwarn if "curriculum" in str(w.message)]
    longer = module(lambda_slice, curriculum_steps=64)
    longer.load_state_dict(state)
    with pytest.warns(UserWarning, match=r"curriculum_steps 40 -> 64.*not exact"):
        longer.train_dataloader()
