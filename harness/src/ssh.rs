//! SSH into the guest through ssh2 (blocking; callers keep it off async worker threads).
//!
//! stdout and stderr are read interleaved in non-blocking mode: reading one to the end
//! before the other deadlocks once the other fills its window (seen at ~2 MB).
//!
//! Commands without input go to one long-lived shell per session instead of a channel
//! each: a new channel costs a TCG guest 0.10-0.15 s (dropbear forks, the shell starts),
//! a subshell of a running shell about 5 ms, and a case sends tens of commands.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::errors::{HarnessError, Result};

pub struct Ssh {
    session: ssh2::Session,
    /// Logged in as someone else than root: every command goes through `sudo -n`, as a
    /// Flatcar user's does.
    sudo: bool,
    /// The long-lived shell, opened on first use; dropped after a timeout or a broken
    /// frame, so the next command starts a fresh one.
    shell: std::sync::Mutex<Option<Shell>>,
}

/// A shell reading framed commands ([`crate::frame`]) on its stdin.
struct Shell {
    ch: ssh2::Channel,
    /// The next command's frame number.
    next: u64,
}

/// The shell's frame mark (a batch inside uses another).
const SHELL_MARK: &str = "\u{1e}sysext-test-shell";

/// What a guest command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout then stderr, for failure messages.
    pub fn combined(&self) -> String {
        if self.stderr.is_empty() {
            self.stdout.clone()
        } else {
            format!("{}{}", self.stdout, self.stderr)
        }
    }
}

fn ssh_err(stage: &str, e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Ssh(format!("{stage}: {e}"))
}

impl Ssh {
    /// One connection attempt: TCP, banner, key exchange, public-key login as `user`,
    /// each step bounded by `attempt`; commands later get their own deadlines.
    pub fn connect(addr: SocketAddr, user: &str, key_pem: &str, attempt: Duration) -> Result<Ssh> {
        let tcp = TcpStream::connect_timeout(&addr, attempt).map_err(|e| ssh_err("connect", e))?;
        let mut session = ssh2::Session::new().map_err(|e| ssh_err("session", e))?;
        session.set_timeout(u32::try_from(attempt.as_millis()).unwrap_or(u32::MAX));
        // AES-GCM and curve25519 are the cheapest under TCG (guest-lab.md); the guest's sshd
        // offers them first. A libssh2 without them keeps its defaults.
        let _ = session.method_pref(
            ssh2::MethodType::CryptCs,
            "aes128-gcm@openssh.com,aes128-ctr,chacha20-poly1305@openssh.com",
        );
        let _ = session.method_pref(
            ssh2::MethodType::CryptSc,
            "aes128-gcm@openssh.com,aes128-ctr,chacha20-poly1305@openssh.com",
        );
        let _ = session.method_pref(
            ssh2::MethodType::Kex,
            "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256",
        );
        session.set_tcp_stream(tcp);
        let t = std::time::Instant::now();
        session.handshake().map_err(|e| ssh_err("handshake", e))?;
        let hs = t.elapsed();
        session
            .userauth_pubkey_memory(user, None, key_pem, None)
            .map_err(|e| ssh_err("login", e))?;
        if std::env::var_os("SYSEXT_TEST_TRACE").is_some() {
            eprintln!(
                "trace: ssh handshake {:.3}s, login {:.3}s, kex {:?}, cipher {:?}, host key {:?}",
                hs.as_secs_f64(),
                (t.elapsed() - hs).as_secs_f64(),
                session.methods(ssh2::MethodType::Kex),
                session.methods(ssh2::MethodType::CryptCs),
                session.methods(ssh2::MethodType::HostKey),
            );
        }
        if !session.authenticated() {
            return Err(ssh_err("login", "not authenticated"));
        }
        session.set_timeout(15_000);
        Ok(Ssh {
            session,
            sudo: user != "root",
            shell: std::sync::Mutex::new(None),
        })
    }

    /// Runs `cmd` in a subshell of the session's shell (root's login shell, as an exec
    /// would run it), stdin from /dev/null, with a deadline; a command still running then
    /// is an error, and the shell is closed with it.
    pub fn exec(&self, cmd: &str, timeout: Duration) -> Result<Output> {
        let mut slot = self
            .shell
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            let s = &self.session;
            s.set_blocking(true);
            let mut ch = s
                .channel_session()
                .map_err(|e| ssh_err("open channel", e))?;
            let shell = if self.sudo {
                // root's shell, through sudo once for the session.
                "exec sudo -n /bin/sh"
            } else {
                "exec \"${SHELL:-/bin/sh}\""
            };
            ch.exec(shell).map_err(|e| ssh_err("exec shell", e))?;
            *slot = Some(Shell { ch, next: 0 });
        }
        let Some(shell) = slot.as_mut() else {
            return Err(ssh_err("shell", "not open"));
        };
        let id = shell.next;
        shell.next += 1;
        let result = self.run_framed(shell, cmd, id, timeout);
        if result.is_err() {
            // Whatever it left running or half-printed must not reach the next command.
            if let Some(mut dead) = slot.take() {
                let _ = dead.ch.close();
            }
        }
        result
    }

    /// Sends `cmd` as frame `id` and reads both streams until the frame is complete.
    fn run_framed(
        &self,
        shell: &mut Shell,
        cmd: &str,
        id: u64,
        timeout: Duration,
    ) -> Result<Output> {
        let s = &self.session;
        s.set_blocking(true);
        let script = crate::frame::whole(&crate::frame::script(SHELL_MARK, &[cmd], id));
        shell
            .ch
            .write_all(script.as_bytes())
            .and_then(|()| shell.ch.flush())
            .map_err(|e| ssh_err("writing to the shell", e))?;
        s.set_blocking(false);
        let deadline = Instant::now() + timeout;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = loop {
            let progressed = match read_available(&mut shell.ch, &mut out, &mut err) {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            if progressed {
                let (o, e) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
                if let Some(mut outs) = crate::frame::parse(SHELL_MARK, &o, &e, id, 1) {
                    break Ok(outs.remove(0));
                }
                continue;
            }
            if shell.ch.eof() {
                break Err(HarnessError::Command {
                    cmd: cmd.into(),
                    what: "ended the guest's shell before its result was printed".into(),
                    output: lossy(out.clone()) + &lossy(err.clone()),
                });
            }
            if Instant::now() >= deadline {
                break Err(HarnessError::Command {
                    cmd: cmd.into(),
                    what: format!("did not finish within {timeout:?}"),
                    output: lossy(out.clone()) + &lossy(err.clone()),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        s.set_blocking(true);
        result
    }

    /// Like [`Ssh::exec`], with `input` on the command's stdin (then end of file).
    pub fn exec_with_input(
        &self,
        cmd: &str,
        input: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output> {
        let s = &self.session;
        s.set_blocking(true);
        let mut ch = s
            .channel_session()
            .map_err(|e| ssh_err("open channel", e))?;
        let line = if self.sudo {
            format!("sudo -n sh -c {}", quote(cmd))
        } else {
            cmd.to_string()
        };
        ch.exec(&line).map_err(|e| ssh_err("exec", e))?;
        if let Some(data) = input {
            ch.write_all(data)
                .map_err(|e| ssh_err("writing stdin", e))?;
            ch.send_eof().map_err(|e| ssh_err("stdin eof", e))?;
        }
        s.set_blocking(false);
        let deadline = Instant::now() + timeout;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = loop {
            let progressed = match read_available(&mut ch, &mut out, &mut err) {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            if !progressed {
                if ch.eof() {
                    break Ok(());
                }
                if Instant::now() >= deadline {
                    break Err(HarnessError::Command {
                        cmd: cmd.into(),
                        what: format!("did not finish within {timeout:?}"),
                        output: String::from_utf8_lossy(&out).into_owned()
                            + &String::from_utf8_lossy(&err),
                    });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        s.set_blocking(true);
        result?;
        ch.wait_close().map_err(|e| ssh_err("close", e))?;
        if let Ok(sig) = ch.exit_signal()
            && let Some(name) = sig.exit_signal
        {
            return Ok(Output {
                status: 128,
                stdout: lossy(out),
                stderr: format!("{}killed by signal {name}\n", lossy(err)),
            });
        }
        let status = ch.exit_status().map_err(|e| ssh_err("exit status", e))?;
        Ok(Output {
            status,
            stdout: lossy(out),
            stderr: lossy(err),
        })
    }

    /// Copies a host file into the guest with the given mode.
    pub fn upload(&self, local: &Path, remote: &str, mode: i32) -> Result<()> {
        let data = std::fs::read(local).map_err(|e| HarnessError::io(local, e))?;
        self.write_file(remote, &data, mode)
    }

    /// Creates or replaces a guest file with `data` (and its parent directories), through
    /// a temp name so a reader never sees half a file. A plain exec with the bytes on stdin:
    /// no scp or sftp binary is needed in the guest.
    pub fn write_file(&self, remote: &str, data: &[u8], mode: i32) -> Result<()> {
        let cmd = write_command(remote, mode);
        let out = self.exec_with_input(&cmd, Some(data), Duration::from_secs(300))?;
        if out.status != 0 {
            return Err(HarnessError::Command {
                cmd: format!("upload to {remote}"),
                what: format!("exited {}", out.status),
                output: out.combined(),
            });
        }
        Ok(())
    }
}

/// The shell that stores its stdin as `remote` (mode `mode`, parents made as needed) via
/// a temp name. Two processes when the directory exists (`cat`, `mv`): each exec costs a
/// TCG guest ~0.2 s.
pub fn write_command(remote: &str, mode: i32) -> String {
    let (tmp, dir) = staging(remote);
    // A shell creates files 0666 minus the umask: execute bits need a chmod.
    let chmod = if mode & 0o111 != 0 {
        format!(" && chmod {mode:o} {tmp}")
    } else {
        String::new()
    };
    format!(
        "umask {umask:03o}; {{ [ -d {dir} ] || mkdir -p {dir}; }} && cat > {tmp}{chmod} && mv -f {tmp} {remote}",
        umask = 0o777 & !mode,
        remote = quote(remote),
    )
}

/// One non-blocking read of each stream into `out` and `err`; whether anything came.
fn read_available(ch: &mut ssh2::Channel, out: &mut Vec<u8>, err: &mut Vec<u8>) -> Result<bool> {
    let mut buf = [0u8; 32 * 1024];
    let mut progressed = false;
    for (stream, into, what) in [(0, out, "read stdout"), (1, err, "read stderr")] {
        match ch.stream(stream).read(&mut buf) {
            Ok(0) => {}
            Ok(n) => {
                into.extend_from_slice(&buf[..n]);
                progressed = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(ssh_err(what, e)),
        }
    }
    Ok(progressed)
}

/// Where an upload to `remote` is staged (`remote` plus a suffix, renamed over it once
/// complete) and the directory it goes in, both quoted for the guest's shell.
pub(crate) fn staging(remote: &str) -> (String, String) {
    let dir = remote
        .rsplit_once('/')
        .map(|(d, _)| d)
        .filter(|d| !d.is_empty())
        .unwrap_or("/");
    (quote(&format!("{remote}.sysext-test-upload")), quote(dir))
}

/// Single-quotes `s` for the guest's shell.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn lossy(b: Vec<u8>) -> String {
    String::from_utf8_lossy(&b).into_owned()
}

/// A fresh ed25519 key pair: (private key in OpenSSH PEM, public key line).
/// The OpenSSH public line of the private key `pem` (a saved state keeps only the private
/// one; a resumed boot hands the public one to Ignition again).
pub fn public_of(pem: &str) -> Result<String> {
    let key = ssh_key::PrivateKey::from_openssh(pem).map_err(|e| ssh_err("key decoding", e))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| ssh_err("key encoding", e))?;
    Ok(format!("{public} sysext-test\n"))
}

pub fn ephemeral_key() -> Result<(String, String)> {
    let key =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .map_err(|e| ssh_err("key generation", e))?;
    let pem = key
        .to_openssh(ssh_key::LineEnding::LF)
        .map_err(|e| ssh_err("key encoding", e))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| ssh_err("key encoding", e))?;
    Ok((pem.to_string(), format!("{public} sysext-test\n")))
}
