"""KV managers: exact block ids, prefix caching and eviction order, contiguous placement, and
RuleBasedStateMachines that check conservation and ref-counts under random operation sequences."""
from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from policies.config import ContiguousKVConfig, PagedKVConfig
from policies.kv import ContiguousKVManager, PagedKVManager, PrefixCachingKVManager, make_kv_manager
from policies.kv.prefix import block_keys, lfu, lru
from policies.request import Request


def test_factory_picks_the_manager():
    assert type(make_kv_manager(PagedKVConfig(), 10, 64)) is PagedKVManager
    pc = make_kv_manager(PagedKVConfig(prefix_caching=True, eviction="lfu", block_size=8), 10, 64, num_host_blocks=3)
    assert type(pc) is PrefixCachingKVManager and pc.evict_key is lfu and pc.num_host_blocks == 3
    c = make_kv_manager(ContiguousKVConfig(reserve="pow2", block_size=4), 10, 64)
    assert type(c) is ContiguousKVManager and c.reserve == "pow2" and c.max_model_len == 64
    assert make_kv_manager(PagedKVConfig(num_blocks=7), 10, 64).num_blocks == 7  # config override


def test_paged_block_ids_follow_the_free_list():
    kv = PagedKVManager(6, 4)
    a, b = Request(0, 0, 5, 3), Request(1, 0, 2, 2)
    kv.allocate(a, 5)
    kv.allocate(b, 2)
    kv.allocate(a, 8)  # still 2 blocks
    assert (a.blocks, b.blocks, kv.num_free_blocks, kv.num_used_blocks) == ([0, 1], [2], 3, 3)
    kv.free(a)
    kv.allocate(b, 13)
    assert b.blocks == [2, 3, 4, 5] and list(kv.free_list) == [0, 1]


def test_block_keys_chain_and_split_trace_blocks():
    # Two 512-token trace blocks at block size 256: four keys; a shared first id shares two keys.
    k1 = block_keys((5, 6), 1024, 256)
    k2 = block_keys((5, 9), 1024, 256)
    assert len(k1) == 4 and k1[:2] == k2[:2] and k1[2] != k2[2]
    assert block_keys((5, 6), 1000, 256) == k1[:3]  # the partial last block has no key
    assert len(block_keys((5,), 1024, 256)) == 2  # tokens without an id are not keyed
    big = block_keys((5, 6, 7), 1536, 1024)  # a block spanning two ids
    assert len(big) == 1 and big != block_keys((5, 8, 7), 1536, 1024)


def test_prefix_cache_hits_shares_and_evicts_lru():
    kv = PrefixCachingKVManager(4, 4)
    a = Request(0, 0, 9, 1, hash_ids=(1,))
    kv.allocate(a, 9)
    a.num_computed = 9
    kv.cache_computed(a)
    assert a.blocks == [0, 1, 2] and kv.num_cached_blocks == 2  # the partial third block is not cached
    b = Request(1, 0, 12, 1, hash_ids=(1,))
    assert kv.admission(b, 12) == (8, 1)  # 2 blocks hit (held by a), 1 new block
    kv.free(a)
    assert kv.num_free_blocks == 4 and kv.num_used_blocks == 0 and kv.num_evictable == 2
    assert kv.admission(b, 12) == (8, 3)  # the hits are evictable now: they come out of the free pool
    assert kv.acquire_prefix(b, 8) == 8 and b.blocks == [0, 1] and kv.ref_counts[:2] == [1, 1]
    kv.allocate(b, 12)
    assert b.blocks == [0, 1, 3] and list(kv.free_list) == [2]
    c = Request(2, 0, 8, 1)
    try:
        kv.allocate(c, 8)  # 2 blocks: 1 free, nothing evictable (b holds 0 and 1)
        raise AssertionError("over-allocation must raise")
    except RuntimeError:
        pass
    assert c.blocks == [] and kv.num_free_blocks == 1


def _computed(kv, req_id: int, prompt: int, hash_ids) -> Request:
    r = Request(req_id, 0, prompt, 1, hash_ids=hash_ids)
    kv.allocate(r, prompt)
    r.num_computed = prompt
    kv.cache_computed(r)
    return r


def test_lru_evicts_oldest_release_tail_first():
    kv = PrefixCachingKVManager(4, 2, eviction="lru")
    a, b = _computed(kv, 0, 4, (1,)), _computed(kv, 1, 4, (2,))
    kv.free(a)
    kv.free(b)
    c = Request(2, 0, 4, 1)
    kv.allocate(c, 4)
    assert c.blocks == [1, 0] and kv.num_evictions == 2  # a released first; its tail block goes first
    assert kv.admission(Request(3, 0, 5, 1, hash_ids=(1,)), 5) == (0, 3)
    assert kv.admission(Request(4, 0, 5, 1, hash_ids=(2,)), 5) == (4, 3)  # 2 evictable hits + 1 new


def test_lfu_keeps_the_most_hit_prefix():
    kv = PrefixCachingKVManager(4, 2, eviction="lfu")
    a = _computed(kv, 0, 4, (1,))
    kv.free(a)
    for i in range(2):  # a's prefix gets hit twice
        r = Request(10 + i, 0, 5, 1, hash_ids=(1,))
        assert kv.acquire_prefix(r, 4) == 4
        kv.free(r)
    b = _computed(kv, 1, 4, (2,))
    kv.free(b)
    c = Request(2, 0, 4, 1)
    kv.allocate(c, 4)
    assert c.blocks == [3, 2]  # b's blocks (never hit) go first, though a's were released earlier


def test_prefix_hit_leaves_at_least_one_token_to_compute():
    kv = PrefixCachingKVManager(8, 2)
    _computed(kv, 0, 6, (1,))
    assert kv.admission(Request(1, 0, 6, 1, hash_ids=(1,)), 6) == (4, 1)  # 3 cached blocks, 2 usable
    assert kv.admission(Request(2, 0, 7, 1, hash_ids=(1,)), 7) == (6, 1)
    assert kv.admission(Request(3, 0, 7, 1), 7) == (0, 4)  # no hash ids: never shares


def test_contiguous_first_fit_coalesces_and_fragments():
    kv = ContiguousKVManager(10, 1, max_model_len=10, reserve="oracle")
    a, b, c = Request(0, 0, 3, 1), Request(1, 0, 1, 1), Request(2, 0, 2, 2)
    for r in (a, b, c):
        kv.allocate(r, r.prompt_len)
    assert (a.blocks, b.blocks, c.blocks) == ([0, 1, 2, 3], [4, 5], [6, 7, 8, 9])
    kv.free(a)
    kv.free(c)
    assert (kv.starts, kv.lengths, kv.num_free_blocks, kv.largest_free_run) == ([0, 6], [4, 4], 8, 4)
    assert not kv.can_place([5]) and kv.can_place([4, 4]) and not kv.can_place([4, 4, 1])
    kv.free(b)
    assert (kv.starts, kv.lengths) == ([0], [10])


def test_contiguous_reservation_modes():
    r = Request(0, 0, 100, 30)  # final length 130
    modes = ("max_model_len", "pow2", "oracle")
    sizes = {m: ContiguousKVManager(1000, 16, 2048, m).blocks_needed(r, 100) for m in modes}
    assert sizes == {"max_model_len": 128, "pow2": 16, "oracle": 9}  # 2048, 256 and 130 tokens
    kv = ContiguousKVManager(1000, 16, 2048, "pow2")
    kv.allocate(r, 100)
    assert len(r.blocks) == 16 and kv.blocks_needed(r, 130) == 0


# ---- state machines ----------------------------------------------------------------------------


class PrefixCacheMachine(RuleBasedStateMachine):
    """Random admissions (with prefix hits), growth, computation, swaps and frees on two prefix-caching
    paged managers in lockstep — LRU through its release FIFO, and the same key through the generic
    heap — which must hand out the same blocks. Invariants: ref-counts equal holders, every block is
    exactly one of free / evictable / held, the hash table and block keys agree."""

    def __init__(self) -> None:
        super().__init__()
        self.kvs = [PrefixCachingKVManager(12, 2, num_host_blocks=6),
                    PrefixCachingKVManager(12, 2, num_host_blocks=6, eviction=lambda a, h, d: lru(a, h, d))]
        assert self.kvs[0]._fifo is not None and self.kvs[1]._fifo is None
        for kv in self.kvs:
            kv.compact_slack = -20  # compact often, so that compaction is exercised too
        self.live: list[tuple[Request, Request]] = []
        self.swapped: list[tuple[Request, Request]] = []
        self.next_id = 0

    @rule(prompt=st.integers(1, 12), prefix=st.sampled_from([None, (1,), (2,), (1,), (2,)]), prefill=st.booleans())
    def admit(self, prompt, prefix, prefill):
        pair = tuple(Request(self.next_id, 0, prompt, 4, hash_ids=prefix) for _ in self.kvs)
        self.next_id += 1
        plans = {kv.admission(r, prompt) for kv, r in zip(self.kvs, pair)}
        assert len(plans) == 1
        cached, need = plans.pop()
        if need > self.kvs[0].num_free_blocks:
            return
        for kv, r in zip(self.kvs, pair):
            assert kv.acquire_prefix(r, cached) == cached
            kv.allocate(r, prompt)
            r.num_computed = prompt if prefill else cached
            assert len(r.blocks) == -(-prompt // 2)
            kv.cache_computed(r)
        self.live.append(pair)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def compute(self, data):
        pair = data.draw(st.sampled_from(self.live))
        n = data.draw(st.integers(pair[0].num_computed, len(pair[0].blocks) * 2))
        for kv, r in zip(self.kvs, pair):
            r.num_computed = n
            kv.cache_computed(r)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), extra=st.integers(1, 4))
    def grow(self, data, extra):
        pair = data.draw(st.sampled_from(self.live))
        target = len(pair[0].blocks) * 2 + extra
        if self.kvs[0].blocks_needed(pair[0], target) <= self.kvs[0].num_free_blocks:
            for kv, r in zip(self.kvs, pair):
                kv.allocate(r, target)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free(self, data):
        pair = data.draw(st.sampled_from(self.live))
        for kv, r in zip(self.kvs, pair):
            freed = kv.blocks_freed_by(r)
            before = kv.num_free_blocks
            kv.free(r)
            assert kv.num_free_blocks == before + freed and r.blocks == []
        self.live.remove(pair)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def swap_out(self, data):
        pair = data.draw(st.sampled_from(self.live))
        if self.kvs[0].can_swap_out(pair[0]):
            for kv, r in zip(self.kvs, pair):
                kv.swap_out(r)
            self.live.remove(pair)
            self.swapped.append(pair)

    @precondition(lambda self: self.swapped)
    @rule()
    def swap_in(self):
        pair = self.swapped[0]
        if pair[0].num_swapped_blocks <= self.kvs[0].num_free_blocks:
            for kv, r in zip(self.kvs, pair):
                kv.swap_in(r)
            self.swapped.pop(0)
            self.live.append(pair)

    @invariant()
    def same_blocks_either_pool(self):
        for a, b in self.live:
            assert a.blocks == b.blocks
        assert self.kvs[0].num_evictions == self.kvs[1].num_evictions

    @invariant()
    def conserved(self):
        for side, kv in enumerate(self.kvs):
            live = [pair[side] for pair in self.live]
            swapped = [pair[side] for pair in self.swapped]
            holders = [0] * kv.num_blocks
            for r in live:
                assert len(set(r.blocks)) == len(r.blocks)
                for b in r.blocks:
                    holders[b] += 1
            assert holders == kv.ref_counts
            held = {b for b in range(kv.num_blocks) if holders[b]}
            free = set(kv.free_list)
            evictable = {b for b in range(kv.num_blocks) if holders[b] == 0 and kv.block_key[b] is not None}
            assert len(free) == len(kv.free_list) and not free & held and not free & evictable
            assert free | held | evictable == set(range(kv.num_blocks))
            assert kv.num_evictable == len(evictable) and kv.num_free_blocks == len(free) + len(evictable)
            assert kv.num_used_blocks == len(held) <= kv.num_blocks
            assert {b: k for k, b in kv.table.items()} == {b: k for b, k in enumerate(kv.block_key) if k is not None}
            assert kv.num_free_host_blocks == kv.num_host_blocks - sum(r.num_swapped_blocks for r in swapped)


class ContiguousMachine(RuleBasedStateMachine):
    """Random reservations and frees; free runs stay sorted, disjoint, coalesced and complementary to
    the reservations, each of which is one contiguous run."""

    def __init__(self) -> None:
        super().__init__()
        self.kv = ContiguousKVManager(40, 2, max_model_len=24, reserve="pow2")
        self.live: list[Request] = []

    @rule(prompt=st.integers(1, 12), output=st.integers(1, 12))
    def allocate(self, prompt, output):
        r = Request(len(self.live), 0, prompt, output)
        need = self.kv.blocks_needed(r, prompt)
        if self.kv.can_place([need]):
            self.kv.allocate(r, prompt)
            assert len(r.blocks) == need
            self.live.append(r)
        else:
            assert self.kv.largest_free_run < need

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free(self, data):
        r = data.draw(st.sampled_from(self.live))
        self.kv.free(r)
        self.live.remove(r)

    @invariant()
    def runs_partition_the_blocks(self):
        kv = self.kv
        owner = [-1] * kv.num_blocks
        for start, n in zip(kv.starts, kv.lengths):
            assert n > 0
            for b in range(start, start + n):
                assert owner[b] == -1
                owner[b] = -2
        for a, b in zip(zip(kv.starts, kv.lengths), zip(kv.starts[1:], kv.lengths[1:])):
            assert a[0] + a[1] < b[0]  # sorted, and adjacent runs would have been merged
        for i, r in enumerate(self.live):
            assert r.blocks == list(range(r.blocks[0], r.blocks[0] + len(r.blocks)))
            for b in r.blocks:
                assert owner[b] == -1
                owner[b] = i
        assert -1 not in owner
        assert kv.num_free_blocks == sum(kv.lengths) == kv.num_blocks - sum(len(r.blocks) for r in self.live)


TestPrefixCacheMachine = PrefixCacheMachine.TestCase
TestPrefixCacheMachine.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestContiguousMachine = ContiguousMachine.TestCase
TestContiguousMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_mooncake_prefix_hits_match_the_trace(traces_dir):
    """With room for everything, the tokens served from cache are exactly those in the leading trace
    blocks (512 tokens, the last one maybe partial) whose hash id an earlier request already had,
    counted directly from the trace, in whole 16-token blocks."""
    import json

    kv = PrefixCachingKVManager(1_000_000, 16)
    seen: set[int] = set()
    hits = expected = 0
    with open(traces_dir / "mooncake" / "conversation_trace.jsonl") as f:
        for i, line in zip(range(800), f):
            d = json.loads(line)
            r = Request(i, 0.0, d["input_length"], 1, hash_ids=tuple(d["hash_ids"]))
            lead = 0
            while lead < len(d["hash_ids"]) and d["hash_ids"][lead] in seen:
                lead += 1
            # Whole 16-token blocks inside the matched ids; at least one prompt token is computed.
            expected += min(min(lead * 512, d["input_length"]) // 16, (d["input_length"] - 1) // 16) * 16
            seen.update(d["hash_ids"])
            cached, _ = kv.admission(r, r.prompt_len)
            assert kv.acquire_prefix(r, cached) == cached
            kv.allocate(r, r.prompt_len)
            r.num_computed = r.prompt_len
            kv.cache_computed(r)
            kv.free(r)
            hits += cached
    assert hits == expected and hits > 0 and kv.num_evictions == 0
