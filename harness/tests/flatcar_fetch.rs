//! The Flatcar provider against a local server laid out like Flatcar's release server
//! (`/<channel>/<board>/<version>/…` under a `{channel}` base), with a release tree signed by
//! a key made here: download and signature check, the cache reused without a request, a cut
//! download resumed with a byte range, a tampered file refused and deleted, and the offline
//! error naming the URL and the folder to fill by hand.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;

use openssl::ssl::SslAcceptor;
use sysext_builder::Arch;
use sysext_harness::flatcar::{Fetcher, FlatcarError, IMAGE, Release, VERSION_TXT};

#[path = "support/release_server.rs"]
mod release_server;
use release_server::{Keys, Server, keys, serve, sign, test_ca};

const VERSION: &str = "4230.2.0";
/// The release that follows it on the stable channel in the tests where the channel moves.
const NEWER: &str = "4230.3.0";

fn release_tree(keys: &Keys, root: &Path) -> Vec<u8> {
    let disk: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    put_release(keys, root, VERSION, &disk);
    disk
}

/// Releases `disk` as `version` of the stable channel and makes it the channel's current
/// one, the way Flatcar's server moves `current` on a release day.
fn put_release(keys: &Keys, root: &Path, version: &str, disk: &[u8]) {
    for v in [version, "current"] {
        let dir = root.join("stable/amd64-usr").join(v);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(VERSION_TXT),
            format!(
                "FLATCAR_BUILD=4230\nFLATCAR_VERSION={version}\nFLATCAR_SDK_VERSION={version}\n"
            ),
        )
        .unwrap();
        let raw = dir.join("disk.img");
        std::fs::write(&raw, disk).unwrap();
        let bz = std::fs::File::create(dir.join(IMAGE)).unwrap();
        let st = Command::new("bzip2")
            .arg("-c")
            .arg(&raw)
            .stdout(bz)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::remove_file(raw).unwrap();
        sign(keys, &dir.join(VERSION_TXT));
        sign(keys, &dir.join(IMAGE));
    }
}

/// A signed release tree served locally, and an empty cache.
struct Lab {
    keys: Keys,
    root: tempfile::TempDir,
    disk: Vec<u8>,
    server: Server,
    cache: tempfile::TempDir,
    /// The server's base URL, with `{channel}` in it.
    base: String,
}

impl Lab {
    fn fetcher(&self) -> Fetcher {
        Fetcher::new(&self.base, &self.keys.keyring, self.cache.path())
    }
}

fn lab() -> Lab {
    lab_with(None)
}

fn lab_with(tls: Option<SslAcceptor>) -> Lab {
    let keys = keys();
    let root = tempfile::tempdir().unwrap();
    let disk = release_tree(&keys, root.path());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = serve(root.path().to_path_buf(), tls);
    Lab {
        base: format!("{scheme}://127.0.0.1:{}/{{channel}}", server.port),
        keys,
        root,
        disk,
        server,
        cache: tempfile::tempdir().unwrap(),
    }
}

/// What `flatcar:stable` through `Fetcher::from_env` printed in a child process of this test
/// binary with `env` set: `Ok(version)` or `Err(message)`. A child, because OpenSSL's
/// trust store (native-tls probes SSL_CERT_FILE once per process) must see the variable as
/// a user's shell would set it, before anything starts.
fn fetch_in_a_child(lab: &Lab, env: &[(&str, &Path)]) -> Result<String, String> {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_fetch",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .envs(env.iter().map(|(k, v)| (k, v.as_os_str())))
        .env("SYSEXT_TEST_FLATCAR_URL", &lab.base)
        .env("SYSEXT_TEST_FLATCAR_KEYRING", &lab.keys.keyring)
        .env(CHILD_CACHE, lab.cache.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest prints the test's name first, on the same line.
    let said = stdout
        .lines()
        .find_map(|l| l.split_once(CHILD_SAID).map(|(_, json)| json))
        .unwrap_or_else(|| {
            panic!(
                "the child printed no result: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(said).unwrap()
}

const CHILD_CACHE: &str = "SYSEXT_TEST_CHILD_CACHE";
const CHILD_SAID: &str = "child fetch: ";

/// The fetch [`fetch_in_a_child`] runs; alone (no `SYSEXT_TEST_CHILD_CACHE`) it does nothing.
#[test]
#[ignore = "run by the https tests in a child process, with their environment"]
fn child_fetch() {
    let Some(cache) = std::env::var_os(CHILD_CACHE) else {
        return;
    };
    let f = Fetcher::from_env(Path::new(&cache));
    let result: Result<String, String> = f
        .fetch(&"flatcar:stable".parse().unwrap(), Arch::X86_64, &quiet)
        .map(|img| img.version)
        .map_err(|e| e.to_string());
    println!("{CHILD_SAID}{}", serde_json::to_string(&result).unwrap());
}

fn quiet(_: &str) {}

#[test]
fn a_release_is_downloaded_verified_cached_and_then_reused_without_a_request() {
    let lab = lab();
    let (disk, server, f) = (lab.disk.as_slice(), &lab.server, lab.fetcher());

    let img = f
        .fetch(&"flatcar:stable".parse().unwrap(), Arch::X86_64, &quiet)
        .unwrap();
    assert_eq!(img.version, VERSION);
    assert!(!img.from_cache);
    assert_eq!(std::fs::read(&img.disk).unwrap(), disk);
    assert!(img.dir.starts_with(lab.cache.path()));

    let before = server.log.lock().unwrap().len();
    let again = f
        .fetch(
            &format!("flatcar:stable:{VERSION}").parse().unwrap(),
            Arch::X86_64,
            &quiet,
        )
        .unwrap();
    assert!(again.from_cache);
    assert_eq!(
        server.log.lock().unwrap().len(),
        before,
        "a cached version needs no request"
    );

    // `current` asks whether the channel moved (one conditional request, answered 304)
    // and then uses the cache.
    let current = f
        .fetch(&"flatcar:stable".parse().unwrap(), Arch::X86_64, &quiet)
        .unwrap();
    assert!(current.from_cache);
    assert_eq!(
        server.paths_since(before),
        ["/stable/amd64-usr/current/version.txt"],
        "an unchanged channel costs one conditional request"
    );
}

/// `flatcar:stable` names whatever the channel's current release is now: a fetch after a
/// release day gets the new version, even when the one before it was served from the cache.
#[test]
fn a_channel_fetch_sees_a_new_current_version_at_once() {
    let lab = lab();
    let f = lab.fetcher();
    let stable: Release = "flatcar:stable".parse().unwrap();
    assert_eq!(
        f.fetch(&stable, Arch::X86_64, &quiet).unwrap().version,
        VERSION
    );
    assert!(f.fetch(&stable, Arch::X86_64, &quiet).unwrap().from_cache);

    let newer: Vec<u8> = lab.disk.iter().rev().copied().collect();
    put_release(&lab.keys, lab.root.path(), NEWER, &newer);
    let moved = f.fetch(&stable, Arch::X86_64, &quiet).unwrap();
    assert_eq!(
        moved.version, NEWER,
        "the channel moved on; the fetch must follow it"
    );
    assert!(!moved.from_cache);
    assert_eq!(std::fs::read(&moved.disk).unwrap(), newer);
}

/// A cached `version.txt` is only trusted once the server says it has not changed (304 to
/// If-None-Match, or to If-Modified-Since from a server without ETags); then neither its
/// signature nor the image is downloaded again.
#[rstest::rstest]
#[case::etag(false)]
#[case::last_modified(true)]
fn an_unchanged_channel_costs_one_conditional_request(#[case] no_etag: bool) {
    let lab = lab();
    lab.server.no_etag.store(no_etag, Ordering::SeqCst);
    let f = lab.fetcher();
    let stable: Release = "flatcar:stable".parse().unwrap();
    f.fetch(&stable, Arch::X86_64, &quiet).unwrap();

    let before = lab.server.log.lock().unwrap().len();
    let again = f.fetch(&stable, Arch::X86_64, &quiet).unwrap();
    assert_eq!((again.version.as_str(), again.from_cache), (VERSION, true));
    let asked = lab.server.log.lock().unwrap()[before..].to_vec();
    assert_eq!(
        asked.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/stable/amd64-usr/current/version.txt"],
        "{asked:?}"
    );
    let conditional = if no_etag {
        asked[0].if_none_match.is_none() && asked[0].if_modified_since.is_some()
    } else {
        asked[0].if_none_match.is_some()
    };
    assert!(conditional, "{asked:?}");
}

/// Flatcar's server is https: with SSL_CERT_FILE naming the CA that signed the server's
/// certificate, the fetch goes through (downloaded, verified, cached).
#[test]
fn https_fetch_trusts_the_ca_that_ssl_cert_file_names() {
    let ca = test_ca();
    let lab = lab_with(Some(ca.acceptor.clone()));
    let got = fetch_in_a_child(&lab, &[("SSL_CERT_FILE", &ca.ca_file)]);
    assert_eq!(got, Ok(VERSION.to_string()));
    assert!(
        lab.fetcher()
            .release_dir("stable", VERSION, Arch::X86_64)
            .is_dir()
    );
}

/// Without that CA, the same server is refused, in one line that says what to do.
#[test]
fn https_fetch_from_an_untrusted_server_fails_in_one_line_naming_ssl_cert_file() {
    let ca = test_ca();
    let lab = lab_with(Some(ca.acceptor.clone()));
    let empty = ca.dir.path().join("no-certificates");
    std::fs::create_dir(&empty).unwrap();
    let err = fetch_in_a_child(&lab, &[("SSL_CERT_DIR", &empty)]).unwrap_err();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not trusted"), "{err}");
    assert!(err.contains("SSL_CERT_FILE"), "{err}");
    assert!(
        err.contains(&lab.base.replace("{channel}", "stable")),
        "{err}"
    );
}

#[test]
fn a_cut_download_resumes_with_a_byte_range() {
    let lab = lab();
    let (disk, server, f) = (lab.disk.as_slice(), &lab.server, lab.fetcher());
    let path = format!("/stable/amd64-usr/{VERSION}/{IMAGE}");
    server.cut.lock().unwrap().insert(path.clone(), 10_000);
    let release: Release = format!("flatcar:stable:{VERSION}").parse().unwrap();

    let first = f.fetch(&release, Arch::X86_64, &quiet);
    assert!(first.is_err(), "a cut transfer must not pass");
    let part = f
        .download_dir("stable", VERSION, Arch::X86_64)
        .join(format!("{IMAGE}.part"));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 10_000);

    let img = f.fetch(&release, Arch::X86_64, &quiet).unwrap();
    assert_eq!(std::fs::read(&img.disk).unwrap(), disk);
    let ranges: Vec<Option<String>> = server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.range.clone())
        .collect();
    assert_eq!(ranges, [None, Some("bytes=10000-".to_string())]);
}

#[test]
fn a_file_whose_signature_fails_is_refused_deleted_and_fetched_anew() {
    let lab = lab();
    let (root, disk, f) = (&lab.root, lab.disk.as_slice(), lab.fetcher());
    let served = root
        .path()
        .join("stable/amd64-usr")
        .join(VERSION)
        .join(IMAGE);
    let good = std::fs::read(&served).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&served, &bad).unwrap();
    let release: Release = format!("flatcar:stable:{VERSION}").parse().unwrap();

    let err = f.fetch(&release, Arch::X86_64, &quiet).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FlatcarError::Signature { .. }), "{msg}");
    assert!(
        msg.contains(IMAGE) && msg.contains("does not verify"),
        "{msg}"
    );
    let dl = f.download_dir("stable", VERSION, Arch::X86_64);
    assert!(!dl.join(IMAGE).exists(), "a file that failed must not stay");
    assert!(!f.release_dir("stable", VERSION, Arch::X86_64).exists());

    std::fs::write(&served, &good).unwrap();
    let img = f.fetch(&release, Arch::X86_64, &quiet).unwrap();
    assert_eq!(std::fs::read(&img.disk).unwrap(), disk);
}

#[test]
fn offline_the_fetch_fails_at_once_naming_the_url_and_the_folder_to_fill() {
    let keys = keys();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cache = tempfile::tempdir().unwrap();
    let f = Fetcher::new(
        &format!("http://127.0.0.1:{port}/{{channel}}"),
        &keys.keyring,
        cache.path(),
    );
    let started = std::time::Instant::now();
    let err = f
        .fetch(
            &format!("flatcar:beta:{VERSION}").parse().unwrap(),
            Arch::Arm64,
            &quiet,
        )
        .unwrap_err();
    assert!(started.elapsed().as_secs() < 10);
    let msg = err.to_string();
    assert!(matches!(err, FlatcarError::Offline { .. }), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(
        msg.contains(&format!(
            "http://127.0.0.1:{port}/beta/arm64-usr/{VERSION}/version.txt"
        )),
        "{msg}"
    );
    let dir = f.download_dir("beta", VERSION, Arch::Arm64);
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
}

/// Offline, a channel cannot say which version is current, so the error names the way out:
/// a version, and which ones the cache already has.
#[test]
fn offline_a_channel_fetch_names_the_cached_versions_to_ask_for_instead() {
    let lab = lab();
    lab.fetcher()
        .fetch(
            &format!("flatcar:stable:{VERSION}").parse().unwrap(),
            Arch::X86_64,
            &quiet,
        )
        .unwrap();
    let offline = Fetcher::new(
        "http://127.0.0.1:9/{channel}",
        &lab.keys.keyring,
        lab.cache.path(),
    );
    let err = offline
        .fetch(&"flatcar:stable".parse().unwrap(), Arch::X86_64, &quiet)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FlatcarError::OfflineChannel { .. }), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(msg.contains("flatcar:stable:<version>"), "{msg}");
    assert!(msg.contains(&format!("(cached: {VERSION})")), "{msg}");
}

#[test]
fn files_put_in_that_folder_by_hand_are_verified_and_used_offline() {
    let keys = keys();
    let root = tempfile::tempdir().unwrap();
    let disk = release_tree(&keys, root.path());
    let cache = tempfile::tempdir().unwrap();
    let f = Fetcher::new("http://127.0.0.1:9/{channel}", &keys.keyring, cache.path());
    let dl = f.download_dir("stable", VERSION, Arch::X86_64);
    std::fs::create_dir_all(&dl).unwrap();
    let src = root.path().join("stable/amd64-usr").join(VERSION);
    for file in [
        VERSION_TXT,
        "version.txt.sig",
        IMAGE,
        &format!("{IMAGE}.sig"),
    ] {
        std::fs::copy(src.join(file), dl.join(file)).unwrap();
    }
    let img = f
        .fetch(
            &format!("flatcar:stable:{VERSION}").parse().unwrap(),
            Arch::X86_64,
            &quiet,
        )
        .unwrap();
    assert_eq!(std::fs::read(&img.disk).unwrap(), disk);
}

#[test]
fn without_the_signing_key_nothing_is_downloaded() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fetcher::new(
        "http://127.0.0.1:9/{channel}",
        &cache.path().join("missing.gpg"),
        cache.path(),
    );
    let msg = f
        .fetch(&"flatcar:stable".parse().unwrap(), Arch::X86_64, &quiet)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("Flatcar_Image_Signing_Key.asc"), "{msg}");
}
