//! sysupdate cycles: what bakery users do to stay current, driven against the local mirror.
//!
//! Every cycle starts from a guest with the subject's first release installed the bakery
//! way (the image under `/opt/extensions/NAME/`, the `/etc/extensions/NAME.raw` symlink,
//! `NAME.conf` in `/etc/sysupdate.NAME.d/`, `noop.conf` in `/etc/sysupdate.d/`), with its
//! `Source Path` pointing at a mirror this case serves. The mirror then publishes newer
//! releases, or misbehaves, and the cycle checks what a user would: which file the symlink
//! names, which version answers, what systemd said, and what was downloaded.

mod ctx;
mod cycle;
mod cycles;
mod faults;
pub mod release;
mod run;
mod seed;

pub use cycle::{Cycle, FaultCase, cycles_for};
pub use run::{Given, Releases, run_boot, run_cycle, run_given_cycle};
