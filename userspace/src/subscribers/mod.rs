//! The subscriber table: the CSV file that names subscribers, plans and prefixes (quid's own
//! layout or LibreQoS's `ShapedDevices.csv`), and the outcome of its last reload.

pub mod diff;
pub mod libreqos;
pub mod reload_result;
pub mod table;
pub mod table_file;
