//! The sysext conformance suite: static checks of images against the Extension Image
//! rules ([`lint`]), the fixtures that exercise them, and the `sysext-test` command line.

pub mod bench;
pub mod boot;
pub mod fixtures;
pub mod fuzz;
pub mod ignition;
pub mod lint;
pub mod manifest;
pub mod report;
pub mod update;
pub mod verdict;
pub mod vm;
