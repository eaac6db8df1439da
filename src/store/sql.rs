//! The one way SQL is shared by the two backends. A statement is written once, in Postgres
//! spelling (`$N` placeholders, `IS NOT DISTINCT FROM`); `both!` expands the code that runs
//! it once per backend, handing it that backend's store (or transaction) and its `spell`
//! (`sqlite_spelling` or `postgres_spelling`), so binds and row reads are written once too.
//! Money crosses with `BindMoney::bind_money` and `MoneyRow::money`: exact decimal TEXT on
//! SQLite, NUMERIC on Postgres. Only SQL that really differs is written per backend: bulk
//! writes (COPY, UNNEST, multi-row `INSERT OR FAIL`), locks and leases, sums.
use std::borrow::Cow;

use rust_decimal::Decimal;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Postgres, Row, Sqlite};

use super::StoreError;

/// A statement written for Postgres, as SQLite spells it: `$N` placeholders become `?N` and
/// `IS NOT DISTINCT FROM` becomes `IS` (SQLite's null-safe equality).
pub(crate) fn sqlite_spelling(sql: &str) -> Cow<'_, str> {
    if sql.contains('$') || sql.contains("IS NOT DISTINCT FROM") {
        Cow::Owned(sql.replace("IS NOT DISTINCT FROM", "IS").replace('$', "?"))
    } else {
        Cow::Borrowed(sql)
    }
}

/// A statement as Postgres spells it: as written.
pub(crate) fn postgres_spelling(sql: &str) -> Cow<'_, str> {
    Cow::Borrowed(sql)
}

/// Runs `$body` once per backend of `$on` (a `Store`, or any enum of `$Enum::Sqlite` and
/// `$Enum::Postgres`), with `$s` bound to that backend's value and `$spell` to its
/// spelling of a statement written for Postgres.
macro_rules! both {
    ($on:expr, $Enum:ident, |$s:ident, $spell:ident| $body:expr) => {
        match $on {
            $Enum::Sqlite($s) => {
                let $spell = $crate::store::sql::sqlite_spelling;
                $body
            }
            $Enum::Postgres($s) => {
                let $spell = $crate::store::sql::postgres_spelling;
                $body
            }
        }
    };
}
pub(crate) use both;

/// Exact decimal text, as SQLite keeps money.
pub(crate) fn money_text(d: Decimal) -> String {
    d.normalize().to_string()
}

/// Binds an amount the way the backend keeps money.
pub(crate) trait BindMoney: Sized {
    fn bind_money(self, d: Decimal) -> Self;
    fn bind_opt_money(self, d: Option<Decimal>) -> Self;
}

impl<'q> BindMoney for Query<'q, Sqlite, SqliteArguments<'q>> {
    fn bind_money(self, d: Decimal) -> Self {
        self.bind(money_text(d))
    }
    fn bind_opt_money(self, d: Option<Decimal>) -> Self {
        self.bind(d.map(money_text))
    }
}

impl<'q> BindMoney for Query<'q, Postgres, PgArguments> {
    fn bind_money(self, d: Decimal) -> Self {
        self.bind(d.normalize())
    }
    fn bind_opt_money(self, d: Option<Decimal>) -> Self {
        self.bind(d.map(|d| d.normalize()))
    }
}

/// Reads an amount the way the backend keeps money; `table` names it in a `Corrupt` error.
pub(crate) trait MoneyRow {
    fn opt_money(&self, i: usize, table: &'static str) -> Result<Option<Decimal>, StoreError>;

    fn money(&self, i: usize, table: &'static str) -> Result<Decimal, StoreError> {
        self.opt_money(i, table)?
            .ok_or_else(|| StoreError::Corrupt {
                table,
                detail: format!("column {i} is NULL"),
            })
    }
}

impl MoneyRow for SqliteRow {
    fn opt_money(&self, i: usize, table: &'static str) -> Result<Option<Decimal>, StoreError> {
        self.try_get::<Option<&str>, _>(i)?
            .map(|s| {
                crate::domain::money::parse_amount(s).map_err(|e| StoreError::Corrupt {
                    table,
                    detail: e.to_string(),
                })
            })
            .transpose()
    }

    fn money(&self, i: usize, table: &'static str) -> Result<Decimal, StoreError> {
        let s: &str = self.try_get(i)?;
        crate::domain::money::parse_amount(s).map_err(|e| StoreError::Corrupt {
            table,
            detail: e.to_string(),
        })
    }
}

impl MoneyRow for PgRow {
    fn opt_money(&self, i: usize, _: &'static str) -> Result<Option<Decimal>, StoreError> {
        Ok(self
            .try_get::<Option<Decimal>, _>(i)?
            .map(|d| d.normalize()))
    }

    fn money(&self, i: usize, _: &'static str) -> Result<Decimal, StoreError> {
        Ok(self.try_get::<Decimal, _>(i)?.normalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_reads_postgres_placeholders_and_null_safe_equality() {
        assert_eq!(
            sqlite_spelling("UPDATE t SET a = $2 WHERE id = $1 AND b IS NOT DISTINCT FROM $10"),
            "UPDATE t SET a = ?2 WHERE id = ?1 AND b IS ?10"
        );
        assert!(matches!(
            sqlite_spelling("SELECT COUNT(*) FROM t"),
            Cow::Borrowed(_)
        ));
        assert_eq!(postgres_spelling("a = $1"), "a = $1");
    }

    #[test]
    fn money_text_is_exact_and_normalised() {
        assert_eq!(money_text("1.50000".parse().unwrap()), "1.5");
        assert_eq!(
            money_text("0.000000000001".parse().unwrap()),
            "0.000000000001"
        );
    }
}
