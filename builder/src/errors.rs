//! Errors users see. Each says what went wrong, where, and what to do about it.

use std::path::{Path, PathBuf};

/// Why a build (or a fetch it needed) failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {message}")]
    SpecFile { path: PathBuf, message: String },
    #[error("{0}")]
    Spec(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tool(#[from] crate::host_tool::ToolError),
    #[error(
        "fetching a fixture package: {0} (is Debian's archive reachable? set SYSEXT_TEST_DEBIAN_MIRROR to use another mirror)"
    )]
    Fetch(String),
    #[error("writing squashfs: {0}")]
    Squashfs(#[from] backhand::BackhandError),
    #[error(transparent)]
    Gpt(#[from] crate::gpt::GptError),
}

impl BuildError {
    pub fn io(path: &Path, source: std::io::Error) -> BuildError {
        BuildError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// True for problems with the user's input rather than with the machine or network.
    pub fn is_usage(&self) -> bool {
        matches!(self, BuildError::SpecFile { .. } | BuildError::Spec(_))
    }
}

/// Why `sysext-test bake` made no disk. Nothing is left behind in any case.
#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    /// The user's input: exit 2, with the fix.
    #[error("{}: {problem}; {fix}", path.display())]
    Input {
        path: PathBuf,
        problem: String,
        fix: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tool(#[from] crate::host_tool::ToolError),
    #[error(
        "{path} on {partition} did not read back as written ({detail}); is the partition full?"
    )]
    Write {
        partition: String,
        path: String,
        detail: String,
    },
}

impl BakeError {
    pub fn io(path: &Path, source: std::io::Error) -> BakeError {
        BakeError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn is_usage(&self) -> bool {
        matches!(self, BakeError::Input { .. })
    }
}

/// Why an image could not be opened at all (as opposed to findings about its contents).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a filesystem image we recognise ({detail}); systemd accepts squashfs, erofs, ext4, btrfs, GPT disk images and directories", path.display())]
    UnknownFormat { path: PathBuf, detail: String },
    #[error("{}: corrupt or truncated {format} image: {detail}", path.display())]
    Corrupt {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },
    #[error("{}: format {format}: reading needs {tool} (apt-get install {package})", path.display())]
    NeedsTool {
        path: PathBuf,
        format: &'static str,
        tool: &'static str,
        package: &'static str,
    },
    #[error("{}: format {format}: {detail}", path.display())]
    Unsupported {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },
}

impl ImageError {
    /// A missing host tool is the user's machine, not the image: callers exit 2 for it.
    pub fn is_environment(&self) -> bool {
        matches!(self, ImageError::NeedsTool { .. })
    }
}
