"""A believable shop day with planted age effects, so the demo has something to find.

What a shopper buys depends on their (true) age: young adults energy drinks, snacks and beer;
parents of young children baby products and toys; older shoppers newspapers and health
products. Some under-25s buy alcohol, not always with an ID check. Receipts cluster at lunch
and after work. The same seed and day always give the same rows, and rerunning a day
replaces it (ids are derived from the date, so days coexist).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa

from sql.queries import insert_missing, replace_receipts

ID_STRIDE = 1_000_000  # receipt_id = day.toordinal() * ID_STRIDE + n
OPEN_HOUR, CLOSE_HOUR = 8, 21
CASHIERS_PER_STORE = 4
MAX_LINES = 15

STORE_NAMES = [
    "Northgate", "Riverside", "St. Mary's Market", "Old Town", "Harbour View",
    "Westfield", "Station Road", "Parkside",
]
CASHIER_NAMES = [
    "Alex", "Sam", "Maria", "Jonas", "Priya", "Tom", "Lena", "Omar", "Chloe", "Ivan",
    "Noor", "Ben", "Yuki", "Finn", "Ada", "Luis",
]

# (name, category, price); beer, wine and spirits are age-restricted.
PRODUCTS = [
    ("Bananas 1kg", "fresh produce", 1.79), ("Apples 1kg", "fresh produce", 2.49),
    ("Tomatoes 500g", "fresh produce", 1.99), ("Salad mix", "fresh produce", 1.49),
    ("Carrots 1kg", "fresh produce", 0.99),
    ("Sourdough loaf", "bakery", 3.20), ("Croissant", "bakery", 0.99),
    ("Rye bread", "bakery", 2.60),
    ("Milk 1l", "dairy", 1.15), ("Yoghurt 500g", "dairy", 1.39), ("Cheddar 200g", "dairy", 2.79),
    ("Butter 250g", "dairy", 2.29),
    ("Chicken curry", "ready meals", 3.99), ("Lasagne", "ready meals", 4.49),
    ("Sushi box", "ready meals", 6.99), ("Sandwich", "ready meals", 2.89),
    ("Crisps", "snacks", 1.79), ("Chocolate bar", "snacks", 0.89),
    ("Gummy bears", "snacks", 1.29), ("Tortilla chips", "snacks", 1.99),
    ("Energy drink 250ml", "energy drinks", 1.49), ("Energy drink zero", "energy drinks", 1.59),
    ("Energy drink 500ml", "energy drinks", 2.29),
    ("Cola 1.5l", "soft drinks", 1.99), ("Sparkling water 6x1.5l", "soft drinks", 3.49),
    ("Lager 6-pack", "beer", 5.99), ("IPA 4-pack", "beer", 7.49), ("Craft beer can", "beer", 2.79),
    ("Red wine", "wine", 7.99), ("White wine", "wine", 6.99), ("Prosecco", "wine", 9.49),
    ("Vodka 0.7l", "spirits", 14.99), ("Whisky 0.7l", "spirits", 24.99),
    ("Gin 0.7l", "spirits", 19.99),
    ("Nappies", "baby", 12.99), ("Baby formula", "baby", 11.49), ("Baby food jar", "baby", 1.19),
    ("Wet wipes", "baby", 2.49),
    ("Toy car", "toys", 6.99), ("Jigsaw puzzle", "toys", 9.99), ("Colouring book", "toys", 3.49),
    ("Painkillers", "health", 2.49), ("Vitamins", "health", 7.99), ("Plasters", "health", 2.99),
    ("Reading glasses", "health", 12.99),
    ("Cat food 12x", "pet food", 6.49), ("Dog food 2kg", "pet food", 8.99),
    ("Daily newspaper", "newspapers", 1.80), ("Weekend paper", "newspapers", 3.50),
    ("Crossword magazine", "newspapers", 2.99),
    ("Washing-up liquid", "household", 1.49), ("Kitchen roll", "household", 2.99),
    ("Batteries", "household", 4.99),
]
RESTRICTED = {"beer", "wine", "spirits"}
MULTIPACK = {"beer", "soft drinks", "energy drinks", "snacks", "pet food", "baby"}

# How often a category is picked by an average shopper.
CATEGORY_WEIGHT = {
    "fresh produce": 3.0, "bakery": 2.0, "dairy": 2.5, "ready meals": 1.5, "snacks": 1.5,
    "energy drinks": 0.4, "soft drinks": 1.0, "beer": 0.6, "wine": 0.6, "spirits": 0.25,
    "baby": 0.25, "toys": 0.25, "health": 0.6, "pet food": 0.6, "newspapers": 0.4,
    "household": 1.0,
}
# The planted effects: (lowest age, highest age, multiplier) per category.
AFFINITY = {
    "energy drinks": [(14, 29, 8.0)],
    "snacks": [(10, 29, 3.0)],
    "beer": [(0, 17, 0.3), (18, 34, 4.0)],
    "spirits": [(0, 17, 0.2), (18, 29, 2.0)],
    "wine": [(0, 17, 0.1), (35, 200, 2.5)],
    "baby": [(25, 40, 10.0)],
    "toys": [(28, 45, 6.0)],
    "ready meals": [(18, 34, 2.5)],
    "newspapers": [(0, 39, 0.3), (60, 200, 10.0)],
    "health": [(55, 200, 4.0)],
    "pet food": [(45, 75, 2.5)],
    "fresh produce": [(35, 200, 1.5)],
}
# Chance that a till asks for ID when something age-restricted is sold (Challenge 25).
ID_CHECK_RATE = [(0, 17, 0.75), (18, 24, 0.6), (25, 29, 0.25), (30, 200, 0.05)]


def generate_day(
    engine: sa.Engine,
    day: dt.date,
    *,
    stores: int = 3,
    receipts_per_store: int = 120,
    shopper_ages: Sequence[float],
    seed: int,
) -> pd.DataFrame:
    """Write `day`'s receipts and lines (replacing earlier ones); return who shopped when.

    Each receipt's shopper is one of `shopper_ages`, used equally often in shuffled order
    (exactly once each when there are as many ages as receipts). Returns receipt_id,
    store_id, ts, true_age and shopper_index (position in `shopper_ages`), by receipt_id.
    """
    ages = np.asarray(shopper_ages, dtype=float)
    n = stores * receipts_per_store
    if stores < 1 or receipts_per_store < 1:
        raise ValueError("stores and receipts_per_store must be at least 1")
    if n >= ID_STRIDE:
        raise ValueError(f"at most {ID_STRIDE - 1} receipts per day, asked for {n}")
    if ages.size == 0 or not np.all(np.isfinite(ages)) or np.any(ages < 0):
        raise ValueError("shopper_ages must be a non-empty list of ages >= 0")

    rng = np.random.default_rng([seed, day.toordinal()])
    insert_missing(engine, "stores", stores_frame(stores), "store_id")
    insert_missing(engine, "cashiers", cashiers_frame(stores), "cashier_id")
    insert_missing(engine, "products", products_frame(), "product_id")

    receipts, shoppers = _receipts(rng, day, stores, receipts_per_store, ages)
    lines = _lines(rng, receipts["receipt_id"].to_numpy(), shoppers["true_age"].to_numpy())
    receipts["id_checked"] = _id_checks(rng, receipts, lines, shoppers["true_age"].to_numpy())
    first_id = day.toordinal() * ID_STRIDE
    replace_receipts(engine, first_id, first_id + ID_STRIDE, receipts, lines)
    return pd.concat([receipts[["receipt_id", "store_id", "ts"]], shoppers], axis=1)


def stores_frame(stores: int) -> pd.DataFrame:
    """Stores 1..stores; names repeat with a number once the list runs out ("Northgate 2")."""
    names = []
    for i in range(stores):
        lap, base = divmod(i, len(STORE_NAMES))
        names.append(STORE_NAMES[base] if lap == 0 else f"{STORE_NAMES[base]} {lap + 1}")
    return pd.DataFrame({"store_id": np.arange(1, stores + 1), "name": names})


def cashiers_frame(stores: int) -> pd.DataFrame:
    """CASHIERS_PER_STORE cashiers per store; cashier_id = store_id * 100 + k."""
    store_ids = np.repeat(np.arange(1, stores + 1), CASHIERS_PER_STORE)
    k = np.tile(np.arange(1, CASHIERS_PER_STORE + 1), stores)
    names = [CASHIER_NAMES[(s * CASHIERS_PER_STORE + i) % len(CASHIER_NAMES)]
             for s, i in zip(store_ids, k, strict=True)]
    return pd.DataFrame({"cashier_id": store_ids * 100 + k, "store_id": store_ids, "name": names})


def products_frame() -> pd.DataFrame:
    """The catalogue; product_id is the 1-based position in PRODUCTS."""
    names, categories, _prices = zip(*PRODUCTS, strict=True)
    return pd.DataFrame({
        "product_id": np.arange(1, len(PRODUCTS) + 1),
        "name": names,
        "category": categories,
        "age_restricted": [c in RESTRICTED for c in categories],
    })


def _receipts(
    rng: np.random.Generator, day: dt.date, stores: int, per_store: int, ages: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Receipts in time order (ids follow the clock) and the shopper behind each."""
    n = stores * per_store
    store_id = np.repeat(np.arange(1, stores + 1), per_store)
    seconds = _shopping_times(rng, n)
    shopper = rng.permutation(np.resize(np.arange(ages.size), n))
    order = np.lexsort((store_id, seconds))
    store_id, seconds, shopper = store_id[order], seconds[order], shopper[order]
    start = dt.datetime.combine(day, dt.time())
    receipts = pd.DataFrame({
        "receipt_id": day.toordinal() * ID_STRIDE + np.arange(n),
        "store_id": store_id,
        "cashier_id": store_id * 100 + rng.integers(1, CASHIERS_PER_STORE + 1, n),
        "ts": pd.Timestamp(start) + pd.to_timedelta(seconds, unit="s"),
    })
    shoppers = pd.DataFrame({"true_age": ages[shopper], "shopper_index": shopper})
    return receipts, shoppers


def _shopping_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds after midnight: a lunch peak, a bigger after-work peak, a steady trickle."""
    component = rng.choice(3, size=n, p=[0.25, 0.35, 0.40])
    hours = np.where(
        component == 0,
        rng.uniform(OPEN_HOUR, CLOSE_HOUR, n),
        np.where(component == 1, rng.normal(12.5, 1.0, n), rng.normal(17.75, 1.25, n)),
    )
    outside = (hours < OPEN_HOUR) | (hours >= CLOSE_HOUR)
    hours[outside] = rng.uniform(OPEN_HOUR, CLOSE_HOUR, int(outside.sum()))
    return np.minimum((hours * 3600).astype(np.int64), CLOSE_HOUR * 3600 - 1)


def _lines(rng: np.random.Generator, receipt_ids: np.ndarray, ages: np.ndarray) -> pd.DataFrame:
    """1-15 distinct products per receipt, drawn with age-dependent weights."""
    n = receipt_ids.size
    categories = np.array([p[1] for p in PRODUCTS])
    prices = np.array([p[2] for p in PRODUCTS])
    weights = _product_weights(ages, categories)
    # Gumbel top-k: the k largest log(w) + Gumbel noise are k draws without replacement.
    keys = np.log(weights) + rng.gumbel(size=weights.shape)
    ranked = np.argsort(-keys, axis=1)
    count = np.clip(1 + rng.binomial(MAX_LINES - 1, 0.28, n), 1, MAX_LINES)
    take = np.arange(len(PRODUCTS))[None, :] < count[:, None]
    product_index = ranked[take]  # row-major: receipts in order, lines in draw order
    line_receipt = np.repeat(receipt_ids, count)
    first_line = np.repeat(np.cumsum(count) - count, count)
    line_no = np.arange(line_receipt.size) - first_line + 1
    packs = np.isin(categories[product_index], list(MULTIPACK))
    quantity = 1 + np.minimum(rng.poisson(np.where(packs, 0.6, 0.15)), 5)
    return pd.DataFrame({
        "receipt_id": line_receipt,
        "line_no": line_no,
        "product_id": product_index + 1,
        "quantity": quantity,
        "amount": np.round(prices[product_index] * quantity, 2),
    })


def _product_weights(ages: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """receipts x products: category weight x age affinity, split over the category's products."""
    years = np.floor(ages)
    weights = np.empty((ages.size, categories.size))
    for j, category in enumerate(categories):
        factor = np.full(ages.size, CATEGORY_WEIGHT[category] / np.sum(categories == category))
        for low, high, multiplier in AFFINITY.get(category, []):
            factor[(years >= low) & (years <= high)] *= multiplier
        weights[:, j] = factor
    return weights


def _id_checks(
    rng: np.random.Generator, receipts: pd.DataFrame, lines: pd.DataFrame, ages: np.ndarray
) -> pd.Series:
    """True/False where something age-restricted was sold, None otherwise."""
    restricted_ids = [i + 1 for i, p in enumerate(PRODUCTS) if p[1] in RESTRICTED]
    sold = lines.loc[lines["product_id"].isin(restricted_ids), "receipt_id"].unique()
    needs_check = receipts["receipt_id"].isin(sold).to_numpy()
    rate = np.zeros(ages.size)
    years = np.floor(ages)
    for low, high, p in ID_CHECK_RATE:
        rate[(years >= low) & (years <= high)] = p
    checked = rng.random(ages.size) < rate
    return pd.Series(checked, index=receipts.index, dtype="boolean").where(needs_check)
