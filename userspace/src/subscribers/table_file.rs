//! Reading the subscriber table file in the layout `[subscribers] format` names: quid's own
//! CSV or LibreQoS's `ShapedDevices.csv`.

use std::path::Path;

use super::{
    libreqos::{self, PlanFrom},
    table::{Table, TableError, TableErrors, read_file},
};

/// How a table file is laid out (`[subscribers] format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// quid's own CSV: `id,name,plan,prefixes`.
    Quid,
    /// LibreQoS's `ShapedDevices.csv`: one row per device, a circuit is a subscriber.
    LibreQos(PlanFrom),
}

impl Table {
    /// Reads and checks a table file; one without subscribers is refused unless
    /// `allow_empty` (`[subscribers] allow_empty`): a truncated or half-written file must not
    /// silently stop all counting, or remove every subscriber on a reload.
    pub fn load(path: &Path, format: &Format, allow_empty: bool) -> Result<Table, TableErrors> {
        let bytes = read_file(path, "the subscriber table")?;
        let table = Table::parse_as(&bytes, path, format)?;
        if table.subscribers.is_empty() && !allow_empty {
            return Err(TableErrors(vec![TableError {
                path: path.to_owned(),
                line: 0,
                field: "table".into(),
                message: "no subscribers: quid would count nothing; add them, or set \
                          `allow_empty = true` under [subscribers] to run with none on purpose"
                    .into(),
            }]));
        }
        Ok(table)
    }
}

impl Table {
    /// Parses a table file's bytes laid out as `format` (`label` names it in errors).
    pub fn parse_as(bytes: &[u8], label: &Path, format: &Format) -> Result<Table, TableErrors> {
        match format {
            Format::Quid => Table::parse(bytes, label),
            Format::LibreQos(plan) => libreqos::parse(bytes, label, plan),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two of LibreQoS's example circuits, in its own column layout.
    const SHAPED: &str = "\
Circuit ID,Circuit Name,Device ID,Device Name,Parent Node,MAC,IPv4,IPv6,Download Min Mbps,Upload Min Mbps,Download Max Mbps,Upload Max Mbps,Comment
1,\"968 Circle St., Gurnee, IL 60031\",1,Device 1,AP_A,,\"100.64.0.1, 100.64.0.14\",2001:db8:0:100::/56,1,1,155,20,home-155
2,31 Marconi Street,2,Device 2,AP_A,,100.64.0.2,2001:db8:0:200::/56,0.5,0.5,2.5,1.0,home-small
3,6 Littleton Drive,5,Device 5,AP_11,,100.64.0.5,2001:db8:0:500::/56,1,1,105,18,home-105
";

    #[test]
    fn a_table_without_subscribers_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subs.csv");
        std::fs::write(&path, "id,name,plan,prefixes\n# nobody yet\n").unwrap();
        let err = Table::load(&path, &Format::Quid, false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "1 error in the subscriber table:\n  {}:0: table: no subscribers: quid would \
                 count nothing; add them, or set `allow_empty = true` under [subscribers] to \
                 run with none on purpose\n",
                path.display()
            )
        );
        assert_eq!(
            Table::load(&path, &Format::Quid, true).unwrap(),
            Table::default()
        );
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let err = Table::load(Path::new("/nonexistent/subs.csv"), &Format::Quid, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/subs.csv:0: file: cannot read the subscriber table"),
            "{err}"
        );
    }
    #[test]
    fn table_load_reads_the_libreqos_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ShapedDevices.csv");
        std::fs::write(&path, SHAPED).unwrap();
        let format = Format::LibreQos(PlanFrom::MaxRates);
        let t = Table::load(&path, &format, false).unwrap();
        assert_eq!(t.subscribers.len(), 3);
        let as_quid = Table::load(&path, &Format::Quid, false);
        assert!(as_quid.is_err());
    }
}
