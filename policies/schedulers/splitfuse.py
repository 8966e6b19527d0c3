"""DeepSpeed-FastGen Dynamic SplitFuse (Holmes et al., arXiv:2401.08671, 2024).

Every forward pass targets a fixed token count (`chunk_size`): decode tokens of all running
generations first, then prompt chunks — long prompts split over several passes, short ones composed
together — until the target is reached. It shares Sarathi-Serve's pass composition; what differs is
memory: FastGen's ragged KV manager gives a request blocks only for the tokens of the current pass, so
admission needs blocks for the first chunk only and a prompt chunk is cut to the blocks that are free
(more requests in flight, at the risk of preempting one when memory runs out).
"""
from __future__ import annotations

from policies.schedulers.sarathi import SarathiScheduler


class SplitFuseScheduler(SarathiScheduler):
    on_demand = True
