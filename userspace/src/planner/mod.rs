//! What capacity planners ask of the books: bulk exports of usage, what-if re-pricing of a
//! period under another tariff, and the period's report. The books are read through the store; everything here is
//! formatting and arithmetic.

pub mod export_csv;
pub mod export_parquet;
mod export_tests;
pub mod forecast;
pub mod month_fold;
mod month_fold_tests;
pub mod percentile;
pub mod period_books;
pub mod plan_attribution;
pub mod report;
mod report_acc;
mod report_assemble;
pub mod report_csv;
mod report_digest;
pub mod report_figures;
pub mod report_html;
mod report_money;
pub mod report_parquet;
mod report_tests;
mod report_usage;
pub mod simulate;
mod simulate_tests;
pub mod solve;
pub mod subscriber_csv;
pub mod subscriber_parquet;
pub mod supply;
pub mod uplink;
mod year_tests;
