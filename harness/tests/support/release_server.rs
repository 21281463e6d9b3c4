//! A release server for tests, laid out like Flatcar's (`/<channel>/<board>/<version>/…`),
//! shared by the harness's fetch tests and the cases' end-to-end run on a fetched release:
//! a signing key made per test (gpg), a static file server on 127.0.0.1 (plain or TLS, with
//! byte ranges, validators and cut responses), and a CA with a certificate for 127.0.0.1.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
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

/// A signing key and a keyring holding its public half.
pub struct Keys {
    pub home: tempfile::TempDir,
    pub keyring: PathBuf,
}

pub fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.arg("--homedir").arg(home).args(["--batch", "--quiet"]);
    c
}

pub fn keys() -> Keys {
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

pub fn sign(keys: &Keys, file: &Path) {
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
/// One request as the server saw it.
#[derive(Debug, Clone, Default)]
pub struct Req {
    pub path: String,
    pub range: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
}

pub type Log = Arc<Mutex<Vec<Req>>>;

/// A static file server on 127.0.0.1 with one byte range (`bytes=N-`) and validators
/// (`ETag`, a hash of the body, unless `no_etag`; `Last-Modified`, the file's mtime) that
/// turn a matching conditional request into a 304. `cut` makes the next response for a path
/// stop after that many bytes. Logs every request.
pub struct Server {
    pub port: u16,
    pub log: Log,
    pub cut: Arc<Mutex<HashMap<String, usize>>>,
    pub no_etag: Arc<AtomicBool>,
}

impl Server {
    pub fn paths_since(&self, n: usize) -> Vec<String> {
        self.log.lock().unwrap()[n..]
            .iter()
            .map(|r| r.path.clone())
            .collect()
    }
}

/// Serves `root` over plain HTTP, or over HTTPS when given an acceptor (its certificate).
pub fn serve(root: PathBuf, tls: Option<SslAcceptor>) -> Server {
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

pub fn answer(
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
pub fn http_date(t: SystemTime) -> String {
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

/// A CA made for one test, and the server certificate it signed for 127.0.0.1.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM), what SSL_CERT_FILE points at.
    pub ca_file: PathBuf,
    pub acceptor: SslAcceptor,
}

pub fn test_ca() -> TestCa {
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

pub fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A day-long certificate: the CA's own (self-signed, `issuer` None) or one for the IP
/// address `name`, signed by `issuer`.
pub fn certificate(
    name: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
) -> X509 {
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
