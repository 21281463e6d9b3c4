//! Flatcar's disk as the Flatcar guests have it: `/usr` is the dm-verity device, and a
//! `/usr` whose bytes do not match the root hash on the kernel command line does not boot.

mod vm {
    use std::os::unix::fs::FileExt;
    use std::process::Command;

    use sysext_builder::Arch;
    use sysext_builder::gpt;
    use sysext_builder::guest::{self, Guest, Profile};
    use sysext_cases::via::cold_boot::{self, NoLogin};
    use sysext_harness::vm::BootOptions;

    #[test]
    fn a_flipped_byte_in_usr_a_gives_no_login_and_a_failure_naming_verity() {
        let recipe = guest::Recipe::new(Profile::Flatcar, Arch::X86_64);
        let base = guest::build_or_reuse(&recipe, &|l| eprintln!("{l}")).unwrap();
        let work = tempfile::tempdir().unwrap();
        let disk = work.path().join("tampered.img");
        let cp = Command::new("cp")
            .arg("--sparse=always")
            .arg(&base.disk)
            .arg(&disk)
            .status()
            .unwrap();
        assert!(cp.success());
        // One byte of the btrfs superblock (64 KiB in), which mounting /usr reads first.
        let usr = gpt::find(&disk, "USR-A").unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&disk)
            .unwrap();
        let at = usr.offset() + 0x10000 + 0x300;
        let mut byte = [0u8; 1];
        f.read_exact_at(&mut byte, at).unwrap();
        f.write_all_at(&[byte[0] ^ 0x01], at).unwrap();
        drop(f);
        let tampered = Guest {
            disk,
            ..base.clone()
        };
        let options = BootOptions {
            give_up_on: cold_boot::GIVE_UP_ON,
            ..Default::default()
        };
        match cold_boot::boot(&tampered, &options, None, &|l| eprintln!("{l}")) {
            Ok(vm) => panic!(
                "logged in with a /usr that does not match its root hash: {}",
                vm.console()
            ),
            Err(NoLogin::Harness(e)) => {
                panic!("a harness error, not the disk's failure: {e}")
            }
            Err(NoLogin::Image { assertion, console }) => {
                assert!(
                    console.contains("device-mapper: verity"),
                    "the console does not name verity: {console}"
                );
                assert!(
                    format!("{assertion:?}").contains("verity"),
                    "the failure does not name verity: {assertion:?}"
                );
            }
        }
    }
}
