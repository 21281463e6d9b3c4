//! `sysext-test mirror`: serve a release directory the way extensions.flatcar.org does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use sysext_harness::mirror::{Logged, Mirror};

use crate::args::{Format, duration};

#[derive(clap::Args)]
#[command(
    after_help = "Serves DIR (what `sysext-test build -o DIR` writes: NAME-VERSION-ARCH.raw, \
SHA256SUMS, NAME.conf) on 127.0.0.1 the way the bakery's redirector does: /extensions/NAME/SHA256SUMS, \
/extensions/NAME/NAME-VERSION-ARCH.raw, /extensions/NAME.conf, /extensions/SHA256SUMS. A QEMU guest \
with user networking reaches it at 10.0.2.2; build with `--hub http://10.0.2.2:PORT/extensions` so \
the transfer file points at it. Prints one line per request (JSON lines with --format json); Ctrl-C \
or SIGTERM stops it.

Examples:
  sysext-test mirror release/
  sysext-test mirror --port 8080 --format json --timeout 10m release/"
)]
pub struct Args {
    /// Release directory to serve.
    dir: PathBuf,
    /// Port on 127.0.0.1; 0 lets the OS pick a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Stop after this long: 90s, 10m, 1h (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    timeout: Option<Duration>,
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    if !dir.is_dir() {
        anyhow::bail!(
            "{}: not a directory; give a release directory (sysext-test build SPEC -o DIR writes one)",
            dir.display()
        );
    }
    if !dir.join("SHA256SUMS").is_file() {
        eprintln!(
            "sysext-test: warning: {} has no SHA256SUMS, so sysupdate will find nothing here (build into it first)",
            dir.display()
        );
    }
    let json = args.format == Format::Json;
    let observer = Box::new(move |r: &Logged| {
        if json {
            if let Ok(line) = serde_json::to_string(r) {
                println!("{line}");
            }
        } else {
            println!(
                "{} {} {} {} bytes{}",
                r.method,
                r.path,
                r.status,
                r.bytes,
                r.fault
                    .map(|f| format!(" (fault: {f})"))
                    .unwrap_or_default()
            );
        }
    });
    let mirror = Mirror::serve_on(dir, args.port, Some(observer))
        .map_err(|e| anyhow::anyhow!("{e} (pick another --port, or 0 for a free one)"))?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "serving": dir.display().to_string(),
                "url": mirror.url(),
                "guest_url": mirror.guest_url(),
            })
        );
    } else {
        eprintln!(
            "serving {} at {}/\n  guests (QEMU user networking): {}/\n  transfer files for it: sysext-test build SPEC --hub {}\n  Ctrl-C stops",
            dir.display(),
            mirror.url(),
            mirror.guest_url(),
            mirror.guest_url()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let timeout = args.timeout;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let limit = async {
            match timeout {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
            _ = limit => Ok(()),
        }
    })?;
    drop(mirror);
    Ok(ExitCode::SUCCESS)
}
