//! The Flatcar provider against a local server laid out like Flatcar's release server
//! (`/<channel>/<board>/<version>/…` under a `{channel}` base), with a release tree signed by
//! a key made here: download and signature check, the cache reused without a request, a cut
//! download resumed with a byte range, a tampered file refused and deleted, and the offline
//! error naming the URL and the folder to fill by hand.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509Builder, X509NameBuilder};
use sysext_builder::Arch;
use sysext_harness::flatcar::{Fetcher, FlatcarError, IMAGE, Release, VERSION_TXT};

const VERSION: &str = "4230.2.0";
/// The release that follows it on the stable channel in the tests where the channel moves.
const NEWER: &str = "4230.3.0";

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

/// One request as the server saw it.
#[derive(Debug, Clone, Default)]
struct Req {
    path: String,
    range: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
}

type Log = Arc<Mutex<Vec<Req>>>;

/// A static file server on 127.0.0.1 with one byte range (`bytes=N-`) and validators
/// (`ETag`, a hash of the body, unless `no_etag`; `Last-Modified`, the file's mtime) that
/// turn a matching conditional request into a 304. `cut` makes the next response for a path
/// stop after that many bytes. Logs every request.
struct Server {
    port: u16,
    log: Log,
    cut: Arc<Mutex<HashMap<String, usize>>>,
    no_etag: Arc<AtomicBool>,
}

impl Server {
    fn paths_since(&self, n: usize) -> Vec<String> {
        self.log.lock().unwrap()[n..]
            .iter()
            .map(|r| r.path.clone())
            .collect()
    }
}

/// Serves `root` over plain HTTP, or over HTTPS when given an acceptor (its certificate).
fn serve(root: PathBuf, tls: Option<SslAcceptor>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let cut: Arc<Mutex<HashMap<String, usize>>> = Arc::new(Mutex::new(HashMap::new()));
    let no_etag = Arc::new(AtomicBool::new(false));
    let (l, c, n) = (log.clone(), cut.clone(), no_etag.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let no_etag = n.load(Ordering::SeqCst);
            match &tls {
                None => answer(stream, &root, &l, &c, no_etag),
                // A client that refuses the certificate ends the handshake; next connection.
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream) {
                        answer(stream, &root, &l, &c, no_etag);
                    }
                }
            }
        }
    });
    Server {
        port,
        log,
        cut,
        no_etag,
    }
}

fn answer(
    mut stream: impl Read + Write,
    root: &Path,
    log: &Log,
    cut: &Mutex<HashMap<String, usize>>,
    no_etag: bool,
) {
    let mut req = Req::default();
    {
        let mut reader = BufReader::new(&mut stream);
        let mut first = String::new();
        if reader.read_line(&mut first).is_err() {
            return;
        }
        req.path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                break;
            }
            let Some((k, v)) = h.split_once(':') else {
                continue;
            };
            let v = Some(v.trim().to_string());
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => req.range = v,
                "if-none-match" => req.if_none_match = v,
                "if-modified-since" => req.if_modified_since = v,
                _ => {}
            }
        }
    }
    log.lock().unwrap().push(req.clone());
    let file = root.join(req.path.trim_start_matches('/'));
    let Ok(body) = std::fs::read(&file) else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let etag = (!no_etag).then(|| {
        use sha2::Digest;
        format!("\"{}\"", &hex::encode(sha2::Sha256::digest(&body))[..16])
    });
    let mtime = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let last_modified = http_date(mtime);
    let mut validators = format!("Last-Modified: {last_modified}\r\n");
    if let Some(e) = &etag {
        validators.push_str(&format!("ETag: {e}\r\n"));
    }
    // RFC 9110 13.2.2: If-None-Match decides when it is there, If-Modified-Since otherwise.
    let unchanged = match (&req.if_none_match, &req.if_modified_since) {
        (Some(inm), _) => etag.as_ref() == Some(inm),
        (None, Some(ims)) => *ims == last_modified,
        (None, None) => false,
    };
    if unchanged {
        let _ = write!(
            stream,
            "HTTP/1.1 304 Not Modified\r\n{validators}Connection: close\r\n\r\n"
        );
        return;
    }
    let start = req
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let part = &body[start.min(body.len())..];
    let status = if req.range.is_some() {
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
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{validators}Connection: close\r\n\r\n",
        part.len()
    );
    let limit = cut.lock().unwrap().remove(&req.path).unwrap_or(part.len());
    let _ = stream.write_all(&part[..limit.min(part.len())]);
}

/// An IMF-fixdate (RFC 9110 5.6.7) for `t`.
fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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

/// A CA made for one test, and the server certificate it signed for 127.0.0.1.
struct TestCa {
    dir: tempfile::TempDir,
    /// The CA certificate (PEM), what SSL_CERT_FILE points at.
    ca_file: PathBuf,
    acceptor: SslAcceptor,
}

fn test_ca() -> TestCa {
    let ca_key = ec_key();
    let ca = certificate("sysext-test CA", &ca_key, None);
    let server_key = ec_key();
    let server = certificate("127.0.0.1", &server_key, Some((&ca, &ca_key)));
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acceptor.set_private_key(&server_key).unwrap();
    acceptor.set_certificate(&server).unwrap();
    acceptor.check_private_key().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.to_pem().unwrap()).unwrap();
    TestCa {
        dir,
        ca_file,
        acceptor: acceptor.build(),
    }
}

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A day-long certificate: the CA's own (self-signed, `issuer` None) or one for the IP
/// address `name`, signed by `issuer`.
fn certificate(name: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
    let mut subject = X509NameBuilder::new().unwrap();
    subject.append_entry_by_nid(Nid::COMMONNAME, name).unwrap();
    let subject = subject.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&subject).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    match issuer {
        None => {
            b.set_issuer_name(&subject).unwrap();
            let ca = BasicConstraints::new().critical().ca().build().unwrap();
            b.append_extension(ca).unwrap();
            let usage = KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build();
            b.append_extension(usage.unwrap()).unwrap();
            b.sign(key, MessageDigest::sha256()).unwrap();
        }
        Some((ca, ca_key)) => {
            b.set_issuer_name(ca.subject_name()).unwrap();
            let san = SubjectAlternativeName::new()
                .ip(name)
                .build(&b.x509v3_context(Some(ca), None))
                .unwrap();
            b.append_extension(san).unwrap();
            let usage = ExtendedKeyUsage::new().server_auth().build().unwrap();
            b.append_extension(usage).unwrap();
            b.sign(ca_key, MessageDigest::sha256()).unwrap();
        }
    }
    b.build()
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
