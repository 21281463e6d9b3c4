//! What each case checks once its image is in the guest, one file per case. A check acts
//! only through the `Vm` and what its way of reaching the guest handed over (the merge's
//! output, the baseline boot, the mirror); it never sets a guest up itself.

pub mod binaries;
pub mod boot;
pub mod builtins;
pub mod ignition;
pub mod journal;
pub mod merge;
pub mod reboot;
pub mod services;
pub mod together;
pub mod unmerge;
