//! Which store file a request path names, following the bakery redirector's rules
//! (`tools/http-url-rewrite-server/Caddyfile`, in file order), so a transfer file that works
//! against the mirror works against extensions.flatcar.org and the other way round.

/// What a request path resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// An image file in the store, `NAME-VERSION-ARCH.raw`.
    Image(String),
    /// A transfer file in the store, `NAME.conf` or a per-minor `NAME-vX.Y.conf`.
    Transfer(String),
    /// The manifest of one extension: the store's lines whose image belongs to `NAME`.
    ExtensionSums(String),
    /// The global manifest: the store's `SHA256SUMS` as it is.
    GlobalSums,
    /// `/tree/PATH`: the store's file at PATH, byte for byte. Not the bakery's: for
    /// release directories whose own files are under test (a `SHA256SUMS` with CRLF line
    /// ends must reach sysupdate as it is, not filtered by extension).
    Tree(String),
    /// Everything else; the real redirector sends it to GitHub Pages, the mirror says 404.
    Unknown,
}

/// Splits `NAME-VERSION-ARCH.raw` the way the redirector's regex backtracks: the version is
/// the last `-` field before the arch, so it must not contain `-` itself.
pub fn split_image_name(file: &str) -> Option<(&str, &str, &str)> {
    let stem = file.strip_suffix(".raw")?;
    // The arch suffixes the redirector's `@raw` rule accepts are systemd's names.
    let (rest, arch) = sysext_builder::Arch::ALL
        .iter()
        .map(|a| a.systemd_name())
        .find_map(|a| Some((stem.strip_suffix(a)?.strip_suffix('-')?, a)))?;
    let (name, version) = rest.rsplit_once('-')?;
    if name.is_empty() || version.is_empty() || name.contains('/') {
        return None;
    }
    Some((name, version, arch))
}

/// Resolves a request path (without query string).
pub fn route(path: &str) -> Route {
    if let Some(rest) = path.strip_prefix("/tree/") {
        // Empty segments are skipped, as web servers do (a `Path=` with a trailing `/`
        // asks for `DIR//SHA256SUMS`); nothing may climb out of the store.
        let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        if parts.is_empty() || parts.iter().any(|s| *s == ".." || *s == ".") {
            return Route::Unknown;
        }
        return Route::Tree(parts.join("/"));
    }
    let Some(rest) = path.strip_prefix("/extensions/") else {
        return Route::Unknown;
    };
    if rest.split('/').any(|s| s == ".." || s == ".") {
        return Route::Unknown;
    }
    let file = rest.rsplit('/').next().unwrap_or_default();
    let dirs: Vec<&str> = rest.split('/').collect();
    // @raw: any sub-path before the file name is ignored.
    if split_image_name(file).is_some() {
        return Route::Image(file.to_string());
    }
    match dirs.as_slice() {
        // @conf and @pconf
        [conf] if conf.ends_with(".conf") && conf.len() > 5 => Route::Transfer(conf.to_string()),
        [_, conf] if conf.ends_with(".conf") && conf.len() > 5 => Route::Transfer(conf.to_string()),
        // @sha, then @esha
        ["SHA256SUMS"] => Route::GlobalSums,
        [name, "SHA256SUMS"] if !name.is_empty() => Route::ExtensionSums(name.to_string()),
        _ => Route::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("/extensions/docker/docker-28.0.5-x86-64.raw", Route::Image("docker-28.0.5-x86-64.raw".into()))]
    #[case("/extensions/docker-28.0.5-arm64.raw", Route::Image("docker-28.0.5-arm64.raw".into()))]
    #[case("/extensions/a/b/docker-compose-2.34.0-x86-64.raw", Route::Image("docker-compose-2.34.0-x86-64.raw".into()))]
    #[case("/extensions/docker.conf", Route::Transfer("docker.conf".into()))]
    #[case("/extensions/kubernetes/kubernetes-v1.32.conf", Route::Transfer("kubernetes-v1.32.conf".into()))]
    #[case("/extensions/docker/SHA256SUMS", Route::ExtensionSums("docker".into()))]
    #[case("/extensions/SHA256SUMS", Route::GlobalSums)]
    #[case("/extensions/docker-28.0.5-amd64.raw", Route::Unknown)]
    #[case("/extensions/../etc/passwd", Route::Unknown)]
    #[case("/index.html", Route::Unknown)]
    #[case("/tree/t1/SHA256SUMS", Route::Tree("t1/SHA256SUMS".into()))]
    #[case("/tree/t1/../../etc/passwd", Route::Unknown)]
    #[case("/tree/t1//SHA256SUMS", Route::Tree("t1/SHA256SUMS".into()))]
    #[case("/tree/", Route::Unknown)]
    #[case("/extensions/.conf", Route::Unknown)]
    fn paths_resolve_like_the_bakery_redirector(#[case] path: &str, #[case] want: Route) {
        assert_eq!(route(path), want);
    }

    #[rstest]
    #[case("docker-compose-2.34.0-x86-64.raw", Some(("docker-compose", "2.34.0", "x86-64")))]
    #[case("kubernetes-v1.32.2-arm64.raw", Some(("kubernetes", "v1.32.2", "arm64")))]
    #[case("docker-x86-64.raw", None)]
    #[case("docker-1.0-x86_64.raw", None)]
    fn image_names_split_at_the_last_dash_before_the_arch(
        #[case] file: &str,
        #[case] want: Option<(&str, &str, &str)>,
    ) {
        assert_eq!(split_image_name(file), want);
    }
}
