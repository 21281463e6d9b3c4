//! A Flatcar release as a user gets one: `guest fetch flatcar:stable` from an https server
//! laid out like Flatcar's release server (the channel's `current/version.txt`, the
//! version's folder with `flatcar_production_qemu_uefi_image.img.bz2`, every file signed),
//! then `run --guest flatcar:stable` on that release. The server is the only stand-in: its
//! image is the flatcar guest's own disk (Flatcar's format: UEFI, GRUB, verity `/usr`,
//! btrfs OEM), as qcow2 and bzip2 the way Flatcar publishes it, signed by a key made here.

#[path = "../../harness/tests/support/release_server.rs"]
mod release_server;

mod vm {
    use std::path::Path;
    use std::process::Command;

    use sysext_builder::Arch;
    use sysext_builder::guest::{self, Profile};
    use sysext_harness::flatcar::{IMAGE, VERSION_TXT};

    use super::release_server::{keys, serve, sign, test_ca};

    #[test]
    fn a_fetched_release_is_booted_and_the_extension_merges_on_it() {
        let recipe = guest::Recipe::new(Profile::Flatcar, Arch::X86_64);
        let base = guest::build_or_reuse(&recipe, &|l| eprintln!("{l}")).unwrap();
        // The release the stand-in's own os-release says it is.
        let version = Profile::Flatcar
            .flatcar_release()
            .unwrap()
            .version
            .to_string();
        let version = version.as_str();
        let keys = keys();
        let tree = tempfile::tempdir().unwrap();
        let version_dir = tree.path().join("stable/amd64-usr").join(version);
        let current = tree.path().join("stable/amd64-usr/current");
        for dir in [&version_dir, &current] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(
                dir.join(VERSION_TXT),
                format!("FLATCAR_VERSION={version}\nFLATCAR_SDK_VERSION={version}\n"),
            )
            .unwrap();
            sign(&keys, &dir.join(VERSION_TXT));
        }
        publish_image(&base.disk, &version_dir.join(IMAGE));
        sign(&keys, &version_dir.join(IMAGE));
        let ca = test_ca();
        let server = serve(tree.path().to_path_buf(), Some(ca.acceptor));
        let cache = tempfile::tempdir().unwrap();
        let cli = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_sysext-test"))
                .args(args)
                .env(
                    "SYSEXT_TEST_FLATCAR_URL",
                    format!("https://127.0.0.1:{}/{{channel}}", server.port),
                )
                .env("SYSEXT_TEST_FLATCAR_KEYRING", &keys.keyring)
                .env("SSL_CERT_FILE", &ca.ca_file)
                .env_remove("SSL_CERT_DIR")
                .env_remove("SYSEXT_TEST_GUEST")
                .env("SYSEXT_TEST_CACHE", cache.path())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            eprintln!("sysext-test {}:\n{stderr}", args.join(" "));
            (out.status.code(), stdout, stderr)
        };

        let (code, stdout, stderr) = cli(&["guest", "fetch", "flatcar:stable", "--format", "json"]);
        assert_eq!(code, Some(0), "{stdout}\n{stderr}");
        let fetched: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(fetched["version"], version, "{stdout}");
        let disk = fetched["disk"].as_str().unwrap();
        assert!(
            disk.starts_with(cache.path().to_str().unwrap()) && Path::new(disk).is_file(),
            "{stdout}"
        );
        let paths = server.paths_since(0);
        assert!(
            paths.contains(&"/stable/amd64-usr/current/version.txt".to_string())
                && paths.contains(&format!("/stable/amd64-usr/{version}/{IMAGE}.sig")),
            "not Flatcar's release layout: {paths:?}"
        );

        let out = tempfile::tempdir().unwrap();
        let spec =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/extensions/hello-update.toml");
        let (code, stdout, stderr) = cli(&[
            "build",
            "--arch",
            "x86-64",
            "-o",
            out.path().to_str().unwrap(),
            spec.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(0), "{stdout}\n{stderr}");
        let image = out.path().join("hello-update-1.0.0-x86-64.raw");
        let (code, stdout, stderr) = cli(&[
            "run",
            "--guest",
            "flatcar:stable",
            "--case",
            "merge",
            "--case",
            "services",
            "--format",
            "json",
            image.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(0), "{stdout}\n{stderr}");
        let records: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let results: Vec<(String, String)> = records
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["case"].to_string(), r["result"].to_string()))
            .collect();
        assert_eq!(results.len(), 2, "{stdout}");
        assert!(
            results.iter().all(|(_, r)| r == "\"pass\""),
            "{results:?}\n{stdout}"
        );
        // The cases ran on the fetched release: the run says which disk it booted.
        assert!(
            stderr.contains(&format!("flatcar stable current is {version}"))
                && stderr.contains(&format!("{disk}: Flatcar {version} for x86-64")),
            "the run does not say it booted the fetched release:\n{stderr}"
        );
    }

    /// The disk as Flatcar publishes it: qcow2, compressed with bzip2.
    fn publish_image(disk: &Path, dest: &Path) {
        let qcow2 = dest.with_extension("qcow2");
        let st = Command::new("qemu-img")
            .args(["convert", "-O", "qcow2"])
            .arg(disk)
            .arg(&qcow2)
            .status()
            .unwrap();
        assert!(st.success());
        // -1: the smallest block; the test's time goes to compressing, not to the bytes.
        let st = Command::new("bzip2")
            .args(["-1", "-c"])
            .arg(&qcow2)
            .stdout(std::fs::File::create(dest).unwrap())
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::remove_file(qcow2).unwrap();
    }
}
