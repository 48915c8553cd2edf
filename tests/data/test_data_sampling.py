import torch

from vig.data.sampling import SeededDataset, ShardSampler, eval_shard


def test_two_ranks_make_the_one_rank_global_batch():
    n, b = 103, 8
    one = list(ShardSampler(n, 0, 1, seed=3, batch_size=2 * b))
    ranks = [list(ShardSampler(n, r, 2, seed=3, batch_size=b)) for r in range(2)]
    assert len(one) == len(ranks[0]) * 2 == (n // (2 * b)) * 2 * b
    for k in range(len(ranks[0]) // b):
        union = sorted(ranks[0][k * b:(k + 1) * b] + ranks[1][k * b:(k + 1) * b])
        assert union == sorted(one[k * 2 * b:(k + 1) * 2 * b])


def test_epochs_differ_and_start_offset_skips_batches():
    s = ShardSampler(50, seed=1, batch_size=5)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert e0 != e1 and sorted(e0) == sorted(e1)
    s.set_epoch(1, start_batch=3, batch_size=5)
    assert list(s) == e1[15:] and len(s) == 35


def test_eval_shards_cover_each_sample_once():
    shards = [eval_shard(11, r, 3) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))


class _Noise(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.rand(3)


def test_seeded_dataset_depends_on_seed_epoch_index_only():
    ds = SeededDataset(_Noise(), seed=7)
    a = [ds[i] for i in range(4)]
    torch.rand(10)  # global RNG use in between must not matter
    assert all(torch.equal(x, ds[i]) for i, x in enumerate(a))
    assert not torch.equal(a[0], a[1])
    ds.set_epoch(1)
    assert not torch.equal(a[0], ds[0])
