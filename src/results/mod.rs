//! What reads finished experiments: the metrics file (`--metrics-out`), its one reader
//! ([`read`]), and what is made of it: the closing report, paired statistics, merged shards,
//! comparisons of experiments and plots.
//!
//! - [`metrics`]: the metrics file and its reader; [`records`]: the trained models' records;
//! - [`report`]: the closing report's tables;
//! - [`classes`]: results per class;
//! - [`statistics`]: paired statistics over several runs;
//! - [`merge`]: an experiment's shards put together (`kd-wgpu merge`);
//! - [`compare`]: several experiments side by side (`kd-wgpu compare`);
//! - [`plot`]: the SVG charts.

pub mod classes;
pub mod compare;
pub mod merge;
pub mod metrics;
pub mod plot;
pub mod records;
pub mod report;
pub mod statistics;

pub use classes::ClassResults;
pub use metrics::{read, MergedShard, Report, FORMAT};
pub use records::{RunResult, ShardRecord, StudentPair, SweepPoint};
pub use statistics::Statistics;
