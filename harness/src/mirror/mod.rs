//! The local mirror: an HTTP server that stands in for extensions.flatcar.org.
//!
//! It serves a release store (a flat directory of `NAME-VERSION-ARCH.raw`, `SHA256SUMS` and
//! `NAME.conf`, which is what `sysext-test build` writes) under the same paths the bakery's
//! redirector gives systemd-sysupdate, so a guest's transfer file only differs in its host.
//! Cases change the store while a guest runs (`publish`, `withdraw`), inject faults per
//! path (`inject`), and assert on the request log (`requests`).
//!
//! The server binds 127.0.0.1 on a port the OS picks; a QEMU guest with user networking
//! reaches it at 10.0.2.2 (`guest_url`). It runs on its own thread and runtime so the
//! synchronous `Vm` API can drive a guest while it serves.

mod fault;
mod http;
mod routes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub use fault::Fault;
pub use routes::{Route, route, split_image_name};

use crate::errors::{HarnessError, Result};

/// The address a QEMU user-network guest uses for the host's loopback.
pub const GUEST_HOST: &str = "10.0.2.2";

/// One request as the mirror answered it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Body bytes actually written (less than promised for a cut-short fault).
    pub bytes: u64,
    pub range: Option<String>,
    /// The injected fault that shaped this answer.
    pub fault: Option<&'static str>,
}

/// Called for every answered request (the CLI prints them as they happen).
pub type Observer = Box<dyn Fn(&Logged) + Send + Sync>;

struct State {
    store: PathBuf,
    faults: Mutex<BTreeMap<String, Fault>>,
    log: Mutex<Vec<Logged>>,
    observer: Option<Observer>,
}

/// A running mirror; dropping it stops the server.
pub struct Mirror {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking connection task must not take the mirror down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Mirror {
    /// Serves `store` on 127.0.0.1 with a port the OS picks.
    pub fn serve(store: &Path) -> Result<Mirror> {
        Mirror::serve_on(store, 0, None)
    }

    /// Serves `store` on 127.0.0.1:`port` (0: the OS picks), calling `observer` per request.
    pub fn serve_on(store: &Path, port: u16, observer: Option<Observer>) -> Result<Mirror> {
        if !store.is_dir() {
            return Err(HarnessError::io(
                store,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a directory; give the release directory `sysext-test build -o` wrote",
                ),
            ));
        }
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .map_err(|e| HarnessError::io(format!("127.0.0.1:{port}"), e))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| HarnessError::io("mirror socket", e))?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| HarnessError::io("mirror socket", e))?;
        let state = Arc::new(State {
            store: store.to_path_buf(),
            faults: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
            observer,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("sysext-mirror")
            .build()
            .map_err(|e| HarnessError::io("mirror runtime", e))?;
        let serve_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("sysext-mirror".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = accept_loop(listener, serve_state) => {}
                        _ = stopped => {}
                    }
                });
                // Stalled connections are dropped with the runtime, not waited for.
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|e| HarnessError::io("mirror thread", e))?;
        Ok(Mirror {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The hub URL for the host: `http://127.0.0.1:PORT/extensions`.
    pub fn url(&self) -> String {
        format!("http://{}/extensions", self.addr)
    }

    /// Where a QEMU guest finds the store's own tree, served verbatim:
    /// `http://10.0.2.2:PORT/tree`.
    pub fn guest_tree_url(&self) -> String {
        format!("http://{GUEST_HOST}:{}/tree", self.port())
    }

    /// The hub URL a QEMU guest uses: `http://10.0.2.2:PORT/extensions`.
    pub fn guest_url(&self) -> String {
        format!("http://{GUEST_HOST}:{}/extensions", self.port())
    }

    pub fn store(&self) -> &Path {
        &self.state.store
    }

    /// Adds an image to the store and its line to `SHA256SUMS`, as a bakery release does.
    /// The file lands under its own name, which must be `NAME-VERSION-ARCH.raw`.
    pub fn publish(&self, image: &Path) -> Result<()> {
        let file = image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if split_image_name(&file).is_none() {
            return Err(HarnessError::io(
                image,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not named NAME-VERSION-ARCH.raw (ARCH x86-64 or arm64), so the redirector could not serve it",
                ),
            ));
        }
        let digest = sysext_builder::sha256sums::digest_file(image)
            .map_err(|e| HarnessError::io(image, e))?;
        let dest = self.state.store.join(&file);
        if dest != image {
            let bytes = std::fs::read(image).map_err(|e| HarnessError::io(image, e))?;
            sysext_builder::atomic::write_bytes(&dest, &bytes)
                .map_err(|e| HarnessError::io(&dest, e))?;
        }
        let sums = self.state.store.join("SHA256SUMS");
        sysext_builder::sha256sums::upsert(&sums, &file, &digest)
            .map_err(|e| HarnessError::io(&sums, e))
    }

    /// Adds a transfer file (`NAME.conf`) to the store.
    pub fn publish_transfer(&self, name: &str, text: &str) -> Result<()> {
        let dest = self.state.store.join(name);
        sysext_builder::atomic::write_bytes(&dest, text.as_bytes())
            .map_err(|e| HarnessError::io(&dest, e))
    }

    /// Takes a release back: its line leaves `SHA256SUMS` first, then the file goes.
    pub fn withdraw(&self, file: &str) -> Result<()> {
        let sums = self.state.store.join("SHA256SUMS");
        sysext_builder::sha256sums::remove(&sums, file).map_err(|e| HarnessError::io(&sums, e))?;
        let path = self.state.store.join(file);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(HarnessError::io(&path, e)),
            _ => Ok(()),
        }
    }

    /// Answers every request for `path` (e.g. `/extensions/hello/SHA256SUMS`) with `fault`.
    pub fn inject(&self, path: &str, fault: Fault) {
        lock(&self.state.faults).insert(path.to_string(), fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.state.log).clone()
    }

    /// Forgets the request log (between steps of a case).
    pub fn clear_requests(&self) {
        lock(&self.state.log).clear();
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Some(logged) = answer(stream, &state).await {
                record(&state, logged);
            }
        });
    }
}

fn record(state: &State, logged: Logged) {
    if let Some(obs) = &state.observer {
        obs(&logged);
    }
    lock(&state.log).push(logged);
}

/// What a route's body is: a file to stream, or bytes made up on the spot (manifests).
enum Body {
    File(PathBuf),
    Bytes(Vec<u8>),
}

fn body_for(state: &State, route: &Route) -> Option<Body> {
    let store = &state.store;
    match route {
        Route::Image(f) | Route::Transfer(f) => {
            let p = store.join(f);
            p.is_file().then_some(Body::File(p))
        }
        Route::GlobalSums => {
            let p = store.join("SHA256SUMS");
            p.is_file().then_some(Body::File(p))
        }
        Route::ExtensionSums(name) => {
            let text = std::fs::read_to_string(store.join("SHA256SUMS")).ok()?;
            let others = known_extensions(store);
            let lines: String = text
                .lines()
                .filter(|l| {
                    let file = l
                        .get(66..)
                        .unwrap_or_default()
                        .trim_start_matches([' ', '*']);
                    belongs_to(file, name, &others)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            // The redirector 404s for an extension that has no metadata release.
            (!lines.is_empty()).then_some(Body::Bytes(lines.into_bytes()))
        }
        Route::Tree(rel) => {
            let p = store.join(rel);
            p.is_file().then_some(Body::File(p))
        }
        Route::Unknown => None,
    }
}

/// Extension names with a transfer file (`NAME.conf`) in the store.
fn known_extensions(store: &Path) -> Vec<String> {
    std::fs::read_dir(store)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".conf")
                .map(str::to_string)
        })
        .collect()
}

/// Whether image `file` is one of extension `name`'s releases. The bakery's per-extension
/// manifest is the concatenation of that extension's releases, whatever their versions look
/// like; a flat store only has names, so a file is `name`'s when it is `name-…-ARCH.raw`
/// and no longer known extension name (docker-compose for docker) claims it.
fn belongs_to(file: &str, name: &str, known: &[String]) -> bool {
    let Some(rest) = file.strip_prefix(name).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let routable = ["-x86-64.raw", "-arm64.raw"]
        .iter()
        .any(|a| rest.strip_suffix(a).is_some_and(|v| !v.is_empty()));
    let claimed = known.iter().any(|k| {
        k.len() > name.len()
            && file
                .strip_prefix(k.as_str())
                .is_some_and(|r| r.starts_with('-'))
    });
    routable && !claimed
}

async fn answer(mut stream: TcpStream, state: &State) -> Option<Logged> {
    let req = http::read_request(&mut stream).await?;
    let fault = lock(&state.faults).get(&req.path).cloned();
    let mut logged = Logged {
        method: req.method.clone(),
        path: req.path.clone(),
        status: 200,
        bytes: 0,
        range: req.range.clone(),
        fault: fault.as_ref().map(Fault::name),
    };
    let head_only = req.method == "HEAD";
    if !head_only && req.method != "GET" {
        logged.status = 405;
        let _ = http::write_head(&mut stream, 405, 0, None).await;
        return Some(logged);
    }
    if let Some(f) = &fault
        && f.status() != 200
    {
        logged.status = f.status();
        let _ = http::write_head(&mut stream, f.status(), 0, None).await;
        return Some(logged);
    }
    let Some(body) = body_for(state, &route(&req.path)) else {
        logged.status = 404;
        let _ = http::write_head(&mut stream, 404, 0, None).await;
        return Some(logged);
    };
    // Faults that rewrite bytes need the body in memory; plain files are streamed.
    let body = match (body, &fault) {
        (Body::File(p), Some(Fault::Corrupt | Fault::WrongDigest(_) | Fault::MalformedSums)) => {
            Body::Bytes(tokio::fs::read(&p).await.ok()?)
        }
        (b, _) => b,
    };
    let body = match (body, &fault) {
        (Body::Bytes(b), Some(f)) => Body::Bytes(f.rewrite(b)),
        (b, _) => b,
    };
    let len = match &body {
        Body::File(p) => tokio::fs::metadata(p).await.ok()?.len(),
        Body::Bytes(b) => b.len() as u64,
    };
    let (start, end, status, content_range) = match http::byte_range(req.range.as_deref(), len) {
        Ok(Some((s, e))) => (s, e, 206, Some((s, e, len))),
        Ok(None) => (0, len, 200, None),
        Err(()) => {
            logged.status = 416;
            let _ = http::write_unsatisfiable(&mut stream, len).await;
            return Some(logged);
        }
    };
    logged.status = status;
    http::write_head(&mut stream, status, end - start, content_range)
        .await
        .ok()?;
    if head_only {
        return Some(logged);
    }
    let promised = (end - start) as usize;
    let to_send = fault.as_ref().map_or(promised, |f| f.bytes_sent(promised)) as u64;
    let sent = match body {
        Body::Bytes(b) => {
            let slice = &b[start as usize..start as usize + to_send as usize];
            stream.write_all(slice).await.map(|_| to_send)
        }
        Body::File(p) => {
            let copy = async {
                let mut f = tokio::fs::File::open(&p).await?;
                f.seek(std::io::SeekFrom::Start(start)).await?;
                tokio::io::copy(&mut f.take(to_send), &mut stream).await
            };
            copy.await
        }
    };
    logged.bytes = sent.unwrap_or(0);
    let _ = stream.flush().await;
    if let Some(Fault::Stall(d)) = &fault {
        // Headers are out; the client now waits for a body that does not come. The request
        // is logged now, so a case can see the stall was hit while it is still going on.
        record(state, logged);
        tokio::time::sleep(*d).await;
        return None;
    }
    Some(logged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_belong_to_the_longest_known_extension_name() {
        let known = vec!["docker".to_string(), "docker-compose".to_string()];
        assert!(belongs_to("docker-28.0-x86-64.raw", "docker", &known));
        assert!(!belongs_to(
            "docker-compose-2.3-x86-64.raw",
            "docker",
            &known
        ));
        assert!(belongs_to(
            "docker-compose-2.3-x86-64.raw",
            "docker-compose",
            &known
        ));
        assert!(belongs_to("x-1.0-1-arm64.raw", "x", &known));
        assert!(!belongs_to("x-1.0.raw", "x", &known));
    }

    #[test]
    fn publish_rejects_names_the_redirector_cannot_route() {
        let store = tempfile::tempdir().unwrap();
        let m = Mirror::serve(store.path()).unwrap();
        let bad = store.path().join("hello_1.0_x86_64.raw");
        std::fs::write(&bad, b"x").unwrap();
        let err = m.publish(&bad).unwrap_err().to_string();
        assert!(err.contains("NAME-VERSION-ARCH.raw"), "{err}");
    }

    #[test]
    fn serving_a_missing_directory_says_what_to_give() {
        let err = Mirror::serve(Path::new("/nonexistent/release"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/release"), "{err}");
    }
}
