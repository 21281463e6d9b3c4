//! QMP through qapi: connect (the socket appears some time after QEMU starts), keep the event
//! stream drained (it also routes command replies), and run commands with timeouts.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use qapi::futures::{QapiService, QmpStreamTokio};
use qapi::qmp;
use tokio::io::WriteHalf;
use tokio::net::UnixStream;

use crate::errors::{HarnessError, Result};

type Service = QapiService<QmpStreamTokio<WriteHalf<UnixStream>>>;

/// `qmp_capabilities` is answered at once by a QEMU that greeted; like every command, it
/// gets a deadline anyway.
const NEGOTIATION: Duration = Duration::from_secs(10);

pub struct Qmp {
    service: Service,
    pub events: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Qmp {
    /// Connects to `socket`, retrying until `deadline` or until `alive` says QEMU is gone.
    /// Connecting includes QEMU's greeting, which a stopped or wedged QEMU never sends
    /// although its socket accepts: that wait ends at `deadline` too.
    pub async fn connect(
        socket: &Path,
        deadline: Instant,
        mut alive: impl FnMut() -> bool,
    ) -> Result<Qmp> {
        let until = tokio::time::Instant::from_std(deadline);
        let stream = loop {
            let attempt = tokio::time::timeout_at(until, QmpStreamTokio::open_uds(socket)).await;
            match attempt {
                Ok(Ok(s)) => break s,
                Ok(Err(e)) => {
                    if !alive() {
                        return Err(HarnessError::Qmp(format!(
                            "QEMU exited before its QMP socket answered ({e})"
                        )));
                    }
                    if Instant::now() >= deadline {
                        return Err(HarnessError::Qmp(format!(
                            "no QMP socket at {} ({e})",
                            socket.display()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => {
                    return Err(HarnessError::Qmp(format!(
                        "{} accepted the connection but sent no QMP greeting in time",
                        socket.display()
                    )));
                }
            }
        };
        let stream = match tokio::time::timeout(NEGOTIATION, stream.negotiate()).await {
            Ok(s) => s.map_err(|e| HarnessError::Qmp(format!("capabilities negotiation: {e}")))?,
            Err(_) => {
                return Err(HarnessError::Qmp(format!(
                    "capabilities negotiation: no reply within {NEGOTIATION:?}"
                )));
            }
        };
        let (service, mut events) = stream.into_parts();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(ev) => {
                        let _ = tx.send(format!("{ev:?}"));
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(Qmp {
            service,
            events: rx,
        })
    }

    async fn run<C: qapi::Command>(&self, what: &str, cmd: C, timeout: Duration) -> Result<C::Ok>
    where
        QmpStreamTokio<WriteHalf<UnixStream>>:
            futures::Sink<qapi::Execute<C, u32>, Error = std::io::Error> + Unpin,
    {
        match tokio::time::timeout(timeout, self.service.execute(cmd)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(HarnessError::Qmp(format!("{what}: {e}"))),
            Err(_) => Err(HarnessError::Qmp(format!(
                "{what}: no reply within {timeout:?}"
            ))),
        }
    }

    /// The VM's run state as QEMU names it (`running`, `paused`, `inmigrate`, ...).
    pub async fn status(&self) -> Result<String> {
        let s = self
            .run(
                "query-status",
                qmp::query_status {},
                Duration::from_secs(10),
            )
            .await?;
        Ok(format!("{:?}", s.status).to_lowercase())
    }

    pub async fn stop(&self) -> Result<()> {
        self.run("stop", qmp::stop {}, Duration::from_secs(10))
            .await
            .map(|_| ())
    }

    pub async fn cont(&self) -> Result<()> {
        self.run("cont", qmp::cont {}, Duration::from_secs(10))
            .await
            .map(|_| ())
    }

    pub async fn quit(&self) -> Result<()> {
        self.run("quit", qmp::quit {}, Duration::from_secs(10))
            .await
            .map(|_| ())
    }

    pub async fn powerdown(&self) -> Result<()> {
        self.run(
            "system_powerdown",
            qmp::system_powerdown {},
            Duration::from_secs(10),
        )
        .await
        .map(|_| ())
    }

    /// A human monitor command through QMP: used for `migrate` and `info migrate`, whose QMP
    /// argument and reply shapes changed between QEMU 7.2 (ours) and qapi's 9.1 schema.
    pub async fn hmp(&self, line: &str, timeout: Duration) -> Result<String> {
        self.run(
            line,
            qmp::human_monitor_command {
                command_line: line.into(),
                cpu_index: None,
            },
            timeout,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that accepts and then says nothing (a QEMU stuck before its greeting) must
    /// fail at the deadline, not hang the run.
    #[test]
    fn a_silent_socket_fails_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        let outcome = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                Qmp::connect(&socket, deadline, || true),
            )
            .await
        });
        drop(listener);
        let err = match outcome {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(_)) => panic!("a socket that never greeted cannot be QMP"),
            Err(_) => panic!("connect was still waiting 5 s after its 0.3 s deadline"),
        };
        assert!(err.contains("greeting"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
