//! `quid export usage --format parquet`: the CSV export's columns as a Parquet file (DuckDB,
//! pandas and Spark read it directly), written in row groups as the store streams rows, so
//! memory stays at one row group however long the export. Uncompressed: the crate is built
//! without codecs to keep the build small.

use std::{io::Write, sync::Arc};

use parquet::{
    data_type::{ByteArray, ByteArrayType, Int64Type},
    errors::ParquetError,
    file::{properties::WriterProperties, writer::SerializedFileWriter},
    schema::parser::parse_message_type,
};

use crate::store::{COUNTERS, ExportError, ExportRow, Resolution, Store};

/// Rows per row group: about 6 MB of columns in memory.
const ROW_GROUP: usize = 65_536;

/// The schema: the subscriber as a string, the bucket as UTC timestamps (milliseconds, as
/// DuckDB and pandas expect), the eight counters as unsigned 64-bit integers.
fn schema() -> String {
    let counters: String = COUNTERS
        .iter()
        .map(|c| format!("REQUIRED INT64 {c} (INTEGER(64,false));\n"))
        .collect();
    format!(
        "message usage {{
            REQUIRED BYTE_ARRAY subscriber (UTF8);
            REQUIRED INT64 start (TIMESTAMP(MILLIS,true));
            REQUIRED INT64 end (TIMESTAMP(MILLIS,true));
            {counters}
        }}"
    )
}

/// One row group's columns.
#[derive(Default)]
struct Columns {
    subscriber: Vec<ByteArray>,
    /// start, end, then the counters in `COUNTERS` order, as Parquet's INT64 (the counters'
    /// bits: a u64 above i64::MAX reads back whole as the unsigned logical type).
    ints: [Vec<i64>; 2 + COUNTERS.len()],
}

impl Columns {
    fn push(&mut self, r: &ExportRow<'_>) {
        self.subscriber.push(ByteArray::from(r.subscriber));
        self.ints[0].push(r.start.saturating_mul(1_000));
        self.ints[1].push(r.end.saturating_mul(1_000));
        for (i, p) in r.counters.pairs.iter().enumerate() {
            self.ints[2 + 2 * i].push(p.packets.cast_signed());
            self.ints[3 + 2 * i].push(p.bytes.cast_signed());
        }
    }

    /// Writes the rows held as one row group and empties them.
    fn flush<W: Write + Send>(
        &mut self,
        w: &mut SerializedFileWriter<W>,
    ) -> Result<(), ParquetError> {
        if self.subscriber.is_empty() {
            return Ok(());
        }
        write_group(w, std::slice::from_ref(&self.subscriber), &self.ints)?;
        self.subscriber.clear();
        self.ints.iter_mut().for_each(Vec::clear);
        Ok(())
    }
}

/// Writes one row group: the `text` columns, then the `ints` columns, in schema order.
pub(super) fn write_group<W: Write + Send>(
    w: &mut SerializedFileWriter<W>,
    text: &[Vec<ByteArray>],
    ints: &[Vec<i64>],
) -> Result<(), ParquetError> {
    let mut group = w.next_row_group()?;
    for values in text {
        if let Some(mut col) = group.next_column()? {
            col.typed::<ByteArrayType>()
                .write_batch(values, None, None)?;
            col.close()?;
        }
    }
    for values in ints {
        if let Some(mut col) = group.next_column()? {
            col.typed::<Int64Type>().write_batch(values, None, None)?;
            col.close()?;
        }
    }
    group.close()?;
    Ok(())
}

/// Writes every subscriber's rows at `resolution` starting in `[from, to)` to `out` as
/// Parquet; returns the rows written.
pub fn write<W: Write + Send>(
    store: &Store,
    resolution: Resolution,
    from: i64,
    to: i64,
    out: W,
) -> Result<u64, ExportError> {
    write_in_groups(store, resolution, from, to, out, ROW_GROUP)
}

/// [`write`] with `group` rows per row group.
pub(super) fn write_in_groups<W: Write + Send>(
    store: &Store,
    resolution: Resolution,
    from: i64,
    to: i64,
    out: W,
    group: usize,
) -> Result<u64, ExportError> {
    let failed = |e: ParquetError| ExportError::Write(std::io::Error::other(e));
    let schema = Arc::new(parse_message_type(&schema()).map_err(failed)?);
    let props = Arc::new(WriterProperties::builder().build());
    let mut w = SerializedFileWriter::new(out, schema, props).map_err(failed)?;
    let mut cols = Columns::default();
    let n = store.export_usage(resolution, from, to, |r| {
        cols.push(r);
        if cols.subscriber.len() >= group {
            cols.flush(&mut w).map_err(std::io::Error::other)?;
        }
        Ok(())
    })?;
    cols.flush(&mut w).map_err(failed)?;
    w.close().map_err(failed)?;
    Ok(n)
}
