//! A release directory as systemd-sysupdate will download it. The directory is served by the
//! local mirror under the bakery redirector's paths, and each url-file transfer's Source is
//! fetched the way sysupdate fetches it: `<Path>SHA256SUMS`, then `<Path><file>` for what
//! the pattern picks. A Path naming the wrong directory, or an image name the redirector
//! splits differently than the pattern does (bakery #127: 404s for docker-compose), only
//! shows up here; the files on disk look fine.

use std::path::Path;
use std::time::Duration;

use sysext_builder::pattern::{self, Match};
use sysext_builder::sha256sums;
use sysext_builder::unitfile::IniFile;
use sysext_harness::Mirror;

use crate::lint::finding::{Finding, Rule, Severity};

pub const SERVED_SUMS: Rule = Rule {
    id: "served/sums",
    severity: Severity::Error,
    summary: "the hub serves no SHA256SUMS at the transfer's Source Path, so every sysupdate verb fails",
    reference: "L1, bakery Caddyfile @esha",
};
pub const SERVED_NO_MATCH: Rule = Rule {
    id: "served/no-match",
    severity: Severity::Error,
    summary: "the SHA256SUMS served at Source Path lists nothing the MatchPattern picks",
    reference: "L5, bakery #127",
};
pub const SERVED_IMAGE: Rule = Rule {
    id: "served/image",
    severity: Severity::Error,
    summary: "an image the served SHA256SUMS offers cannot be downloaded from Source Path",
    reference: "L11, bakery Caddyfile @raw",
};
pub const SERVED_SKIPPED: Rule = Rule {
    id: "served/not-checked",
    severity: Severity::Info,
    summary: "the transfer was not fetched through the mirror (not a bakery hub URL, or no mirror)",
    reference: "bakery Caddyfile",
};

pub const RULES: &[&Rule] = &[
    &SERVED_SUMS,
    &SERVED_NO_MATCH,
    &SERVED_IMAGE,
    &SERVED_SKIPPED,
];

/// Fetches every url-file transfer in `dir` through a mirror of `dir`.
pub fn check(dir: &Path, transfers: &[String]) -> Vec<Finding> {
    let mut out = Vec::new();
    let sources: Vec<(String, String, String)> = transfers
        .iter()
        .filter_map(|file| {
            let text = std::fs::read_to_string(dir.join(file)).ok()?;
            let ini = IniFile::parse(&text);
            let get = |k: &str| ini.get("Source", k).map(|a| a.value.clone());
            (get("Type")?.as_str() == "url-file")
                .then(|| Some((file.clone(), get("Path")?, get("MatchPattern")?)))?
        })
        .collect();
    if sources.is_empty() {
        return out;
    }
    let mirror = match Mirror::serve(dir) {
        Ok(m) => m,
        Err(e) => {
            out.push(Finding::new(
                &SERVED_SKIPPED,
                dir.display().to_string(),
                format!(
                    "could not serve the directory to check what sysupdate would download: {e}"
                ),
            ));
            return out;
        }
    };
    let client = match reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            out.push(Finding::new(
                &SERVED_SKIPPED,
                dir.display().to_string(),
                format!("could not make an HTTP client to fetch what sysupdate would: {e}"),
            ));
            return out;
        }
    };
    for (file, path, patterns) in sources {
        check_source(&mirror, &client, &file, &path, &patterns, &mut out);
    }
    out
}

fn check_source(
    mirror: &Mirror,
    client: &reqwest::blocking::Client,
    file: &str,
    path: &str,
    patterns: &str,
    out: &mut Vec<Finding>,
) {
    let Some((_, rest)) = path.split_once("/extensions/") else {
        out.push(Finding::new(
            &SERVED_SKIPPED,
            file,
            format!("[Source] Path={path} is not under a bakery hub (…/extensions/); not fetched through the mirror"),
        ));
        return;
    };
    let base = format!("{}/{}", mirror.url(), rest);
    let base = if base.ends_with('/') {
        base
    } else {
        format!("{base}/")
    };
    let sums_url = format!("{base}SHA256SUMS");
    let sums = match client.get(&sums_url).send() {
        Ok(r) if r.status().is_success() => r.bytes().ok().map(|b| b.to_vec()),
        Ok(r) => {
            out.push(Finding::new(
                &SERVED_SUMS,
                file,
                format!(
                    "sysupdate fetches {path}SHA256SUMS; the redirector answers {} for it (it serves /extensions/NAME/SHA256SUMS only for an extension NAME with released images). Point Path at …/extensions/<extension>/",
                    r.status().as_u16()
                ),
            ));
            return;
        }
        Err(e) => {
            out.push(Finding::new(
                &SERVED_SKIPPED,
                file,
                format!("fetching {sums_url} from the mirror failed: {e}"),
            ));
            return;
        }
    };
    let (entries, _) = sha256sums::parse(&sums.unwrap_or_default());
    let mut picked = Vec::new();
    for arch in sysext_builder::Arch::ALL.map(|a| a.systemd_name()) {
        for raw in patterns.split_whitespace() {
            let Ok(elements) = pattern::expand_specifiers(raw, arch)
                .map_err(|e| e.to_string())
                .and_then(|p| pattern::parse(&p).map_err(|e| e.to_string()))
            else {
                // transfer/pattern reports it.
                return;
            };
            for e in &entries {
                if let Match::Version(_) = pattern::match_name(&elements, &e.file) {
                    picked.push(e.file.clone());
                }
            }
        }
    }
    if picked.is_empty() {
        let listed: Vec<&str> = entries.iter().map(|e| e.file.as_str()).take(3).collect();
        out.push(Finding::new(
            &SERVED_NO_MATCH,
            file,
            format!(
                "the SHA256SUMS served at {path} lists {} file(s) (e.g. {listed:?}) and MatchPattern={patterns} picks none of them; sysupdate will never find an update",
                entries.len()
            ),
        ));
        return;
    }
    picked.sort();
    picked.dedup();
    for image in picked {
        let url = format!("{base}{image}");
        let status = client.head(&url).send().map(|r| r.status().as_u16());
        if !matches!(status, Ok(200)) {
            out.push(Finding::new(
                &SERVED_IMAGE,
                image.as_str(),
                format!(
                    "listed at {path}SHA256SUMS, but {path}{image} answers {}: the redirector cannot route this name (the version must not contain '-', the arch must be x86-64 or arm64)",
                    status.map_or_else(|e| e.to_string(), |s| s.to_string())
                ),
            ));
        }
    }
}
