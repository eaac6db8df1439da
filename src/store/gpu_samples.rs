//! GPU utilisation samples (`gpu_sample`, migration 0011): the bulk insert every source
//! (dcgm scrape, Prometheus query, agent push) writes through, the read that warms the idle
//! policy's in-memory windows at start, the newest sample's time (the feed breaker) and the
//! retention prune. `at` is stored as Unix milliseconds on both backends.
//!
//! The insert is the hot path (agents push every 15 s per GPU): SQLite takes multi-row
//! `INSERT`s of a few fixed shapes, each prepared once, in one transaction; Postgres takes
//! one binary `COPY`. Samples are not validated here: callers keep only what
//! `GpuSample::validate` accepts.
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::Row;

use super::sql::both;
use super::{Store, StoreError};
use crate::domain::fleet::{GpuSample, SampleSource};

/// Columns of a `gpu_sample` insert, in bind (and COPY) order.
const COLS: &str = "instance_id, gpu, at, utilization, memory_mib, power_watts, source";
const N_COLS: usize = 7;

/// Rows per SQLite INSERT (7 parameters each, well under SQLite's 32,766): `fixed_chunks`
/// of this size, so a batch of any length uses at most 11 statement shapes.
const SQLITE_CHUNK: usize = 1024;

/// Bytes of COPY data handed to Postgres at a time.
const COPY_BUFFER: usize = 1 << 20;

fn corrupt(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table: "gpu_sample",
        detail: detail.to_string(),
    }
}

/// The stored word of a sample's source back as a `SampleSource`.
fn source_from_word(s: &str) -> Result<SampleSource, StoreError> {
    match s {
        "dcgm" => Ok(SampleSource::Dcgm),
        "prometheus" => Ok(SampleSource::Prometheus),
        "push" => Ok(SampleSource::Push),
        other => Err(corrupt(format!("unknown source {other:?}"))),
    }
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| corrupt(format!("at {ms} ms is out of range")))
}

/// The SQLite INSERT for `rows` rows (a power of two up to `SQLITE_CHUNK`), built once per
/// shape.
fn sqlite_insert(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    debug_assert!(rows.is_power_of_two() && rows <= SQLITE_CHUNK);
    let all = SQL.get_or_init(|| {
        (0..=SQLITE_CHUNK.trailing_zeros())
            .map(|p| super::sqlite_insert_sql("gpu_sample", COLS, N_COLS, 1 << p))
            .collect()
    });
    &all[rows.trailing_zeros() as usize]
}

/// One sample as a binary COPY tuple of `gpu_sample`, in `COLS` order.
fn copy_row(out: &mut Vec<u8>, s: &GpuSample) {
    use super::pgcopy::{float8, int8, opt_float8, text};
    out.extend_from_slice(&(N_COLS as i16).to_be_bytes());
    text(out, &s.instance_id);
    text(out, &s.gpu);
    int8(out, s.at.timestamp_millis());
    float8(out, s.utilization_percent);
    opt_float8(out, s.memory_used_mib);
    opt_float8(out, s.power_watts);
    text(out, s.source.as_str());
}

/// The same code over a `SqliteRow` or a `PgRow` (columns in `COLS` order).
macro_rules! sample_from_row {
    ($r:expr) => {
        GpuSample {
            instance_id: $r.try_get(0)?,
            gpu: $r.try_get(1)?,
            at: from_millis($r.try_get(2)?)?,
            utilization_percent: $r.try_get(3)?,
            memory_used_mib: $r.try_get(4)?,
            power_watts: $r.try_get(5)?,
            source: source_from_word($r.try_get(6)?)?,
        }
    };
}

impl Store {
    /// Stores `samples` in one transaction (SQLite) or one COPY (Postgres): all of them or,
    /// on error, none. Returns how many were stored. `at` keeps millisecond precision.
    pub async fn insert_gpu_samples(&self, samples: &[GpuSample]) -> Result<u64, StoreError> {
        if samples.is_empty() {
            return Ok(0);
        }
        match self {
            Store::Sqlite(s) => {
                use sqlx::Arguments as _;
                let mut tx = s.pool().begin().await?;
                for chunk in super::fixed_chunks(samples, SQLITE_CHUNK) {
                    let mut args = sqlx::sqlite::SqliteArguments::default();
                    args.reserve(chunk.len() * N_COLS, 0);
                    for x in chunk {
                        let bad =
                            |e| corrupt(format!("encoding a sample of {}: {e}", x.instance_id));
                        args.add(x.instance_id.as_str()).map_err(bad)?;
                        args.add(x.gpu.as_str()).map_err(bad)?;
                        args.add(x.at.timestamp_millis()).map_err(bad)?;
                        args.add(x.utilization_percent).map_err(bad)?;
                        args.add(x.memory_used_mib).map_err(bad)?;
                        args.add(x.power_watts).map_err(bad)?;
                        args.add(x.source.as_str()).map_err(bad)?;
                    }
                    sqlx::query_with(sqlite_insert(chunk.len()), args)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            Store::Postgres(p) => {
                use sqlx::postgres::PgPoolCopyExt as _;
                let mut copy = p
                    .pool()
                    .copy_in_raw(&format!(
                        "COPY gpu_sample ({COLS}) FROM STDIN WITH (FORMAT binary)"
                    ))
                    .await?;
                let mut buf = Vec::with_capacity(COPY_BUFFER + 256);
                super::pgcopy::header(&mut buf);
                for x in samples {
                    copy_row(&mut buf, x);
                    if buf.len() >= COPY_BUFFER {
                        copy.send(std::mem::take(&mut buf)).await?;
                        buf.reserve(COPY_BUFFER + 256);
                    }
                }
                super::pgcopy::trailer(&mut buf);
                copy.send(buf).await?;
                copy.finish().await?;
            }
        }
        Ok(samples.len() as u64)
    }

    /// Every sample at or after `since`, oldest first (ties in instance, GPU order): what
    /// the idle policy's windows start from when the server starts.
    pub async fn gpu_samples_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<GpuSample>, StoreError> {
        const SQL: &str = "SELECT instance_id, gpu, at, utilization, memory_mib, power_watts, \
             source FROM gpu_sample WHERE at >= $1 ORDER BY at, instance_id, gpu";
        let since = since.timestamp_millis();
        both!(self, Store, |s, spell| {
            let sql = spell(SQL);
            let mut rows = sqlx::query(&sql).bind(since).fetch(s.pool());
            let mut out = Vec::new();
            while let Some(r) = rows.try_next().await? {
                out.push(sample_from_row!(r));
            }
            Ok(out)
        })
    }

    /// The time of the newest sample from any source; `None` when there is none. The
    /// breaker reads it: a feed that has gone silent stops every action.
    pub async fn latest_gpu_sample_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        const SQL: &str = "SELECT MAX(at) FROM gpu_sample";
        let ms: Option<i64> = both!(self, Store, |s, _spell| {
            sqlx::query_scalar(SQL).fetch_one(s.pool()).await?
        });
        ms.map(from_millis).transpose()
    }

    /// Deletes the samples older than `before` (retention); returns how many.
    pub async fn prune_gpu_samples(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM gpu_sample WHERE at < $1";
        let before = before.timestamp_millis();
        both!(self, Store, |s, spell| {
            Ok(sqlx::query(&spell(SQL))
                .bind(before)
                .execute(s.pool())
                .await?
                .rows_affected())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_source_word_reads_back() {
        for s in [
            SampleSource::Dcgm,
            SampleSource::Prometheus,
            SampleSource::Push,
        ] {
            assert_eq!(source_from_word(s.as_str()).unwrap(), s);
        }
        assert!(source_from_word("carrier-pigeon").is_err());
    }

    #[test]
    fn sqlite_statements_have_one_placeholder_per_column() {
        for rows in [1, 2, 64, SQLITE_CHUNK] {
            assert_eq!(sqlite_insert(rows).matches('?').count(), rows * N_COLS);
        }
    }

    #[test]
    fn a_copy_row_has_its_field_count_and_nulls() {
        let mut out = Vec::new();
        copy_row(
            &mut out,
            &GpuSample {
                instance_id: "i-1".into(),
                gpu: "0".into(),
                at: DateTime::from_timestamp_millis(1_500).unwrap(),
                utilization_percent: 12.5,
                memory_used_mib: None,
                power_watts: Some(70.0),
                source: SampleSource::Push,
            },
        );
        assert_eq!(&out[..2], &7i16.to_be_bytes());
        // "i-1": length 3 then the bytes.
        assert_eq!(&out[2..9], &[0, 0, 0, 3, b'i', b'-', b'1']);
        // gpu "0", then at = 1500 ms.
        assert_eq!(&out[9..14], &[0, 0, 0, 1, b'0']);
        assert_eq!(&out[14..18], &8i32.to_be_bytes());
        assert_eq!(&out[18..26], &1500i64.to_be_bytes());
        assert_eq!(&out[30..38], &12.5f64.to_bits().to_be_bytes());
        // memory is NULL: length -1 and no bytes.
        assert_eq!(&out[38..42], &(-1i32).to_be_bytes());
        assert_eq!(&out[46..54], &70f64.to_bits().to_be_bytes());
        assert_eq!(&out[54..], &[0, 0, 0, 4, b'p', b'u', b's', b'h']);
    }
}
