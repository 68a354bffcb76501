//! `quid report --parquet`: the CSV's rows and columns as a Parquet file (DuckDB, pandas),
//! the figures as integers (counts and bytes unsigned, credits signed), growth as a double,
//! empty figures as nulls. Written from the CSV's own row text, so both files hold the same.

use std::{io::Write, sync::Arc};

use parquet::{
    data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type},
    errors::ParquetError,
    file::{properties::WriterProperties, writer::SerializedFileWriter},
    schema::parser::parse_message_type,
};

use super::{
    report::Report,
    report_csv::{COLUMNS, row},
};

/// A column's Parquet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Unsigned,
    Signed,
    Double,
}

fn kind(column: &str) -> Kind {
    match column {
        "period_start" | "plan" => Kind::Text,
        "credits" | "debits" | "net" => Kind::Signed,
        "growth_percent" => Kind::Double,
        _ => Kind::Unsigned,
    }
}

fn schema() -> String {
    let fields: String = COLUMNS
        .iter()
        .map(|c| match kind(c) {
            Kind::Text => format!("REQUIRED BYTE_ARRAY {c} (UTF8);\n"),
            Kind::Unsigned => format!("OPTIONAL INT64 {c} (INTEGER(64,false));\n"),
            Kind::Signed => format!("OPTIONAL INT64 {c};\n"),
            Kind::Double => format!("OPTIONAL DOUBLE {c};\n"),
        })
        .collect();
    format!("message report {{\n{fields}}}")
}

/// `text` of column `c` parsed as `T`, or an error naming both.
fn parse<T: std::str::FromStr>(c: &str, text: &str) -> Result<T, ParquetError> {
    text.parse()
        .map_err(|_| ParquetError::General(format!("column {c}: `{text}` is not a {c} figure")))
}

/// Writes `report`'s rows (the plans, then the fleet) as Parquet to `out`.
pub fn write<W: Write + Send>(
    report: &Report,
    period_start: &str,
    out: W,
) -> Result<(), ParquetError> {
    let rows: Vec<Vec<String>> = report
        .plans
        .iter()
        .chain([&report.fleet])
        .map(|p| row(period_start, p))
        .collect();
    let schema = Arc::new(parse_message_type(&schema())?);
    let props = Arc::new(WriterProperties::builder().build());
    let mut w = SerializedFileWriter::new(out, schema, props)?;
    let mut group = w.next_row_group()?;
    for (i, c) in COLUMNS.iter().enumerate() {
        let Some(mut col) = group.next_column()? else {
            break;
        };
        let cells: Vec<&str> = rows.iter().map(|r| r[i].as_str()).collect();
        // Empty text is a null: definition level 0.
        let levels: Vec<i16> = cells.iter().map(|t| i16::from(!t.is_empty())).collect();
        let present = cells.iter().filter(|t| !t.is_empty());
        match kind(c) {
            Kind::Text => {
                let v: Vec<ByteArray> = cells.iter().map(|t| ByteArray::from(*t)).collect();
                col.typed::<ByteArrayType>().write_batch(&v, None, None)?;
            }
            Kind::Unsigned => {
                // The u64's bits: the unsigned logical type reads it back whole.
                let v: Vec<i64> = present
                    .map(|t| parse::<u64>(c, t).map(u64::cast_signed))
                    .collect::<Result<_, _>>()?;
                col.typed::<Int64Type>()
                    .write_batch(&v, Some(&levels), None)?;
            }
            Kind::Signed => {
                let v: Vec<i64> = present
                    .map(|t| parse::<i64>(c, t))
                    .collect::<Result<_, _>>()?;
                col.typed::<Int64Type>()
                    .write_batch(&v, Some(&levels), None)?;
            }
            Kind::Double => {
                let v: Vec<f64> = present
                    .map(|t| parse::<f64>(c, t))
                    .collect::<Result<_, _>>()?;
                col.typed::<DoubleType>()
                    .write_batch(&v, Some(&levels), None)?;
            }
        }
        col.close()?;
    }
    group.close()?;
    w.close()?;
    Ok(())
}
