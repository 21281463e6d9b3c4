//! How a CLI test shows what the binary did when an assertion fails.

use std::process::Output;

/// Exit code, stdout and stderr, for an assertion message.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
