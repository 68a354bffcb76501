//! `quid export usage --format parquet`: the CSV export's columns as a Parquet file (DuckDB,
//! pandas and Spark read it directly), written in row groups as the store streams rows, so
//! memory stays at one row group however long the export. Uncompressed: the crate is built
//! without codecs to keep the build small.

use std::{io::Write, sync::Arc};

use parquet::{
    data_type::{ByteArray, ByteArrayType, Int64Type},
    errors::ParquetError,
    file::{
        properties::{EnabledStatistics, WriterProperties},
        writer::SerializedFileWriter,
    },
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
    /// The subscriber names end to end, and where each row's ends: one buffer per row group
    /// rather than an allocation per row.
    names: Vec<u8>,
    ends: Vec<usize>,
    /// start, end, then the counters in `COUNTERS` order, as Parquet's INT64 (the counters'
    /// bits: a u64 above i64::MAX reads back whole as the unsigned logical type).
    ints: [Vec<i64>; 2 + COUNTERS.len()],
}

impl Columns {
    fn push(&mut self, r: &ExportRow<'_>) {
        self.names.extend_from_slice(r.subscriber.as_bytes());
        self.ends.push(self.names.len());
        self.ints[0].push(r.start.saturating_mul(1_000));
        self.ints[1].push(r.end.saturating_mul(1_000));
        for (i, p) in r.counters.pairs.iter().enumerate() {
            self.ints[2 + 2 * i].push(p.packets.cast_signed());
            self.ints[3 + 2 * i].push(p.bytes.cast_signed());
        }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Writes the rows held as one row group and empties them.
    fn flush<W: Write + Send>(
        &mut self,
        w: &mut SerializedFileWriter<W>,
    ) -> Result<(), ParquetError> {
        if self.ends.is_empty() {
            return Ok(());
        }
        // Each name a slice of the one buffer (a reference count, not a copy).
        let names = bytes::Bytes::from(std::mem::take(&mut self.names));
        let mut start = 0;
        let subscriber: Vec<ByteArray> = self
            .ends
            .iter()
            .map(|&end| {
                let name = ByteArray::from(names.slice(start..end));
                start = end;
                name
            })
            .collect();
        write_group(w, std::slice::from_ref(&subscriber), &self.ints)?;
        self.ends.clear();
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

/// The writer's properties: no dictionaries (an hour's rows name each subscriber once and
/// their counters rarely repeat, so building one costs a hash per value and is then dropped),
/// statistics per column chunk rather than per page (readers prune by row group).
pub(super) fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .build()
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

/// [`write`] with `group` rows per row group. The row groups are encoded on a second thread
/// while the store reads the next (two cores: the export runs at the slower of the two rather
/// than their sum); at most two groups wait between them.
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
    let mut w = SerializedFileWriter::new(out, schema, Arc::new(properties())).map_err(failed)?;
    let (full, filled) = std::sync::mpsc::sync_channel::<Columns>(1);
    let (empty, emptied) = std::sync::mpsc::channel::<Columns>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<(), ParquetError> {
            for mut cols in filled {
                cols.flush(&mut w)?;
                // The reader may have stopped; the columns are then dropped here.
                let _ = empty.send(cols);
            }
            w.close()?;
            Ok(())
        });
        let mut cols = Columns::default();
        let gone = || std::io::Error::other("the Parquet writer stopped (its error follows)");
        let read = store.export_usage(resolution, from, to, |r| {
            cols.push(r);
            if cols.len() >= group {
                let next = emptied.try_recv().unwrap_or_default();
                full.send(std::mem::replace(&mut cols, next))
                    .map_err(|_| gone())?;
            }
            Ok(())
        });
        // The last group, then the end: the writer closes the file.
        let last = if read.is_ok() {
            full.send(cols)
        } else {
            Ok(())
        };
        drop(full);
        let written = writer.join().map_err(|_| {
            ExportError::Write(std::io::Error::other("the Parquet writer panicked"))
        })?;
        // The writer's error explains a stopped read better than the read's own.
        written.map_err(failed)?;
        let n = read?;
        last.map_err(|_| ExportError::Write(gone()))?;
        Ok(n)
    })
}
