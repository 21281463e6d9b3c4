//! VM cases: what a user checks after installing an extension on a live host. Each case
//! starts from a restored snapshot, installs the image the bakery way, and acts only through
//! the `Vm` API.

mod binaries;
mod merge;
pub mod runner;
mod services;
pub mod subject;
mod unmerge;

pub use subject::Subject;
use sysext_harness::Vm;

/// The VM cases, in the order they are listed.
pub const CASES: &[&str] = &["merge", "binaries", "services", "unmerge"];

/// Why a case failed: what it expected and what it saw.
pub type CaseResult = Result<(), String>;

pub fn run(case: &str, vm: &Vm, s: &Subject) -> CaseResult {
    match case {
        "merge" => merge::run(vm, s),
        "binaries" => binaries::run(vm, s),
        "services" => services::run(vm, s),
        "unmerge" => unmerge::run(vm, s),
        other => Err(format!("unknown case {other}")),
    }
}

fn h(e: sysext_harness::HarnessError) -> String {
    e.to_string()
}

/// Installs the image as bakery users do: the file under /opt/extensions/NAME/ and the
/// symlink /etc/extensions/NAME.raw.
pub fn install(vm: &Vm, s: &Subject) -> CaseResult {
    let dir = format!("/opt/extensions/{}", s.name);
    vm.succeed(&format!("mkdir -p {dir} /etc/extensions"))
        .map_err(h)?;
    vm.upload(&s.image, &format!("{dir}/{}", s.file_name))
        .map_err(h)?;
    vm.succeed(&format!(
        "ln -sfn {dir}/{} /etc/extensions/{}.raw",
        s.file_name, s.name
    ))
    .map_err(h)?;
    Ok(())
}

/// `systemd-sysext merge`, then checks that the extension really is merged: the exit status
/// alone says nothing (0 also when every image was ignored).
pub fn merge_and_verify(vm: &Vm, s: &Subject) -> CaseResult {
    let out = vm.execute("systemd-sysext merge 2>&1").map_err(h)?;
    if out.status != 0 {
        return Err(format!(
            "expected `systemd-sysext merge` to merge '{}', but it exited {}; systemd said:\n{}",
            s.name,
            out.status,
            out.combined().trim()
        ));
    }
    let status = vm
        .succeed("systemd-sysext status --json=short")
        .map_err(h)?;
    let merged = merged_on(&status, "/usr");
    if !merged.contains(&s.name) {
        let journal = vm
            .execute("journalctl -b --no-pager -o cat _COMM=systemd-sysext | tail -n 20")
            .map(|o| o.combined())
            .unwrap_or_default();
        return Err(format!(
            "expected '{}' merged on /usr, saw {merged:?} (merge said: {}); journal:\n{journal}",
            s.name,
            out.combined().trim()
        ));
    }
    Ok(())
}

/// Extension names merged on `hierarchy` in `systemd-sysext status --json=short` output
/// (`extensions` is the string "none" or an array).
pub fn merged_on(status_json: &str, hierarchy: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(status_json) else {
        return Vec::new();
    };
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|row| row.get("hierarchy").and_then(|h| h.as_str()) == Some(hierarchy))
        .flat_map(|row| {
            row.get("extensions")
                .and_then(|e| e.as_array())
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_none_and_arrays() {
        let j = r#"[{"hierarchy":"/opt","extensions":"none","since":null},{"hierarchy":"/usr","extensions":["a","b"],"since":1}]"#;
        assert_eq!(merged_on(j, "/usr"), ["a", "b"]);
        assert!(merged_on(j, "/opt").is_empty());
        assert!(merged_on("garbage", "/usr").is_empty());
    }
}
