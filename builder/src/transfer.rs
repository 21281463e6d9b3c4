//! The sysupdate transfer file the bakery ships beside every release (`NAME.conf`).

/// Where the bakery's redirector serves releases; a transfer's `Source Path` is under it.
pub const BAKERY_HUB: &str = "https://extensions.flatcar.org/extensions";

/// The bakery's `noop.conf` (served at `/extensions/noop.conf`): a transfer that never
/// matches anything, so `systemd-sysupdate.service` finds at least one definition in
/// `/etc/sysupdate.d/` instead of failing with "No transfer definitions found" (bakery #88).
pub const NOOP: &str = "[Source]\n\
                        Type=regular-file\n\
                        Path=/\n\
                        MatchPattern=invalid@v.raw\n\
                        [Target]\n\
                        Type=regular-file\n\
                        Path=/\n";

/// The transfer file `text` with its `[Source] Path=` moved from whatever hub it names to
/// `hub`, keeping the path below `/extensions` and every other line as shipped: the release
/// gate tests the conf the store holds, pointed at the local mirror. None when the Path is
/// not under an `/extensions` directory (then there is no hub to swap).
pub fn retarget(text: &str, hub: &str) -> Option<String> {
    let hub = hub.trim_end_matches('/');
    let mut in_source = false;
    let mut changed = false;
    let mut out = String::with_capacity(text.len() + hub.len());
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_source = trimmed == "[Source]";
        }
        let value = trimmed.strip_prefix("Path=").filter(|_| in_source);
        match value.and_then(|v| v.find("/extensions/").map(|i| (v, i))) {
            Some((v, i)) => {
                let rest = &v[i + "/extensions".len()..];
                out.push_str(&format!("Path={hub}{rest}\n"));
                changed = true;
            }
            None => out.push_str(line),
        }
    }
    changed.then_some(out)
}

/// Renders the bakery's transfer for extension `name` (lib/sysupdate.conf.tmpl), with the
/// `[Target] MatchPattern` spelled out: sysupdate would copy it from `[Source]` anyway, and
/// being explicit avoids its "Assuming same value" notice.
///
/// `hub` is the URL the per-extension directory lives under (the bakery hub, or a mirror).
pub fn render_bakery(name: &str, hub: &str) -> String {
    let hub = hub.trim_end_matches('/');
    format!(
        "[Transfer]\n\
         Verify=false\n\
         \n\
         [Source]\n\
         Type=url-file\n\
         Path={hub}/{name}/\n\
         MatchPattern={name}-@v-%a.raw\n\
         \n\
         [Target]\n\
         InstancesMax=3\n\
         Type=regular-file\n\
         Path=/opt/extensions/{name}\n\
         MatchPattern={name}-@v-%a.raw\n\
         CurrentSymlink=/etc/extensions/{name}.raw\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unitfile::IniFile;

    #[test]
    fn bakery_transfer_has_the_documented_keys() {
        let f = IniFile::parse(&render_bakery("docker", BAKERY_HUB));
        assert!(f.issues.is_empty());
        let get = |s: &str, k: &str| f.get(s, k).map(|a| a.value.as_str());
        assert_eq!(get("Transfer", "Verify"), Some("false"));
        assert_eq!(get("Source", "Type"), Some("url-file"));
        assert_eq!(
            get("Source", "Path"),
            Some("https://extensions.flatcar.org/extensions/docker/")
        );
        assert_eq!(get("Source", "MatchPattern"), Some("docker-@v-%a.raw"));
        assert_eq!(get("Target", "Path"), Some("/opt/extensions/docker"));
        assert_eq!(
            get("Target", "CurrentSymlink"),
            Some("/etc/extensions/docker.raw")
        );
        assert_eq!(get("Target", "InstancesMax"), Some("3"));
    }
}

#[cfg(test)]
mod retarget_tests {
    use super::*;

    #[test]
    fn retarget_moves_only_the_source_path_to_the_mirror() {
        let shipped = render_bakery("docker", BAKERY_HUB);
        let moved = retarget(&shipped, "http://10.0.2.2:4321/extensions/").unwrap();
        assert!(
            moved.contains("Path=http://10.0.2.2:4321/extensions/docker/\n"),
            "{moved}"
        );
        assert!(moved.contains("Path=/opt/extensions/docker\n"), "{moved}");
        assert_eq!(moved.lines().count(), shipped.lines().count());
        assert!(retarget("[Source]\nPath=/\n", "http://x/extensions").is_none());
    }
}
