//! A guest that dies under a case is the harness's failure, never the extension's: even a
//! negative test that expects this very case to fail must not pass on it. A guest kernel
//! that dies is run once more (an emulator fault under TCG), and one that dies again stays
//! a harness error, never a pass.

mod vm {
    use std::time::Duration;

    use sysext_builder::Arch;
    use sysext_cases::outcome::{Case, ExpectedFailure, Verdict};
    use sysext_cases::runner::{Row, Setup, exit_status, run_with};
    use sysext_harness::Place;

    #[test]
    fn guest_killed_mid_case_is_a_harness_error_not_an_expected_failure() {
        let name = "vm::guest_killed_mid_case_is_a_harness_error_not_an_expected_failure";
        let expected = ExpectedFailure {
            case: Case::Services,
            systemd: vec!["status=203/EXEC".into()],
        };
        let outcome = run_with(
            name,
            Arch::X86_64,
            Setup::Runtime {
                carrying: None,
                profile: sysext_builder::guest::Profile::Debian,
            },
            Some(&expected),
            &Place::from_env(),
            &|l| eprintln!("{name}: {l}"),
            |reached| {
                let vm = reached.vm();
                vm.succeed("true")?;
                let pid = vm.qemu_pid().expect("QEMU runs") as i32;
                // SAFETY: kill(2) on the QEMU child this VM owns.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                std::thread::sleep(Duration::from_millis(300));
                // What a services case does next; the guest is gone.
                vm.succeed("systemctl show -p ActiveState -- x.service")?;
                Ok(())
            },
        );
        match &outcome.verdict {
            // The guest died under the command after the kill: the SSH stage broke, not
            // the restore before it and not the image.
            Verdict::Error { stage, message } => {
                assert_eq!(stage, "SSH", "{message}");
            }
            other => panic!("a dead guest must be a harness error, got {other:?}"),
        }
        let rows = [Row {
            image: "x.raw".into(),
            arch: Arch::X86_64,
            case: Case::Services,
            outcome,
        }];
        assert_eq!(
            exit_status(&rows),
            2,
            "the CLI exits 2 when the harness broke"
        );
    }

    #[test]
    fn a_case_whose_kernel_dies_twice_is_run_twice_and_stays_a_harness_error() {
        use sysext_cases::manifest::Manifest;
        use sysext_cases::runner::Trial;
        use sysext_cases::subject::Subject;

        let name = "vm::a_case_whose_kernel_dies_twice_is_run_twice_and_stays_a_harness_error";
        let tmp = tempfile::tempdir().unwrap();
        let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/extensions/hello-service.toml");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sysext-test"))
            .args(["build", "--arch", "x86-64", "-o"])
            .arg(tmp.path())
            .arg(&spec)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let image = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "raw"))
            .unwrap();
        // The image's "command" crashes the guest's kernel, every time.
        let manifest_path = tmp.path().join("crash.toml");
        std::fs::write(
            &manifest_path,
            "commands = [ { run = \"echo c > /proc/sysrq-trigger\", expect = \"\" } ]\n",
        )
        .unwrap();
        let manifest = Manifest::load(&manifest_path).unwrap();
        let subject = Subject::from_image(&image, manifest).unwrap();
        let heard = std::sync::Mutex::new(Vec::<String>::new());
        let outcome = Trial::new(name, &subject, Arch::X86_64, Case::Binaries).run(
            &Place::from_env(),
            &|l| {
                eprintln!("{name}: {l}");
                heard.lock().unwrap().push(l.to_string());
            },
        );
        match &outcome.verdict {
            Verdict::Error { message, .. } => {
                assert!(message.contains("run twice"), "{message}");
            }
            other => {
                panic!("a guest whose kernel dies twice must be a harness error, got {other:?}")
            }
        }
        let heard = heard.lock().unwrap();
        assert!(
            heard
                .iter()
                .any(|l| l.contains("running the case once more")),
            "{heard:?}"
        );
    }
}
