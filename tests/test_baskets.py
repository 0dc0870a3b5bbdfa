"""analytics.baskets on hand-made arrays: what it counts and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.baskets import BasketCounter, BasketIndex, LinesOutOfOrder, UnknownKeys


def _index() -> BasketIndex:
    # Receipts 5 and 9 in group 0, receipt 7 in group 1; products 100 (cat 0, restricted),
    # 200 and 300 (cat 1).
    return BasketIndex(receipt_ids=np.array([5, 7, 9]), group=np.array([0, 1, 0]), n_groups=2,
                       product_ids=np.array([100, 200, 300]),
                       product_category=np.array([0, 1, 1]),
                       product_restricted=np.array([True, False, False]))


def _lines(*rows):
    return [np.array(column) for column in zip(*rows, strict=True)]


@pytest.mark.parametrize("dense_limit", [1_000, 0])
def test_counts_distinct_receipts_even_across_chunks(dense_limit):
    counter = BasketCounter(_index(), dense_limit=dense_limit)
    # Receipt 5: 200 twice and 300 (one category, two products), cut between two chunks.
    counter.add(*_lines((5, 200, 1, 150), (5, 300, 2, 400)))
    counter.add(*_lines((5, 200, 1, 150), (7, 100, 6, 1200)))
    counter.add(*_lines((9, 200, 1, 150)))
    cells, restricted = counter.finish()
    rows = {(g, p): r for g, p, *r in cells.itertuples(index=False)}
    # group 0, product 200 (code 1): receipts 5 and 9, each counted once for the product,
    # the category and the group; 3 lines, 3 items, 4.50
    assert rows[(0, 1)] == [2, 2, 2, 3, 3, 450]
    # group 0, product 300 (code 2): receipt 5 only, whose category and group were counted
    # at product 200 already
    assert rows[(0, 2)] == [1, 0, 0, 1, 2, 400]
    assert rows[(1, 0)] == [1, 1, 1, 1, 6, 1200]
    assert len(rows) == 3
    assert restricted.tolist() == [False, True, False]


def test_refuses_lines_out_of_receipt_order():
    counter = BasketCounter(_index())
    with pytest.raises(LinesOutOfOrder):
        counter.add(*_lines((7, 200, 1, 1), (5, 200, 1, 1)))
    counter = BasketCounter(_index())
    counter.add(*_lines((7, 200, 1, 1)))
    with pytest.raises(LinesOutOfOrder, match="across chunks"):
        counter.add(*_lines((5, 200, 1, 1)))


def test_refuses_receipts_and_products_it_does_not_know():
    with pytest.raises(UnknownKeys, match=r"product\(s\) .*\[250\]"):
        counter = BasketCounter(_index())
        counter.add(*_lines((5, 250, 1, 1), (7, 100, 1, 1)))
    with pytest.raises(UnknownKeys, match=r"receipt\(s\) .*\[6\]"):
        counter = BasketCounter(_index())
        counter.add(*_lines((6, 200, 1, 1)))
        counter.finish()


def test_nothing_counted_gives_empty_cells():
    cells, restricted = BasketCounter(_index()).finish()
    assert cells.empty and list(cells.columns[:2]) == ["group", "product"]
    assert not restricted.any()


def test_sparse_product_ids_use_the_search_path():
    index = BasketIndex(receipt_ids=np.array([1, 2]), group=np.array([0, 0]), n_groups=1,
                        product_ids=np.array([3, 2**40]), product_category=np.array([0, 0]),
                        product_restricted=np.array([False, False]))
    assert index._direct is None
    counter = BasketCounter(index)
    counter.add(*_lines((1, 2**40, 1, 5), (2, 2**40, 1, 5), (2, 3, 1, 5)))
    cells, _ = counter.finish()
    # Receipt 2 counts for its category once, at its first product in code order (3).
    assert cells[["product", "receipts", "category_receipts"]].values.tolist() == [
        [0, 1, 1], [1, 2, 1]]
    with pytest.raises(UnknownKeys, match=r"\[4\]"):
        index.product_code(np.array([4]))
