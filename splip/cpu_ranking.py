"""Ranks of the relevant gallery items on the CPU, for :mod:`splip.metrics` (the GPU path is torch).

The ranking is the one of :mod:`splip.metrics`: similarity descending, ties broken by gallery index.
For each block of query rows this makes one int32 key per gallery item, ``2 * ~value + relevant``
(``value``: the similarity's bits mapped to an int32 that rises with the float), sorts the keys with
numpy's SIMD sort and reads the relevant items' ranks off the odd keys. Only exact ties between a
relevant and an irrelevant item are then out of order (the sort puts a similarity's irrelevant
items first); each such group is repaired from its members in gallery-index order.

Why numba: the sort is the floor of this approach (about 3 ns per item); everything around it is
one pass over the row each (key building, finding the odd keys), and as numpy calls it took as long
again as the sort, mostly in temporaries and extra passes. Compiled loops make each of them one
pass with no temporary. The kernels release the GIL, so a thread pool ranks blocks in parallel.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["BlockWorkspace", "block_hits"]

# A block with more tie groups to repair than this many per row is ranked with int64 keys that
# carry the gallery index instead: they need no repair, but their sort takes about twice as long.
# Float32 similarities tie by chance (the benchmark's embeddings give 1.2 groups per row at
# G = 54,151); quantised embeddings can give hundreds.
MAX_TIE_GROUPS_PER_ROW = 4


class BlockWorkspace:
    """Arrays for :func:`block_hits`, allocated once per thread and reused for every block.

    Why: numpy takes arrays this large from fresh ``mmap`` pages, and touching them costs a page
    fault per 4 KiB on every block (as the similarity buffer of splip.metrics avoids for the matmul).
    """

    def __init__(self, n_rows: int, n_gallery: int) -> None:
        self.keys = np.empty((n_rows, n_gallery), dtype=np.int32)  # (B, G)
        # The hit scan writes one slot past the hits found so far, hence + 1.
        self.hit_row = np.empty(n_rows * n_gallery + 1, dtype=np.int32)  # (B * G + 1,)
        self.hit_col = np.empty(n_rows * n_gallery + 1, dtype=np.int32)  # (B * G + 1,)


@numba.njit(nogil=True, cache=True)
def _fill_keys(sim, q_codes, g_codes, keys):  # pragma: no cover - compiled
    """Each item's sort key, by the dtype of ``keys`` ``(B, G)``:

    - int32: ``2 * ~u + relevant``, u = bits ^ (bits >> 31), the order-preserving map of the
      similarity's bits up to the sign bit, which the shift drops (|similarity| < 2 frees it);
    - int64: ``~value << 32 | j << 1 | relevant`` with the exact order-preserving ``value``: unique
      keys, already in rank order.
    """
    exact = keys.itemsize == 8
    bits = sim.view(np.int32)
    for i in range(sim.shape[0]):
        q = q_codes[i]
        bits_row, key_row = bits[i], keys[i]
        for j in range(sim.shape[1]):
            b = bits_row[j]
            b = 0 if b == -2147483648 else b  # -0.0 as +0.0, so the two tie
            if exact:
                value = b ^ ((b >> 31) & 0x7FFFFFFF)  # rises with the float
                key_row[j] = (np.int64(~value) << 32) | (np.int64(j) << 1) | (g_codes[j] == q)
            else:
                key_row[j] = ((~(b ^ (b >> 31))) << 1) | (g_codes[j] == q)


@numba.njit(nogil=True, cache=True)
def _scan_hits(keys, sim, q_codes, g_codes, depth, max_groups, hit_row, hit_col):  # pragma: no cover - compiled
    """Fills hit_row / hit_col with (row, rank - 1) of the relevant items ranked within ``depth``,
    by row, then rank; returns how many, or -1 once more than ``max_groups`` tie groups need repair.

    ``keys`` ``(B, G)``: each row sorted ascending, relevance in the lowest bit.
    """
    n_rows, n_gallery = keys.shape
    n_kept = 0
    n_groups = 0
    scratch = np.empty(1, dtype=np.int32)  # a similarity's bits, to read them as a float
    for i in range(n_rows):
        key_row, sim_row = keys[i], sim[i]
        first = n_kept
        n_found = first
        for p in range(n_gallery):  # branch-free compaction of the odd keys' positions
            hit_col[n_found] = p
            n_found += key_row[p] & 1
        h = first
        while h < n_found:
            p = hit_col[h]
            key = key_row[p]
            if p == 0 or key_row[p - 1] != key - 1:
                h += 1
                continue
            # A mixed tie group: irrelevant items of this similarity (key - 1) right before p, its
            # relevant ones (key) from p on. In gallery-index order its members take its ranks one
            # after the other.
            n_groups += 1
            if n_groups > max_groups:
                return -1
            group_start = p - 1
            while group_start > 0 and key_row[group_start - 1] == key - 1:
                group_start -= 1
            group_end = p + 1
            while group_end < n_gallery and key_row[group_end] == key:
                group_end += 1
            # The group's similarity, decoded from its key (-0.0 items compare equal to +0.0).
            inverse = ~(key >> 1)
            scratch[0] = inverse ^ ((inverse >> 31) & 0x7FFFFFFF)
            value = scratch.view(np.float32)[0]
            # Its members, streamed in gallery-index order (not gathered: a random access to the
            # row costs a cache miss), 64 at a time with a vectorised count saying whether to look
            # closer; the scan stops after the last member.
            q = q_codes[i]
            n_members = group_end - group_start
            members_before = 0
            for base in range(0, n_gallery, 64):
                stop = min(base + 64, n_gallery)
                count = 0
                for j in range(base, stop):
                    count += sim_row[j] == value
                if count == 0:
                    continue
                for j in range(base, stop):
                    if sim_row[j] == value:
                        if g_codes[j] == q:
                            hit_col[h] = group_start + members_before
                            h += 1
                        members_before += 1
                if members_before == n_members:
                    break
            if members_before != n_members:  # an error, not an endless loop, should this ever fail
                raise RuntimeError("splip.cpu_ranking: a tie group's members were not found in its row")
        for h in range(first, n_found):  # keep the ranks within depth; add the rows
            if hit_col[h] < depth:
                hit_col[n_kept] = hit_col[h]
                hit_row[n_kept] = i
                n_kept += 1
    return n_kept


def block_hits(sim: np.ndarray, q_codes: np.ndarray, g_codes: np.ndarray, depth: int,
               workspace: BlockWorkspace) -> tuple[np.ndarray, np.ndarray]:
    """``(B, G)`` float32 similarities -> ``(row, rank - 1)`` of every relevant item ranked within
    the top ``depth``, ordered by row, then rank (int32 arrays of the hits).

    ``q_codes`` ``(B,)`` and ``g_codes`` ``(G,)``: label codes (int32); ``workspace``: arrays of at
    least ``B`` rows of ``G``. ``sim`` is read only; it must be C-contiguous.
    """
    n_rows = sim.shape[0]
    keys = workspace.keys[:n_rows]
    _fill_keys(sim, q_codes, g_codes, keys)
    keys.sort(axis=1)  # numpy's SIMD sort, GIL released
    max_groups = MAX_TIE_GROUPS_PER_ROW * n_rows
    n = _scan_hits(keys, sim, q_codes, g_codes, depth, max_groups, workspace.hit_row, workspace.hit_col)
    if n < 0:  # many ties: keys that carry the gallery index are in rank order already
        exact = np.empty(sim.shape, dtype=np.int64)
        _fill_keys(sim, q_codes, g_codes, exact)
        exact.sort(axis=1)
        n = _scan_hits(exact, sim, q_codes, g_codes, depth, 0, workspace.hit_row, workspace.hit_col)
    return workspace.hit_row[:n].copy(), workspace.hit_col[:n].copy()
