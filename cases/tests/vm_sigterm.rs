//! Killing a VM test with SIGTERM (what nextest does on timeout) leaves no QEMU process and
//! no temp directory behind.

mod vm {
    use std::io::{BufRead, BufReader};
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use sysext_builder::Arch;

    const NAME: &str = "vm::sigterm_leaves_no_qemu_and_no_temp_dir";

    /// The child side: restore a guest, say where it lives, and wait to be killed.
    fn victim() {
        let guest = sysext_builder::guest::build_or_reuse(
            &sysext_builder::guest::Recipe::debian(Arch::X86_64),
            &|l| eprintln!("{l}"),
        )
        .expect("x86-64 guest");
        let snap = sysext_harness::snapshot::shared(
            &guest,
            &sysext_harness::Place::from_env().snapshots(),
            &|l| eprintln!("{l}"),
        )
        .expect("snapshot");
        let vm = sysext_harness::Vm::restore(&snap).expect("restore");
        println!(
            "VICTIM qemu={} dir={}",
            vm.qemu_pid().unwrap_or(0),
            vm.run_dir().display()
        );
        std::thread::sleep(Duration::from_secs(600));
    }

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
            .unwrap_or(false)
    }

    #[test]
    fn sigterm_leaves_no_qemu_and_no_temp_dir() {
        if std::env::var_os("SYSEXT_TEST_VICTIM").is_some() {
            return victim();
        }
        let exe = std::env::current_exe().expect("test binary path");
        let mut child = Command::new(exe)
            .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
            .env("SYSEXT_TEST_VICTIM", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the victim");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest prints "test NAME ... " before the test's own output, on the same line.
                if let Some(pos) = line.find("VICTIM ") {
                    let _ = tx.send(line[pos + 7..].to_string());
                    return;
                }
            }
        });
        let Ok(info) = rx.recv_timeout(Duration::from_secs(600)) else {
            let _ = child.kill();
            panic!("the victim never reported a running VM");
        };
        let pid: u32 = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("qemu="))
            .and_then(|p| p.parse().ok())
            .expect("qemu pid");
        let dir = PathBuf::from(
            info.split_whitespace()
                .find_map(|w| w.strip_prefix("dir="))
                .expect("dir"),
        );
        assert!(alive(pid), "QEMU {pid} should be running before the signal");
        assert!(
            dir.exists(),
            "{} should exist before the signal",
            dir.display()
        );

        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "the victim did not exit within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            !status.success(),
            "the victim should die of the signal, got {status}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!alive(pid), "QEMU {pid} outlived its test");
        assert!(!dir.exists(), "{} outlived its test", dir.display());
    }
}
