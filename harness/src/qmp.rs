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

pub struct Qmp {
    service: Service,
    pub events: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Qmp {
    /// Connects to `socket`, retrying until `deadline` or until `alive` says QEMU is gone.
    pub async fn connect(
        socket: &Path,
        deadline: Instant,
        mut alive: impl FnMut() -> bool,
    ) -> Result<Qmp> {
        let stream = loop {
            match QmpStreamTokio::open_uds(socket).await {
                Ok(s) => break s,
                Err(e) => {
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
            }
        };
        let stream = stream
            .negotiate()
            .await
            .map_err(|e| HarnessError::Qmp(format!("capabilities negotiation: {e}")))?;
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
