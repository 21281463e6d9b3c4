//! The mirror checked from the outside with a real HTTP client (reqwest), the way
//! systemd-pull sees it: paths as the bakery redirector maps them, ranges, publish and
//! withdraw while serving, every fault, and a request log that records what happened.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::Client;
use sysext_builder::sha256sums;
use sysext_harness::mirror::{Fault, Mirror};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A store with two releases of `hello` and one of `hello-tools` (a name that starts with
/// another extension's name, as docker / docker-compose do).
fn store() -> (tempfile::TempDir, tempfile::TempDir) {
    let store = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    for (file, size) in [
        ("hello-1.0.0-x86-64.raw", 10_000),
        ("hello-2.0.0-x86-64.raw", 20_000),
        ("hello-tools-0.1-arm64.raw", 3_000),
    ] {
        let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        std::fs::write(src.path().join(file), bytes).unwrap();
    }
    (store, src)
}

fn publish_all(m: &Mirror, src: &Path) {
    let mut files: Vec<_> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        m.publish(&f).unwrap();
    }
}

#[test]
fn mirror_serves_bakery_paths_with_digests_that_match() {
    let (store, src) = store();
    let m = Mirror::serve(store.path()).unwrap();
    publish_all(&m, src.path());
    m.publish_transfer(
        "hello.conf",
        &sysext_builder::transfer::render_bakery("hello", &m.guest_url()),
    )
    .unwrap();
    // Every bakery extension releases its NAME.conf; that is how the mirror tells
    // hello-tools' releases from hello's.
    m.publish_transfer(
        "hello-tools.conf",
        &sysext_builder::transfer::render_bakery("hello-tools", &m.guest_url()),
    )
    .unwrap();
    let c = client();

    let sums = c
        .get(format!("{}/hello/SHA256SUMS", m.url()))
        .send()
        .unwrap();
    assert_eq!(sums.status(), StatusCode::OK);
    let (entries, issues) = sha256sums::parse(&sums.bytes().unwrap());
    assert!(issues.is_empty(), "{issues:?}");
    let files: Vec<&str> = entries.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(files, ["hello-1.0.0-x86-64.raw", "hello-2.0.0-x86-64.raw"]);

    for e in &entries {
        // The redirector ignores the sub-path of an image, as sysupdate asks for it.
        let body = c
            .get(format!("{}/hello/{}", m.url(), e.file))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &body).unwrap();
        assert_eq!(sha256sums::digest_file(tmp.path()).unwrap(), e.digest);
    }

    let global = c
        .get(format!("{}/SHA256SUMS", m.url()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(global.lines().count(), 3);
    let tools = c
        .get(format!("{}/hello-tools/SHA256SUMS", m.url()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(tools.ends_with("  hello-tools-0.1-arm64.raw\n"), "{tools}");
    assert_eq!(tools.lines().count(), 1);

    let conf = c
        .get(format!("{}/hello.conf", m.url()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        conf.contains(&format!(
            "Path=http://10.0.2.2:{}/extensions/hello/",
            m.port()
        )),
        "{conf}"
    );
    let missing = c
        .get(format!("{}/nothing/SHA256SUMS", m.url()))
        .send()
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let log = m.requests();
    assert!(log.iter().all(|r| r.method == "GET"));
    let image = log
        .iter()
        .find(|r| r.path == "/extensions/hello/hello-2.0.0-x86-64.raw")
        .unwrap();
    assert_eq!((image.status, image.bytes), (200, 20_000));
}

#[test]
fn mirror_answers_byte_ranges() {
    let (store, src) = store();
    let m = Mirror::serve(store.path()).unwrap();
    publish_all(&m, src.path());
    let r = client()
        .get(format!("{}/hello-1.0.0-x86-64.raw", m.url()))
        .header("Range", "bytes=100-199")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        "bytes 100-199/10000"
    );
    let body = r.bytes().unwrap();
    let want: Vec<u8> = (100..200).map(|i| (i % 251) as u8).collect();
    assert_eq!(body.as_ref(), want.as_slice());

    let past = client()
        .get(format!("{}/hello-1.0.0-x86-64.raw", m.url()))
        .header("Range", "bytes=10000-")
        .send()
        .unwrap();
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        past.headers()["content-range"].to_str().unwrap(),
        "bytes */10000"
    );
    assert!(past.bytes().unwrap().is_empty());
}

/// A client that does not know the size asks for "everything from 0" with the largest last
/// position it can write; RFC 9110 makes that "to the end", so all three bytes come back.
#[test]
fn range_past_the_end_means_to_the_end() {
    let store = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("tiny-1-x86-64.raw");
    std::fs::write(&file, b"abc").unwrap();
    let m = Mirror::serve(store.path()).unwrap();
    m.publish(&file).unwrap();
    let get = |range: &str| {
        client()
            .get(format!("{}/tiny-1-x86-64.raw", m.url()))
            .header("Range", range)
            .send()
            .unwrap()
    };

    for (range, content_range, body) in [
        ("bytes=0-18446744073709551615", "bytes 0-2/3", &b"abc"[..]),
        ("bytes=1-99999999999999999999999", "bytes 1-2/3", b"bc"),
    ] {
        let r = get(range);
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            r.headers()["content-range"].to_str().unwrap(),
            content_range
        );
        assert_eq!(r.bytes().unwrap().as_ref(), body, "{range}");
    }

    let past = get("bytes=18446744073709551615-");
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        past.headers()["content-range"].to_str().unwrap(),
        "bytes */3"
    );
}

#[test]
fn withdrawn_release_disappears_from_manifest_and_path() {
    let (store, src) = store();
    let m = Mirror::serve(store.path()).unwrap();
    publish_all(&m, src.path());
    m.withdraw("hello-2.0.0-x86-64.raw").unwrap();
    let c = client();
    let sums = c
        .get(format!("{}/hello/SHA256SUMS", m.url()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!sums.contains("hello-2.0.0"), "{sums}");
    let gone = c
        .get(format!("{}/hello/hello-2.0.0-x86-64.raw", m.url()))
        .send()
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[test]
fn every_fault_reaches_the_client_and_the_log() {
    let (store, src) = store();
    let m = Mirror::serve(store.path()).unwrap();
    publish_all(&m, src.path());
    let image = "/extensions/hello/hello-2.0.0-x86-64.raw";
    let sums = "/extensions/hello/SHA256SUMS";
    let c = client();
    let get = |path: &str| c.get(format!("http://127.0.0.1:{}{path}", m.port())).send();

    m.inject(image, Fault::NotFound);
    assert_eq!(get(image).unwrap().status(), StatusCode::NOT_FOUND);
    m.inject(image, Fault::ServerError);
    assert_eq!(
        get(image).unwrap().status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );

    m.inject(image, Fault::CutShort);
    assert!(
        get(image).and_then(|r| r.bytes()).is_err(),
        "a body shorter than Content-Length must be an error to the client"
    );

    m.inject(image, Fault::Corrupt);
    let body = get(image).unwrap().bytes().unwrap();
    let orig = std::fs::read(store.path().join("hello-2.0.0-x86-64.raw")).unwrap();
    assert_eq!(body.len(), orig.len());
    assert_ne!(body.as_ref(), orig.as_slice());

    m.inject(image, Fault::Stall(Duration::from_secs(30)));
    let stalled = Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{}{image}", m.port()))
        .send()
        .and_then(|r| r.bytes());
    assert!(stalled.is_err_and(|e| e.is_timeout()));

    m.inject(sums, Fault::WrongDigest("hello-2.0.0-x86-64.raw".into()));
    let lying = get(sums).unwrap().bytes().unwrap();
    let (entries, issues) = sha256sums::parse(&lying);
    assert!(issues.is_empty());
    let real = sha256sums::digest_file(&store.path().join("hello-2.0.0-x86-64.raw")).unwrap();
    assert_ne!(entries[1].digest, real);

    m.inject(sums, Fault::MalformedSums);
    let (_, issues) = sha256sums::parse(&get(sums).unwrap().bytes().unwrap());
    assert!(!issues.is_empty());

    m.clear_faults();
    assert_eq!(get(image).unwrap().bytes().unwrap().len(), orig.len());

    // A request is logged once its answer is written, which the client may see first: the
    // cut-short connection's entry can land after the next request's, so the log is
    // compared as a set of faults, each once (CI once saw cut-short and corrupt swapped).
    let faults = || -> Vec<Option<&str>> {
        let mut f: Vec<Option<&str>> = m
            .requests()
            .iter()
            .filter(|r| r.path == image)
            .map(|r| r.fault)
            .collect();
        f.sort();
        f
    };
    for _ in 0..50 {
        if faults().len() == 6 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        faults(),
        [
            None,
            Some("corrupt"),
            Some("cut-short"),
            Some("not-found"),
            Some("server-error"),
            Some("stall"),
        ]
    );
    let cut = m
        .requests()
        .into_iter()
        .find(|r| r.fault == Some("cut-short"))
        .unwrap();
    assert_eq!(cut.bytes, 10_000, "half of the 20,000 promised bytes");
}
