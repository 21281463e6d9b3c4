//! The sysext conformance suite: static checks of images against the Extension Image rules
//! ([`lint`]), the ways an image reaches a guest ([`via`]) and what each case checks there
//! ([`checks`]), joined by one [`runner`]; the sysupdate cycles ([`update`]), the fixtures
//! that exercise them, and the verdict over a release ([`verdict`]).

pub mod bench;
pub mod checks;
pub mod differential;
pub mod fixtures;
pub mod fuzz;
pub mod lint;
pub mod manifest;
pub mod outcome;
pub mod release_diff;
pub mod replay;
pub mod report;
pub mod run_record;
pub mod runner;
pub mod shell;
pub mod subject;
pub mod sysext_status;
pub mod update;
pub mod verdict;
pub mod via;
