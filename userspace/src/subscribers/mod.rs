//! The subscriber table: the CSV file that names subscribers, plans and prefixes, and the
//! outcome of its last reload.

pub mod diff;
pub mod reload_result;
pub mod table;
