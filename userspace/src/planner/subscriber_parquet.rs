//! `quid report --subscribers-parquet`: the subscribers file's rows and columns as Parquet
//! (DuckDB, pandas), written from the CSV's own row text so both hold the same, in row groups
//! as the report hands rows over: memory stays at one row group and the ids.

use std::{io::Write, sync::Arc};

use parquet::{
    data_type::ByteArray,
    errors::ParquetError,
    file::{properties::WriterProperties, writer::SerializedFileWriter},
    schema::parser::parse_message_type,
};

use super::{
    report_figures::SubscriberP95,
    subscriber_csv::{COLUMNS, Names},
};

/// Rows per row group.
const ROW_GROUP: usize = 65_536;
/// The leading text columns (period, subscriber, plans, plan); the rest are unsigned integers.
const TEXT: usize = 4;

fn schema() -> String {
    let fields: String = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < TEXT {
                format!("REQUIRED BYTE_ARRAY {c} (UTF8);\n")
            } else {
                format!("REQUIRED INT64 {c} (INTEGER(64,false));\n")
            }
        })
        .collect();
    format!("message subscribers {{\n{fields}}}")
}

/// Writes the rows of a period to `out` as the report hands them over.
pub struct Writer<'a, W: Write + Send> {
    w: SerializedFileWriter<W>,
    names: &'a Names,
    period_start: String,
    text: [Vec<ByteArray>; TEXT],
    /// The integers' bits as Parquet's INT64 (a u64 above i64::MAX reads back whole as the
    /// unsigned logical type).
    ints: [Vec<i64>; COLUMNS.len() - TEXT],
}

impl<'a, W: Write + Send> Writer<'a, W> {
    /// Starts the file.
    pub fn new(out: W, names: &'a Names, period_start: &str) -> Result<Self, ParquetError> {
        let schema = Arc::new(parse_message_type(&schema())?);
        let props = Arc::new(WriterProperties::builder().build());
        Ok(Writer {
            w: SerializedFileWriter::new(out, schema, props)?,
            names,
            period_start: period_start.to_owned(),
            text: Default::default(),
            ints: Default::default(),
        })
    }

    /// One subscriber's row.
    pub fn row(&mut self, s: &SubscriberP95) -> Result<(), ParquetError> {
        let record = self.names.record(&self.period_start, s);
        for (i, v) in record.iter().enumerate() {
            match i.checked_sub(TEXT) {
                None => self.text[i].push(ByteArray::from(v.as_str())),
                Some(j) => {
                    let n: u64 = v.parse().map_err(|_| {
                        ParquetError::General(format!(
                            "column {}: `{v}` is not a count",
                            COLUMNS[i]
                        ))
                    })?;
                    self.ints[j].push(n.cast_signed());
                }
            }
        }
        if self.text[0].len() >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the rows held as one row group and empties them.
    fn flush(&mut self) -> Result<(), ParquetError> {
        if self.text[0].is_empty() {
            return Ok(());
        }
        super::export_parquet::write_group(&mut self.w, &self.text, &self.ints)?;
        self.text.iter_mut().for_each(Vec::clear);
        self.ints.iter_mut().for_each(Vec::clear);
        Ok(())
    }

    /// Writes the last row group and closes the file.
    pub fn finish(mut self) -> Result<(), ParquetError> {
        self.flush()?;
        self.w.close()?;
        Ok(())
    }
}
