//! What can go wrong while driving a guest, named by the stage it went wrong in, so a
//! failure says "SSH never became ready" rather than "timed out".

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Tool(#[from] sysext_builder::host_tool::ToolError),
    #[error("starting QEMU: {0}")]
    Spawn(std::io::Error),
    #[error(
        "QEMU exited during {stage} ({status}); last console lines:\n{console}\nQEMU stderr:\n{stderr}"
    )]
    QemuExited {
        stage: &'static str,
        status: String,
        console: String,
        stderr: String,
    },
    #[error("{stage} did not finish within {timeout:?}; last console lines:\n{console}")]
    Timeout {
        stage: &'static str,
        timeout: Duration,
        console: String,
    },
    /// The console showed a line that means the login will never come (the SSH server
    /// failed): no use waiting out the timeout.
    #[error("{stage} will not happen: the console says {line:?}; last console lines:\n{console}")]
    GaveUp {
        stage: &'static str,
        line: String,
        console: String,
    },
    /// The guest's kernel crashed ([`crate::kernel_death`]): the emulator's doing under
    /// TCG, not the image's.
    #[error(
        "the guest's kernel died during {stage}: {line:?} (under TCG the emulator sometimes kills it with no image involved); last console lines:\n{console}"
    )]
    KernelDied {
        stage: &'static str,
        line: String,
        console: String,
    },
    #[error("QMP: {0}")]
    Qmp(String),
    #[error("SSH: {0}")]
    Ssh(String),
    #[error("guest command `{cmd}` {what}\n--- output ---\n{output}")]
    Command {
        cmd: String,
        what: String,
        output: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("guest image: {0}")]
    Guest(#[from] sysext_builder::BuildError),
}

impl HarnessError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> HarnessError {
        HarnessError::Io {
            path: path.into(),
            source,
        }
    }

    /// Where the harness broke, for a verdict that names the stage instead of blaming the
    /// extension.
    pub fn stage(&self) -> String {
        match self {
            HarnessError::Tool(_) => "host tool".into(),
            HarnessError::Spawn(_) => "starting QEMU".into(),
            HarnessError::QemuExited { stage, .. } => format!("{stage} (QEMU exited)"),
            HarnessError::Timeout { stage, .. } => format!("{stage} (timeout)"),
            HarnessError::GaveUp { stage, .. } => format!("{stage} (the guest said it will not)"),
            HarnessError::KernelDied { stage, .. } => format!("{stage} (the guest's kernel died)"),
            HarnessError::Qmp(_) => "QMP".into(),
            HarnessError::Ssh(_) => "SSH".into(),
            HarnessError::Command { .. } => "guest command".into(),
            HarnessError::Io { .. } => "host I/O".into(),
            HarnessError::Guest(_) => "guest image".into(),
        }
    }

    /// Boot-stage failures that a retry may fix (an early TCG oops, a guest that never got
    /// its network); assertion failures are never retried.
    pub fn is_boot_failure(&self) -> bool {
        matches!(
            self,
            HarnessError::QemuExited { .. }
                | HarnessError::KernelDied { .. }
                | HarnessError::GaveUp { .. }
                | HarnessError::Timeout {
                    stage: "boot" | "restore" | "SSH login",
                    ..
                }
        )
    }
}

pub type Result<T> = std::result::Result<T, HarnessError>;
