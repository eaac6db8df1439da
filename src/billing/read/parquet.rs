//! The Parquet reader: only the mapped columns are read, each through a typed `ColView`
//! (doubles as their shortest round-trip decimal text, decimals exact).

use ::parquet::arrow::ProjectionMask;
use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ::parquet::file::reader::ChunkReader;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float32Type, Float64Type, Int32Type, Int64Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{Array, ArrayRef, MapArray, PrimitiveArray};
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::billing::mapping::{Cell, Deviations, Row, normalize_header};
use crate::billing::{BillingError, BillingFormat, ParseSummary, Sink};

use super::emit::{Emitter, resolve};
pub(super) fn parse_parquet<R: ChunkReader + 'static>(
    name: &str,
    reader: R,
    hint: Option<BillingFormat>,
    sink: &mut Sink<'_>,
) -> Result<ParseSummary, BillingError> {
    let pq_err = |e: ::parquet::errors::ParquetError| BillingError::Io {
        file: name.to_string(),
        detail: format!("Parquet: {e}"),
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(reader).map_err(pq_err)?;
    let schema = builder.schema().clone();
    let header: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| normalize_header(f.name()))
        .collect();
    let mut dev = Deviations::default();
    let (format, variant, plan) = resolve(name, header, hint, &mut dev)?;
    let needed = plan.needed_columns();
    let mask = ProjectionMask::roots(builder.parquet_schema(), needed.iter().copied());
    let batches = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(pq_err)?;
    let mut em = Emitter::new(format, variant, dev, sink);
    let mut rowno = 0u64;
    for batch in batches {
        let batch = batch.map_err(|e| BillingError::Io {
            file: name.to_string(),
            detail: format!("Parquet (after row {rowno}): {e}"),
        })?;
        let bschema = batch.schema();
        let mut views: Vec<ColView<'_>> = (0..plan.header.len()).map(|_| ColView::Absent).collect();
        let mut names: Vec<(usize, &str)> = Vec::with_capacity(needed.len());
        for &i in &needed {
            let field_name = schema.field(i).name();
            if let Ok(j) = bschema.index_of(field_name) {
                views[i] = ColView::new(batch.column(j));
                names.push((i, field_name));
            }
        }
        for r in 0..batch.num_rows() {
            rowno += 1;
            em.row(
                &plan,
                &PqRow {
                    views: &views,
                    names: &names,
                    r,
                    line: rowno,
                },
            )?;
        }
    }
    em.finish()
}

/// A Parquet column downcast once per batch.
pub(super) enum ColView<'a> {
    Absent,
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Utf8View(&'a arrow_array::StringViewArray),
    DictUtf8(
        &'a arrow_array::DictionaryArray<Int32Type>,
        &'a arrow_array::StringArray,
    ),
    F64(&'a PrimitiveArray<Float64Type>),
    F32(&'a PrimitiveArray<Float32Type>),
    I64(&'a PrimitiveArray<Int64Type>),
    I32(&'a PrimitiveArray<Int32Type>),
    Dec128(&'a arrow_array::Decimal128Array, i8),
    Bool(&'a arrow_array::BooleanArray),
    TsS(&'a PrimitiveArray<TimestampSecondType>),
    TsMs(&'a PrimitiveArray<TimestampMillisecondType>),
    TsUs(&'a PrimitiveArray<TimestampMicrosecondType>),
    TsNs(&'a PrimitiveArray<TimestampNanosecondType>),
    Date32(&'a PrimitiveArray<Date32Type>),
    Date64(&'a PrimitiveArray<Date64Type>),
    Map(&'a MapArray),
    Other(&'a dyn Array),
}

impl<'a> ColView<'a> {
    pub(super) fn new(a: &'a ArrayRef) -> Self {
        match a.data_type() {
            DataType::Utf8 => ColView::Utf8(a.as_string::<i32>()),
            DataType::LargeUtf8 => ColView::LargeUtf8(a.as_string::<i64>()),
            DataType::Utf8View => ColView::Utf8View(a.as_string_view()),
            DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
                let d = a.as_dictionary::<Int32Type>();
                ColView::DictUtf8(d, d.values().as_string::<i32>())
            }
            DataType::Float64 => ColView::F64(a.as_primitive()),
            DataType::Float32 => ColView::F32(a.as_primitive()),
            DataType::Int64 => ColView::I64(a.as_primitive()),
            DataType::Int32 => ColView::I32(a.as_primitive()),
            DataType::Decimal128(_, s) => ColView::Dec128(a.as_primitive(), *s),
            DataType::Boolean => ColView::Bool(a.as_boolean()),
            DataType::Timestamp(TimeUnit::Second, _) => ColView::TsS(a.as_primitive()),
            DataType::Timestamp(TimeUnit::Millisecond, _) => ColView::TsMs(a.as_primitive()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => ColView::TsUs(a.as_primitive()),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => ColView::TsNs(a.as_primitive()),
            DataType::Date32 => ColView::Date32(a.as_primitive()),
            DataType::Date64 => ColView::Date64(a.as_primitive()),
            DataType::Map(_, _) => ColView::Map(a.as_map()),
            _ => ColView::Other(a.as_ref()),
        }
    }

    pub(super) fn cell(&self, r: usize) -> Cell<'_> {
        fn time(t: Option<DateTime<Utc>>) -> Cell<'static> {
            t.map_or(Cell::Bad("timestamp out of range"), Cell::Time)
        }
        macro_rules! nn {
            ($a:expr) => {
                if $a.is_null(r) {
                    return Cell::Null;
                }
            };
        }
        match self {
            ColView::Absent => Cell::Null,
            ColView::Utf8(a) => {
                nn!(a);
                Cell::Text(a.value(r))
            }
            ColView::LargeUtf8(a) => {
                nn!(a);
                Cell::Text(a.value(r))
            }
            ColView::Utf8View(a) => {
                nn!(a);
                Cell::Text(a.value(r))
            }
            ColView::DictUtf8(d, values) => {
                nn!(d);
                let k = d.keys().value(r);
                if k < 0 || k as usize >= values.len() || values.is_null(k as usize) {
                    return Cell::Null;
                }
                Cell::Text(values.value(k as usize))
            }
            ColView::F64(a) => {
                nn!(a);
                Cell::Float(a.value(r))
            }
            ColView::F32(a) => {
                nn!(a);
                // Shortest text of the f32, not of its widened f64.
                match format!("{}", a.value(r)).parse::<f64>() {
                    Ok(x) => Cell::Float(x),
                    Err(_) => Cell::Bad("invalid float"),
                }
            }
            ColView::I64(a) => {
                nn!(a);
                Cell::Int(a.value(r))
            }
            ColView::I32(a) => {
                nn!(a);
                Cell::Int(a.value(r) as i64)
            }
            ColView::Dec128(a, s) => {
                nn!(a);
                decimal128_cell(a.value(r), *s)
            }
            ColView::Bool(a) => {
                nn!(a);
                Cell::Bool(a.value(r))
            }
            ColView::TsS(a) => {
                nn!(a);
                time(DateTime::from_timestamp(a.value(r), 0))
            }
            ColView::TsMs(a) => {
                nn!(a);
                time(DateTime::from_timestamp_millis(a.value(r)))
            }
            ColView::TsUs(a) => {
                nn!(a);
                time(DateTime::from_timestamp_micros(a.value(r)))
            }
            ColView::TsNs(a) => {
                nn!(a);
                Cell::Time(DateTime::from_timestamp_nanos(a.value(r)))
            }
            ColView::Date32(a) => {
                nn!(a);
                time(DateTime::from_timestamp(a.value(r) as i64 * 86_400, 0))
            }
            ColView::Date64(a) => {
                nn!(a);
                time(DateTime::from_timestamp_millis(a.value(r)))
            }
            ColView::Map(m) => {
                nn!(m);
                let offs = m.value_offsets();
                let (start, end) = (offs[r] as usize, offs[r + 1] as usize);
                let (Some(keys), Some(vals)) = (
                    m.keys().as_string_opt::<i32>(),
                    m.values().as_string_opt::<i32>(),
                ) else {
                    return Cell::Bad("map column without string keys and values");
                };
                let pairs = (start..end)
                    .filter(|&j| !keys.is_null(j))
                    .map(|j| (keys.value(j), (!vals.is_null(j)).then(|| vals.value(j))))
                    .collect();
                Cell::Pairs(pairs)
            }
            ColView::Other(a) => {
                nn!(a);
                Cell::Bad("unsupported Parquet column type")
            }
        }
    }
}

/// A Parquet DECIMAL(p, s) value: exact when it fits `Decimal` (trailing zeros dropped if
/// needed), else its text, which the mapping rounds to 28 digits and counts.
pub(super) fn decimal128_cell(v: i128, scale: i8) -> Cell<'static> {
    if scale < 0 {
        let int = 10i128
            .checked_pow(u32::from(scale.unsigned_abs()))
            .and_then(|m| v.checked_mul(m));
        return match int {
            Some(i) => decimal128_cell(i, 0),
            None => Cell::Owned(format!("{v}e{}", -i32::from(scale))),
        };
    }
    let (mut v, mut s) = (v, scale as u32);
    loop {
        if let Ok(d) = Decimal::try_from_i128_with_scale(v, s) {
            return Cell::Dec(d);
        }
        if s == 0 || v % 10 != 0 {
            break;
        }
        v /= 10;
        s -= 1;
    }
    let digits = v.unsigned_abs().to_string();
    let sign = if v < 0 { "-" } else { "" };
    let s = s as usize;
    Cell::Owned(if s == 0 {
        format!("{sign}{digits}")
    } else if digits.len() > s {
        let (i, f) = digits.split_at(digits.len() - s);
        format!("{sign}{i}.{f}")
    } else {
        format!("{sign}0.{}{digits}", "0".repeat(s - digits.len()))
    })
}

pub(super) struct PqRow<'v, 'a> {
    pub(super) views: &'v [ColView<'a>],
    pub(super) names: &'v [(usize, &'v str)],
    pub(super) r: usize,
    pub(super) line: u64,
}

impl Row for PqRow<'_, '_> {
    fn line(&self) -> u64 {
        self.line
    }
    #[inline]
    fn cell(&self, col: usize) -> Cell<'_> {
        match self.views.get(col) {
            Some(v) => v.cell(self.r),
            None => Cell::Null,
        }
    }
    fn raw(&self) -> String {
        let mut out = String::new();
        for (i, name) in self.names {
            let v = match self.cell(*i) {
                Cell::Null => continue,
                Cell::Text(s) => s.to_string(),
                Cell::Owned(s) => s,
                Cell::Float(x) => format!("{x}"),
                Cell::Int(x) => x.to_string(),
                Cell::Dec(d) => d.normalize().to_string(),
                Cell::Bool(b) => b.to_string(),
                Cell::Time(t) => t.to_rfc3339(),
                Cell::Pairs(p) => format!("{p:?}"),
                Cell::Bad(r) => format!("<{r}>"),
            };
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(name);
            out.push('=');
            out.push_str(&v);
            if out.len() > 2 * crate::billing::mapping::RAW_LIMIT {
                break;
            }
        }
        out
    }
}
