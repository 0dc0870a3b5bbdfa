"""What the job reads from the till (source) database, and a check that it is all there.

A chain's till database has its own table and column names; it is mapped onto these names
with views (README, "Running on a chain's till database"; sql/examples/till_views.sql).
`source_problems` lists every table, column and type that does not fit, so an operator
fixes the views once instead of meeting one error per night.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from sql.engine import describe_error, is_transient

# Kinds of column the job's queries rely on, and what each accepts.
INTEGER, NUMBER, TEXT, BOOLEAN, TIMESTAMP = ("integer", "number", "text", "boolean",
                                             "timestamp")

# table -> column -> kind. Exactly what sql/queries.py and sql/day_reads.py select; the
# till's `cashiers` table is not read (receipts carry the cashier id).
SOURCE_COLUMNS: dict[str, dict[str, str]] = {
    "stores": {"store_id": INTEGER, "name": TEXT},
    "products": {"product_id": INTEGER, "name": TEXT, "category": TEXT,
                 "age_restricted": BOOLEAN},
    "receipts": {"receipt_id": INTEGER, "store_id": INTEGER, "cashier_id": INTEGER,
                 "ts": TIMESTAMP, "id_checked": BOOLEAN},
    "receipt_lines": {"receipt_id": INTEGER, "product_id": INTEGER, "quantity": INTEGER,
                      "amount": NUMBER},
    "checkout_photos": {"photo_id": INTEGER, "receipt_id": INTEGER, "path": TEXT,
                        "taken_at": TIMESTAMP},
}

KIND_HELP = {
    INTEGER: "an integer type",
    NUMBER: "a number (numeric, decimal, float or integer; money in currency units)",
    TEXT: "a text type",
    BOOLEAN: "boolean",
    TIMESTAMP: "timestamp without time zone (local shop time)",
}


class SourceIncomplete(Exception):
    """The source lacks tables or columns the job reads, or has them with wrong types; the
    message lists every problem at once."""

    def __init__(self, problems: Sequence[str]):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def source_problems(engine: sa.Engine, search_path: Sequence[str] = ()) -> list[str]:
    """Every missing table or view, missing column, wrong type and unreadable table of the
    source, one phrase each; empty when the job can read everything it needs.

    Tables are looked up as the job's queries will find them: in `search_path` order (the
    connection's own default schema when empty). Missing SELECT privileges on the needed
    columns show up here too.
    """
    inspector = sa.inspect(engine)
    schemas: Sequence[str | None] = list(search_path) or [None]
    relations = {schema: _relations(inspector, schema) for schema in schemas}
    problems: list[str] = []
    for table, wanted in SOURCE_COLUMNS.items():
        schema = next((s for s in schemas if table in relations[s]), "")
        if schema == "":
            problems.append(f"missing table or view {table}")
            continue
        columns = {c["name"]: c["type"] for c in inspector.get_columns(table, schema=schema)}
        missing = [name for name in wanted if name not in columns]
        if missing:
            problems.append(f"{table} lacks column(s) {', '.join(missing)}")
        for name, kind in wanted.items():
            if name in columns and not _fits(columns[name], kind):
                problems.append(f"{table}.{name} is {_type_name(columns[name], engine)}, "
                                f"needs {KIND_HELP[kind]}")
        if not missing:
            problems.extend(_unreadable(engine, table, schema, wanted))
    return problems


def check_source(engine: sa.Engine, search_path: Sequence[str] = ()) -> None:
    """Raise SourceIncomplete listing every problem `source_problems` finds."""
    problems = source_problems(engine, search_path)
    if problems:
        raise SourceIncomplete(problems)


def _relations(inspector: sa.Inspector, schema: str | None) -> set[str]:
    names = set(inspector.get_table_names(schema=schema))
    names |= set(inspector.get_view_names(schema=schema))
    if inspector.dialect.name == "postgresql":
        names |= set(inspector.get_materialized_view_names(schema=schema))
    return names


def _fits(column_type: sa.types.TypeEngine, kind: str) -> bool:
    if isinstance(column_type, sa.types.NullType):
        return True  # a SQLite view's computed column has no declared type: cannot tell
    if kind == INTEGER:
        return isinstance(column_type, sa.Integer)
    if kind == NUMBER:
        return isinstance(column_type, (sa.Integer, sa.Numeric))
    if kind == TEXT:
        return isinstance(column_type, sa.String)
    if kind == BOOLEAN:
        return isinstance(column_type, sa.Boolean)
    if kind == TIMESTAMP:
        return isinstance(column_type, sa.DateTime) and not getattr(column_type, "timezone",
                                                                     False)
    raise ValueError(f"unknown column kind {kind!r}")


def _type_name(column_type: sa.types.TypeEngine, engine: sa.Engine) -> str:
    try:
        return column_type.compile(dialect=engine.dialect).lower()
    except Exception:  # a type the dialect cannot render
        return type(column_type).__name__.lower()


def _unreadable(engine: sa.Engine, table: str, schema: str | None,
                wanted: dict[str, str]) -> list[str]:
    """Whether the needed columns can be read: on PostgreSQL asked of the catalog (a probe
    SELECT would wait behind any lock on a busy till table), elsewhere by reading zero rows,
    which also finds a view over a table that is gone (SQLite allows those)."""
    if engine.dialect.name == "postgresql":
        return _denied_columns(engine, table, schema, wanted)
    select = sa.select(*(sa.column(name) for name in wanted)).select_from(
        sa.table(table)).where(sa.false())
    try:
        with engine.connect() as conn:
            conn.execute(select).all()
    except sa.exc.DBAPIError as exc:
        if is_transient(exc):  # the connection, not the table: with_retries' business
            raise
        return [f"{table} cannot be read: {describe_error(exc)}"]
    return []


def _denied_columns(engine: sa.Engine, table: str, schema: str | None,
                    wanted: dict[str, str]) -> list[str]:
    quote = engine.dialect.identifier_preparer
    name = quote.quote(table) if schema is None else \
        f"{quote.quote_schema(schema)}.{quote.quote(table)}"
    query = sa.text("SELECT has_column_privilege(CAST(:rel AS regclass), :col, 'SELECT')")
    with engine.connect() as conn:
        denied = [col for col in wanted
                  if not conn.execute(query, {"rel": name, "col": col}).scalar()]
    if not denied:
        return []
    return [f"{table} cannot be read: permission denied (no SELECT on {', '.join(denied)})"]
