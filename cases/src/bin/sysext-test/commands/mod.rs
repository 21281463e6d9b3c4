//! One module per verb, each with its `Args` and its `run` (cargo's
//! `src/bin/cargo/commands/` is the model).

pub mod bake;
pub mod bench;
pub mod build;
pub mod check;
pub mod diff;
pub mod differential;
pub mod fuzz;
pub mod guest;
pub mod ignition;
pub mod lint;
pub mod mirror;
pub mod report;
pub mod run;
