//! Everything that talks to the outside world while a VM case runs, one module per program
//! we drive: QEMU (`qemu`), its QMP socket (`qmp`), `qemu-img` (`qemu_img`), the guest's
//! sshd (`ssh`), plus the accelerator probe, the `Vm` API cases use, and the artifacts kept
//! when a case fails.

pub mod accel;
pub mod artifacts;
pub mod cleanup;
pub mod errors;
pub mod firmware;
pub mod flatcar;
pub mod frame;
pub mod kernel_death;
pub mod login_config;
pub mod mirror;
pub mod payload;
pub mod place;
pub mod qemu;
pub mod qemu_img;
pub mod qmp;
pub mod snapshot;
pub mod ssh;
pub mod vm;

pub use errors::HarnessError;
pub use mirror::Mirror;
pub use place::Place;
pub use vm::{Snapshot, Vm};
