//! How domain values are kept in SQLite: entry kinds and report outcomes as the text of their
//! `as_str` (the text the hash chain covers, and that older quid wrote), read back with an
//! error for any text quid does not know.

use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::{ledger::chain::EntryKind, settlement::outcome::Outcome};

/// A text column parsed as `T`, or an error carrying the parse error.
fn parse<T>(value: ValueRef<'_>) -> FromSqlResult<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    value
        .as_str()?
        .parse()
        .map_err(|e| FromSqlError::Other(Box::new(e)))
}

impl ToSql for EntryKind {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for EntryKind {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        parse(value)
    }
}

impl ToSql for Outcome {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Outcome {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        parse(value)
    }
}
