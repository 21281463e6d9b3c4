//! A guest that dies under a case is the harness's failure, never the extension's: even a
//! negative test that expects this very case to fail must not pass on it.

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
}
