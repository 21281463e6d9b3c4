//! Everything that talks to the outside world while a VM case runs: QEMU, QMP, SSH, the local
//! sysupdate mirror, and the artifacts kept when a case fails.
//!
//! Today it holds the artifact layout shared by the lint and VM cases; the guest driver
//! (one module per program we drive) lands with the VM cases.

pub mod artifacts;
