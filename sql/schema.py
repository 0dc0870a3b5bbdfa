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
