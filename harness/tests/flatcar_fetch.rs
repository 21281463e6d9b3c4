//! The Flatcar provider against a local server laid out like Flatcar's release server
//! (`/<channel>/<board>/<version>/…` under a `{channel}` base), with a release tree signed by
//! a key made here: download and signature check, the cache reused without a request, a cut
//! download resumed with a byte range, a tampered file refused and deleted, and the offline
//! error naming the URL and the folder to fill by hand.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use sysext_builder::Arch;
use sysext_harness::flatcar::{Fetcher, FlatcarError, IMAGE, Release, VERSION_TXT};

const VERSION: &str = "4230.2.0";

/// A signing key and a keyring holding its public half.
struct Keys {
    home: tempfile::TempDir,
    keyring: PathBuf,
}

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.arg("--homedir").arg(home).args(["--batch", "--quiet"]);
    c
}

fn keys() -> Keys {
    let home = tempfile::tempdir().unwrap();
    let st = gpg(home.path())
        .args([
            "--passphrase",
            "",
            "--quick-gen-key",
            "Test Flatcar Buildbot <buildbot@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ])
        .status()
        .expect("gpg (apt-get install gnupg)");
    assert!(st.success());
    let keyring = home.path().join("keyring.gpg");
    let out = gpg(home.path()).arg("--export").output().unwrap();
    assert!(out.status.success() && !out.stdout.is_empty());
    std::fs::write(&keyring, out.stdout).unwrap();
    Keys { home, keyring }
}

fn sign(keys: &Keys, file: &Path) {
    let sig = PathBuf::from(format!("{}.sig", file.display()));
    let _ = std::fs::remove_file(&sig);
    let st = gpg(keys.home.path())
        .arg("--detach-sign")
        .arg("-o")
        .arg(&sig)
        .arg(file)
        .status()
        .unwrap();
    assert!(st.success());
}

/// The disk bytes and the release tree `root/stable/amd64-usr/{VERSION,current}/`.
fn release_tree(keys: &Keys, root: &Path) -> Vec<u8> {
    let disk: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    for v in [VERSION, "current"] {
        let dir = root.join("stable/amd64-usr").join(v);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(VERSION_TXT),
            format!(
                "FLATCAR_BUILD=4230\nFLATCAR_VERSION={VERSION}\nFLATCAR_SDK_VERSION={VERSION}\n"
            ),
        )
        .unwrap();
        let raw = dir.join("disk.img");
        std::fs::write(&raw, &disk).unwrap();
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
    disk
}

/// A static file server on 127.0.0.1 with one byte range (`bytes=N-`); `cut` makes the next
/// response for a path stop after that many bytes. Logs (path, range header).
/// Each request's path and Range header.
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct Server {
    port: u16,
    log: Log,
    cut: Arc<Mutex<HashMap<String, usize>>>,
}

fn serve(root: PathBuf) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let cut: Arc<Mutex<HashMap<String, usize>>> = Arc::new(Mutex::new(HashMap::new()));
    let (l, c) = (log.clone(), cut.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut range = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("range:") {
                    range = Some(v.trim().to_string());
                }
            }
            l.lock().unwrap().push((path.clone(), range.clone()));
            let file = root.join(path.trim_start_matches('/'));
            let Ok(body) = std::fs::read(&file) else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            let start = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            let part = &body[start.min(body.len())..];
            let status = if range.is_some() {
                format!(
                    "206 Partial Content\r\nContent-Range: bytes {start}-{}/{}",
                    body.len() - 1,
                    body.len()
                )
            } else {
                "200 OK".into()
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                part.len()
            );
            let limit = c.lock().unwrap().remove(&path).unwrap_or(part.len());
            let _ = stream.write_all(&part[..limit.min(part.len())]);
        }
    });
    Server { port, log, cut }
}

fn fetcher(server: &Server, keys: &Keys, cache: &Path) -> Fetcher {
    Fetcher::new(
        &format!("http://127.0.0.1:{}/{{channel}}", server.port),
        &keys.keyring,
        cache,
    )
}

/// A signed release tree served locally, and an empty cache.
struct Lab {
    keys: Keys,
    root: tempfile::TempDir,
    disk: Vec<u8>,
    server: Server,
    cache: tempfile::TempDir,
}

impl Lab {
    fn fetcher(&self) -> Fetcher {
        fetcher(&self.server, &self.keys, self.cache.path())
    }
}

fn lab() -> Lab {
    let keys = keys();
    let root = tempfile::tempdir().unwrap();
    let disk = release_tree(&keys, root.path());
    let server = serve(root.path().to_path_buf());
    Lab {
        keys,
        root,
        disk,
        server,
        cache: tempfile::tempdir().unwrap(),
    }
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

    // `current` asks which version that is (two small files) and then uses the cache.
    let current = f
        .fetch(&"flatcar:stable".parse().unwrap(), Arch::X86_64, &quiet)
        .unwrap();
    assert!(current.from_cache);
    let asked: Vec<String> = server.log.lock().unwrap()[before..]
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(
        asked,
        [
            "/stable/amd64-usr/current/version.txt",
            "/stable/amd64-usr/current/version.txt.sig"
        ]
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
        .filter(|(p, _)| *p == path)
        .map(|(_, r)| r.clone())
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
