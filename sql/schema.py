"""Tables of the shop database, declared once so SQLite and PostgreSQL get the same schema.

Timestamps are naive local shop time (what the till and camera clocks write); `runs` times are
naive UTC. Receipt and photo ids are BIGINT because the demo derives them from the date
(`day.toordinal() * 1_000_000 + n`), which does not fit in 32 bits.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Registry of all tables; `Base.metadata.create_all` is what `init-db` runs."""


class Store(Base):
    __tablename__ = "stores"

    store_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))


class Cashier(Base):
    __tablename__ = "cashiers"

    cashier_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.store_id"))
    name: Mapped[str] = mapped_column(String(200))


class Product(Base):
    __tablename__ = "products"

    product_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(100))
    age_restricted: Mapped[bool] = mapped_column(Boolean, default=False)


class Receipt(Base):
    __tablename__ = "receipts"

    receipt_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.store_id"))
    cashier_id: Mapped[int] = mapped_column(ForeignKey("cashiers.cashier_id"))
    # Indexed: every nightly query selects one day by a half-open range on it.
    ts: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    # NULL: nothing age-restricted was sold, so no check was needed.
    id_checked: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class ReceiptLine(Base):
    __tablename__ = "receipt_lines"

    receipt_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("receipts.receipt_id"), primary_key=True, autoincrement=False
    )
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.product_id"))
    quantity: Mapped[int] = mapped_column(Integer)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))


class CheckoutPhoto(Base):
    __tablename__ = "checkout_photos"

    photo_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    receipt_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("receipts.receipt_id"), nullable=True
    )
    path: Mapped[str] = mapped_column(String(1000))  # relative to the photo root
    taken_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class Run(Base):
    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    job: Mapped[str] = mapped_column(String(50))
    day: Mapped[dt.date] = mapped_column(Date, index=True)
    model_version: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(50))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    counts: Mapped[str] = mapped_column(Text, default="{}")  # JSON object, as text


class Quarantine(Base):
    """Photos a run could not use, with the reason, so operators can look at them."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(100))
    day: Mapped[dt.date] = mapped_column(Date, index=True)
    photo_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    path: Mapped[str] = mapped_column(String(1000))
    reason: Mapped[str] = mapped_column(String(50))
    detail: Mapped[str] = mapped_column(Text)


# --- marketing tables that `ageseg publish` fills, for analysts who live in SQL -------------
# Copies of the Parquet tables under the marketing root, one day at a time: aggregates only,
# with the same suppression (null numbers where a cell had fewer than min_cell receipts).


class MktSalesByAgeGroup(Base):
    """`sales_by_age_group` for one day per `day`: store x age group x category."""

    __tablename__ = "mkt_sales_by_age_group"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    store_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    age_group: Mapped[str] = mapped_column(String(20), primary_key=True)
    category: Mapped[str] = mapped_column(String(100), primary_key=True)
    store_name: Mapped[str] = mapped_column(String(200))
    receipts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    items: Mapped[int | None] = mapped_column(Integer, nullable=True)
    revenue: Mapped[Decimal | None] = mapped_column(Numeric(14, 2), nullable=True)
    share_of_store_revenue: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Corrected for the model's error (analytics/estimates.py): receipts the group's
    # shoppers really made, with a 90 % interval, and their revenue. Null where suppressed.
    est_receipts: Mapped[float | None] = mapped_column(Float, nullable=True)
    est_receipts_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    est_receipts_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    est_revenue: Mapped[Decimal | None] = mapped_column(Numeric(14, 2), nullable=True)
    suppressed: Mapped[bool] = mapped_column(Boolean)
    model_version: Mapped[str] = mapped_column(String(200))


class MktRecommendation(Base):
    """`recommendations` for one day per `day`; store_id is NULL on chain-wide rows."""

    __tablename__ = "mkt_recommendations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[dt.date] = mapped_column(Date, index=True)
    scope: Mapped[str] = mapped_column(String(10))  # "chain" or "store"
    store_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    store_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    age_group: Mapped[str] = mapped_column(String(20))
    level: Mapped[str] = mapped_column(String(10))  # "category" or "product"
    category: Mapped[str] = mapped_column(String(100))
    product_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    product_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    rank: Mapped[int] = mapped_column(Integer)
    receipts: Mapped[int] = mapped_column(Integer)
    items: Mapped[int] = mapped_column(Integer)
    revenue: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    group_receipts: Mapped[int] = mapped_column(Integer)
    share: Mapped[float] = mapped_column(Float)
    base_share: Mapped[float] = mapped_column(Float)
    lift: Mapped[float] = mapped_column(Float)
    lift_low: Mapped[float] = mapped_column(Float)
    # The same, from the corrected estimates (null on product rows and older days).
    est_share: Mapped[float | None] = mapped_column(Float, nullable=True)
    est_lift: Mapped[float | None] = mapped_column(Float, nullable=True)
    est_lift_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    window_start: Mapped[dt.date] = mapped_column(Date)
    window_end: Mapped[dt.date] = mapped_column(Date)
    window_days: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[str] = mapped_column(String(200))


class MktAgeMix(Base):
    """`age_mix` for one day per `day`: each store's (store_id NULL: the chain's) receipts
    per age group, observed and corrected, with the corrected share and its interval."""

    __tablename__ = "mkt_age_mix"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[dt.date] = mapped_column(Date, index=True)
    scope: Mapped[str] = mapped_column(String(10))  # "chain" or "store"
    store_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    store_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    age_group: Mapped[str] = mapped_column(String(20))
    receipts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    est_receipts: Mapped[float | None] = mapped_column(Float, nullable=True)
    est_receipts_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    est_receipts_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    est_share: Mapped[float | None] = mapped_column(Float, nullable=True)
    est_share_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    est_share_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    suppressed: Mapped[bool] = mapped_column(Boolean)
    model_version: Mapped[str] = mapped_column(String(200))


MARKETING_TABLES = (MktSalesByAgeGroup.__table__, MktRecommendation.__table__,
                    MktAgeMix.__table__)
# What the job writes: in its own database (--db-url) when the till data is read elsewhere.
JOB_TABLES = (Run.__table__, Quarantine.__table__, *MARKETING_TABLES)
