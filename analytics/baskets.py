"""Where age groups meet purchases: one pass over a day's lines, counted into cells.

A cell is store x age group x product. Marketing needs distinct receipts per cell, per
category and per store x age group, not line counts: a receipt with two beers is one beer
receipt. Lines arrive sorted by receipt, in chunks, so each receipt's lines can be sorted
by (category, product) in memory and the first line of each receipt, of each category
within it and of each product within it counted; a receipt cut by a chunk boundary is held
back until its last line has arrived. Memory depends on the number of cells and receipts,
never on the number of lines.

Pure numpy: no database, no files. `analytics.day_aggregates` feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# Cells counted in dense arrays up to this many (6 measures x 8 bytes each: ~190 MB);
# beyond it (thousands of stores x tens of thousands of products) per-chunk sparse sums.
DENSE_CELLS = 4_000_000
DIRECT_TABLE_MIN = 1_000_000  # product ids up to this map through a lookup table
MEASURES = ("receipts", "category_receipts", "group_receipts", "lines", "items", "cents")


class LinesOutOfOrder(ValueError):
    """Lines did not arrive sorted by receipt: distinct receipts could not be counted."""


class UnknownKeys(ValueError):
    """A line names a receipt or product the day's index does not hold."""


@dataclass(frozen=True)
class BasketIndex:
    """What each receipt and product maps to, as small integer codes.

    receipt_ids: the day's receipts, sorted; group: each receipt's group code (the caller's
    store x age group numbering), 0 <= group < n_groups. product_ids: every product, sorted;
    product_category: its category code (0 <= code < n_categories); product_restricted:
    whether it is age-restricted.
    """

    receipt_ids: np.ndarray
    group: np.ndarray
    n_groups: int
    product_ids: np.ndarray
    product_category: np.ndarray
    product_restricted: np.ndarray
    _direct: np.ndarray | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        # Product ids are usually small integers: a direct table turns the per-line lookup
        # into one gather instead of a binary search.
        ids = self.product_ids
        if len(ids) and ids[0] >= 0 and ids[-1] <= max(DIRECT_TABLE_MIN, 8 * len(ids)):
            table = np.full(int(ids[-1]) + 1, -1, dtype=np.int64)
            table[ids] = np.arange(len(ids))
            object.__setattr__(self, "_direct", table)  # frozen: set once, here

    def product_code(self, product_id: np.ndarray) -> np.ndarray:
        """Each line's product position in product_ids; every id must be known."""
        table = self._direct
        if table is None:
            return _lookup(self.product_ids, product_id, "product")
        inside = (product_id >= 0) & (product_id < len(table))
        code = table[np.where(inside, product_id, 0)]
        unknown = ~inside | (code < 0)
        if unknown.any():
            missing = np.unique(product_id[unknown])[:5].tolist()
            raise UnknownKeys(f"lines name product(s) not in the day's index: {missing}")
        return code

    @property
    def n_categories(self) -> int:
        return int(self.product_category.max()) + 1 if len(self.product_category) else 1

    @property
    def n_products(self) -> int:
        return max(len(self.product_ids), 1)


class BasketCounter:
    """Feed it chunks of lines in receipt order (`add`), then read the cells (`finish`)."""

    def __init__(self, index: BasketIndex, dense_limit: int = DENSE_CELLS) -> None:
        self.index = index
        n_cells = index.n_groups * index.n_products
        self._sums = _DenseSums(n_cells) if n_cells <= dense_limit else _SparseSums()
        self._restricted = np.zeros(len(index.receipt_ids), dtype=bool)
        self._carry: tuple[np.ndarray, ...] | None = None
        self._last_receipt: int | None = None

    def add(self, receipt_id: np.ndarray, product_id: np.ndarray, quantity: np.ndarray,
            cents: np.ndarray) -> None:
        """Count a chunk, except the lines of its last receipt, which may go on in the next."""
        columns = (np.asarray(receipt_id, np.int64), np.asarray(product_id, np.int64),
                   np.asarray(quantity, np.int64), np.asarray(cents, np.int64))
        if not len(columns[0]):
            return
        self._check_order(columns[0])
        if self._carry is not None:
            columns = tuple(np.concatenate(pair) for pair in zip(self._carry, columns,
                                                                 strict=True))
        cut = int(np.searchsorted(columns[0], columns[0][-1], side="left"))
        self._carry = tuple(c[cut:] for c in columns)
        if cut:
            self._count(*(c[:cut] for c in columns))

    def finish(self) -> tuple[pd.DataFrame, np.ndarray]:
        """(cells, restricted). cells: group, product (codes) and MEASURES (cents = revenue in
        cents), one row per cell with at least one line, sorted by (group, product).
        restricted: per index receipt, whether it bought an age-restricted product."""
        if self._carry is not None and len(self._carry[0]):
            self._count(*self._carry)
        self._carry = None
        cells, sums = self._sums.result()
        n_products = self.index.n_products
        frame = pd.DataFrame({"group": cells // n_products, "product": cells % n_products})
        for name in MEASURES:
            frame[name] = sums[name]
        return frame, self._restricted.copy()

    def _check_order(self, receipt_id: np.ndarray) -> None:
        if self._last_receipt is not None and receipt_id[0] < self._last_receipt:
            raise LinesOutOfOrder("purchase lines are not sorted by receipt_id across chunks")
        if len(receipt_id) > 1 and bool(np.any(receipt_id[1:] < receipt_id[:-1])):
            raise LinesOutOfOrder("purchase lines are not sorted by receipt_id")
        self._last_receipt = int(receipt_id[-1])

    def _count(self, receipt_id: np.ndarray, product_id: np.ndarray, quantity: np.ndarray,
               cents: np.ndarray) -> None:
        """Count whole receipts' lines."""
        index = self.index
        first_line = np.empty(len(receipt_id), dtype=bool)
        first_line[0] = True
        np.not_equal(receipt_id[1:], receipt_id[:-1], out=first_line[1:])
        local = np.cumsum(first_line) - 1  # receipt number within this call, per line
        position = _lookup(index.receipt_ids, receipt_id[first_line], "receipt")
        group = index.group[position]
        product = index.product_code(product_id)
        category = index.product_category[product]
        n_products, n_categories = index.n_products, index.n_categories

        # Sorting (receipt, category, product) puts each receipt's lines of one product,
        # and of one category, next to each other; firsts are where the key changes.
        if len(position) * n_categories * n_products >= 2**62:
            raise OverflowError("too many categories x products for one chunk's sort key")
        key = (local * n_categories + category) * n_products + product
        key.sort()
        sorted_product = key % n_products
        receipt_category = key // n_products
        sorted_local = receipt_category // n_categories
        cell = group[sorted_local] * n_products + sorted_product
        self._sums.add(cell[_firsts(key)], receipts=None)
        self._sums.add(cell[_firsts(receipt_category)], category_receipts=None)
        self._sums.add(cell[_firsts(sorted_local)], group_receipts=None)
        self._sums.add(group[local] * n_products + product, lines=None, items=quantity,
                       cents=cents)

        restricted_lines = np.bincount(local, weights=index.product_restricted[product],
                                       minlength=len(position))
        self._restricted[position[restricted_lines > 0]] = True


def _firsts(sorted_values: np.ndarray) -> np.ndarray:
    """True where a sorted array starts a new value."""
    firsts = np.empty(len(sorted_values), dtype=bool)
    if len(firsts):
        firsts[0] = True
        np.not_equal(sorted_values[1:], sorted_values[:-1], out=firsts[1:])
    return firsts


def find_positions(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position, found): where each of `ids` sits in `sorted_ids`, and whether it is there
    (position is meaningless where it is not)."""
    position = np.searchsorted(sorted_ids, ids)
    inside = position < len(sorted_ids)
    found = inside.copy()
    found[inside] = sorted_ids[position[inside]] == ids[inside]
    return position, found


def _lookup(sorted_ids: np.ndarray, ids: np.ndarray, what: str) -> np.ndarray:
    """Positions of `ids` in `sorted_ids`; every id must be there."""
    position, found = find_positions(sorted_ids, ids)
    if not found.all():
        missing = np.unique(ids[~found])[:5].tolist()
        raise UnknownKeys(f"lines name {what}(s) not in the day's index: {missing}")
    return position


class _DenseSums:
    """Sums per cell in arrays as long as the cell space: fastest when it is small."""

    def __init__(self, n_cells: int) -> None:
        self._n = n_cells
        self._sums = {name: np.zeros(n_cells, dtype=np.float64) for name in MEASURES}

    def add(self, cells: np.ndarray, **weights: np.ndarray | None) -> None:
        for name, weight in weights.items():
            self._sums[name] += np.bincount(cells, weights=weight, minlength=self._n)

    def result(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        cells = np.flatnonzero(self._sums["lines"])
        return cells, {name: np.rint(s[cells]).astype(np.int64)
                       for name, s in self._sums.items()}


class _SparseSums:
    """Sums per cell for cells seen so far, folded together as they pile up."""

    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        self._pending = 0
        self._folded = 0

    def add(self, cells: np.ndarray, **weights: np.ndarray | None) -> None:
        unique, inverse = np.unique(cells, return_inverse=True)
        sums = {name: np.zeros(len(unique)) for name in MEASURES}
        for name, weight in weights.items():
            sums[name] = np.bincount(inverse, weights=weight, minlength=len(unique))
        self._parts.append((unique, sums))
        self._pending += len(unique)
        if self._pending > 2 * self._folded + 1_000_000:
            self._fold()

    def _fold(self) -> None:
        cells = np.concatenate([c for c, _ in self._parts])
        unique, inverse = np.unique(cells, return_inverse=True)
        sums = {name: np.bincount(inverse, weights=np.concatenate([s[name] for _, s in
                                                                   self._parts]),
                                  minlength=len(unique))
                for name in MEASURES}
        self._parts = [(unique, sums)]
        self._pending = self._folded = len(unique)

    def result(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if not self._parts:
            return np.zeros(0, np.int64), {name: np.zeros(0, np.int64) for name in MEASURES}
        self._fold()
        cells, sums = self._parts[0]
        keep = sums["lines"] > 0
        return cells[keep], {name: np.rint(s[keep]).astype(np.int64)
                             for name, s in sums.items()}
