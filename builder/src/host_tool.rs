//! Every host program the project runs (mksquashfs, mkfs.erofs, debugfs, dpkg-deb, QEMU,
//! qemu-img, ...) goes through here, so a missing program is always reported the same way:
//! its name and the Debian package that provides it, which is the one thing a user needs
//! to fix it.

use std::io;
use std::process::{Command, Output};

/// Why a host program could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("missing host tool '{tool}': apt-get install {package} (or run .ci/setup)")]
    Missing { tool: String, package: String },
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("running {tool}: {source}")]
    Io { tool: String, source: io::Error },
}

/// Maps an error from starting `program` (std or tokio `spawn`/`output`) to a
/// [`ToolError`]: "not found" names the package to install.
pub fn start_error(e: io::Error, program: &str, package: &str) -> ToolError {
    match e.kind() {
        io::ErrorKind::NotFound => ToolError::Missing {
            tool: program.into(),
            package: package.into(),
        },
        _ => ToolError::Io {
            tool: program.into(),
            source: e,
        },
    }
}

/// Runs `cmd` to completion and returns its output, whatever its exit status (for tools
/// whose failure is itself information, like `fsck.erofs` on a corrupt image).
pub fn output_any_status(cmd: &mut Command, package: &str) -> Result<Output, ToolError> {
    let program = program_of(cmd);
    cmd.output().map_err(|e| start_error(e, &program, package))
}

/// Runs `cmd` to completion; an exit status other than 0 is an error carrying the last
/// lines of its stderr (where every tool we run says why).
pub fn output(cmd: &mut Command, package: &str) -> Result<Output, ToolError> {
    let out = output_any_status(cmd, package)?;
    if !out.status.success() {
        return Err(ToolError::Failed {
            tool: program_of(cmd),
            status: out.status.to_string(),
            stderr: stderr_tail(&out.stderr),
        });
    }
    Ok(out)
}

/// Like [`output`], with stdout as (lossy) text.
pub fn stdout(cmd: &mut Command, package: &str) -> Result<String, ToolError> {
    output(cmd, package).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Runs `cmd` for a long job, handing each line it writes to stderr to `on_line` as it
/// comes (mmdebstrap's minutes of stages show as they happen instead of all at the end).
/// It is killed after `limit`; a failure carries its last stderr lines like [`output`].
pub fn streaming(
    cmd: &mut Command,
    package: &str,
    limit: std::time::Duration,
    on_line: &dyn Fn(&str),
) -> Result<(), ToolError> {
    use std::io::BufRead as _;
    use std::os::unix::process::CommandExt as _;
    use std::process::Stdio;
    let program = program_of(cmd);
    // A group of its own, so the limit ends the whole job: killing mmdebstrap alone would
    // leave its apt and dpkg running, holding the pipe we read open.
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| start_error(e, &program, package))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        if let Some(err) = stderr {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        }
    });
    let deadline = std::time::Instant::now() + limit;
    let mut seen: Vec<String> = Vec::new();
    let status = loop {
        while let Ok(line) = rx.try_recv() {
            on_line(&line);
            seen.push(line);
        }
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if std::time::Instant::now() > deadline => {
                if let Ok(pgid) = i32::try_from(child.id()) {
                    // SAFETY: kill(2) on the process group this function made.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                }
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("killed after {}s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(100)),
            Err(e) => {
                return Err(ToolError::Io {
                    tool: program,
                    source: e,
                });
            }
        }
    };
    let _ = reader.join();
    for line in rx.try_iter() {
        on_line(&line);
        seen.push(line);
    }
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(ToolError::Failed {
            tool: program,
            status: s.to_string(),
            stderr: stderr_tail(seen.join("\n").as_bytes()),
        }),
        Err(why) => Err(ToolError::Failed {
            tool: program,
            status: why,
            stderr: stderr_tail(seen.join("\n").as_bytes()),
        }),
    }
}

/// The last three non-empty lines of a tool's stderr, oldest first, on one line.
pub fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let mut tail: Vec<&str> = text
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(3)
        .collect();
    tail.reverse();
    tail.join(" / ")
}

fn program_of(cmd: &Command) -> String {
    crate::userns::program_of(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_its_package() {
        let err = output(
            &mut Command::new("sysext-test-no-such-program"),
            "some-package",
        )
        .unwrap_err();
        assert!(matches!(err, ToolError::Missing { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "missing host tool 'sysext-test-no-such-program': apt-get install some-package (or run .ci/setup)"
        );
    }

    #[test]
    fn a_failing_program_reports_its_status_and_last_stderr_lines() {
        let err = output(
            Command::new("sh").args([
                "-c",
                "echo one >&2; echo >&2; echo two >&2; echo three >&2; echo four >&2; exit 3",
            ]),
            "dash",
        )
        .unwrap_err();
        let ToolError::Failed {
            tool,
            status,
            stderr,
        } = &err
        else {
            panic!("expected Failed, got {err:?}");
        };
        assert_eq!(tool, "sh");
        assert!(status.contains('3'), "{status}");
        assert_eq!(stderr, "two / three / four");
    }

    #[test]
    fn a_long_job_hands_over_each_line_as_it_comes_and_is_killed_at_its_limit() {
        let lines = std::cell::RefCell::new(Vec::new());
        streaming(
            Command::new("sh").args(["-c", "echo one >&2; echo two >&2"]),
            "dash",
            std::time::Duration::from_secs(10),
            &|l| lines.borrow_mut().push(l.to_string()),
        )
        .unwrap();
        assert_eq!(*lines.borrow(), ["one", "two"]);
        let start = std::time::Instant::now();
        let err = streaming(
            Command::new("sh").args(["-c", "echo waiting >&2; sleep 30"]),
            "dash",
            std::time::Duration::from_millis(300),
            &|_| {},
        )
        .unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        assert!(err.to_string().contains("killed after"), "{err}");
        assert!(err.to_string().contains("waiting"), "{err}");
    }

    #[test]
    fn output_any_status_returns_a_failure_as_data() {
        let out = output_any_status(Command::new("sh").args(["-c", "exit 1"]), "dash").unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stdout(Command::new("sh").args(["-c", "echo hi"]), "dash").unwrap(),
            "hi\n"
        );
    }
}
