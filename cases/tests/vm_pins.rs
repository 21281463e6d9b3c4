//! A negative test passes only on systemd's words for the failure it exists for. The
//! broken-dropin-suffix fixture pins the properties of a unit that exists and that nothing
//! starts; an image that ships no such unit fails too, but for another reason (systemd has
//! no such unit), and must not pass as "failed as expected".
//!
//! Named `vm::…`: it restores a guest, so nextest gives it the machine to itself.

mod vm {
    use std::path::Path;
    use std::process::Command;

    /// The broken-dropin-suffix fixture's own `[test]` table, as written there.
    fn dropin_suffix_pins() -> toml::Table {
        let spec = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/extensions/broken-dropin-suffix.toml");
        let table: toml::Table = toml::from_str(&std::fs::read_to_string(spec).unwrap()).unwrap();
        table["test"].as_table().unwrap().clone()
    }

    #[test]
    fn the_dropin_suffix_pins_fail_on_an_image_that_ships_no_such_unit() {
        let tmp = tempfile::tempdir().unwrap();
        // An image with a binary and no unit at all.
        let spec = tmp.path().join("nounit.toml");
        std::fs::write(
            &spec,
            "name = \"nounit\"\nversion = \"1.0\"\n\n[[file]]\npath = \"/usr/bin/nounit\"\nmode = 0o755\ntext = \"#!/bin/sh\\necho nounit\\n\"\n",
        )
        .unwrap();
        // The manifest names the fixture's unit and pins the fixture's words.
        let mut manifest = dropin_suffix_pins();
        manifest.insert(
            "expect-failure".into(),
            manifest["expect-failure"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["case"].as_str() == Some("services"))
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        );
        let manifest_path = tmp.path().join("pins.toml");
        std::fs::write(&manifest_path, toml::to_string(&manifest).unwrap()).unwrap();
        let bin = env!("CARGO_BIN_EXE_sysext-test");
        let out_dir = tmp.path().join("out");
        let built = Command::new(bin)
            .args(["build", "--arch", "x86-64", "-o"])
            .arg(&out_dir)
            .arg(&spec)
            .output()
            .unwrap();
        assert!(built.status.success(), "{built:?}");
        let run = Command::new(bin)
            .args([
                "run",
                "--case",
                "services",
                "--format",
                "json",
                "--manifest",
            ])
            .arg(&manifest_path)
            .arg(out_dir.join("nounit-1.0-x86-64.raw"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert_eq!(
            run.status.code(),
            Some(1),
            "{stdout}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let records: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let case = &records[0];
        assert_eq!(case["result"], "fail", "{stdout}");
        let why = case["assertion"]["explanation"].as_str().unwrap();
        assert!(why.contains("not for the reason it exists for"), "{why}");
        let evidence = case["assertion"]["evidence"].to_string();
        assert!(evidence.contains("LoadState=not-found"), "{evidence}");
    }
}
