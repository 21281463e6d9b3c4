//! Real Flatcar releases, from Flatcar's release server
//! (`https://<channel>.release.flatcar-linux.net/<board>/<version>/`): the QEMU UEFI image
//! and `version.txt`, each with its detached signature, checked with `gpgv` against Flatcar's
//! image signing key before anything is decompressed or cached.
//!
//! A download that stops half way is resumed with a byte range on the next try; a file whose
//! signature does not verify is deleted, so the next try fetches it again rather than
//! trusting it. With no network the fetch fails at once, naming the URL and the folder a
//! user can fill by hand (the same four files, which are then verified the same way).
//!
//! A channel without a version is whatever the server calls current today, so its
//! `version.txt` is asked for on every fetch ([`CHANNEL_FRESHNESS`]). The server is reached
//! over HTTPS through the system's OpenSSL and its trust store, to which `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` add (a mirror with a CA of its own, or a test's).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::blocking::{Client, ClientBuilder, RequestBuilder, Response};
use reqwest::header::{ETAG, HeaderMap, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use sysext_builder::Arch;

/// How `flatcar:<channel>` (no version) stays current, for `guest fetch --help`.
pub const CHANNEL_FRESHNESS: &str = "flatcar:<channel> asks the release server for the channel's current version.txt on every run, as a conditional request (If-None-Match, else If-Modified-Since), so an unchanged channel costs one small request answered 304 Not Modified and reuses the cached image, a new release is downloaded at once, and offline only flatcar:<channel>:<version> works (from the cache).";

/// The compressed image and the release description, as the server names them.
pub const IMAGE: &str = "flatcar_production_qemu_uefi_image.img.bz2";
pub const VERSION_TXT: &str = "version.txt";
/// Where Flatcar publishes the key its release files are signed with.
pub const SIGNING_KEY_URL: &str =
    "https://www.flatcar.org/security/image-signing-key/Flatcar_Image_Signing_Key.asc";
const CHANNELS: [&str; 4] = ["stable", "beta", "alpha", "lts"];
/// Beside a channel's cached `version.txt`: the server's validators for it.
const VALIDATORS: &str = "version.txt.validators";
/// The server's folder for a channel's current release.
const CURRENT: &str = "current";

#[derive(Debug, thiserror::Error)]
pub enum FlatcarError {
    #[error(
        "'{given}': expected flatcar:<channel>[:<version>], channel one of stable, beta, alpha, lts, e.g. flatcar:stable:4230.2.0"
    )]
    Spec { given: String },
    #[error(
        "cannot reach {url} ({reason}); offline? put {files} from {dir_url} into {} by hand, then run again",
        dir.display()
    )]
    Offline {
        url: String,
        reason: String,
        files: String,
        dir_url: String,
        dir: PathBuf,
    },
    #[error(
        "cannot reach {url} ({reason}); a channel's current version is asked of the server on every run, so offline name a version: flatcar:{channel}:<version>{}",
        cached_note(cached)
    )]
    OfflineChannel {
        url: String,
        reason: String,
        channel: String,
        /// Versions of this channel and arch already in the cache.
        cached: Vec<String>,
    },
    #[error(
        "{url}: the server's TLS certificate is not trusted ({reason}); if it comes from a CA of its own, point SSL_CERT_FILE at that CA's certificate"
    )]
    Untrusted { url: String, reason: String },
    #[error(
        "cannot make an HTTP client with timeouts ({reason}); without them a stalled server would hang the fetch"
    )]
    Client { reason: String },
    #[error(
        "{url}: the release server answered {status}; check the channel and version (the server lists them at {dir_url})"
    )]
    Http {
        url: String,
        status: u16,
        dir_url: String,
    },
    #[error(
        "{}: its signature does not verify against {} ({detail}); the file was deleted, run again to download it anew",
        file.display(),
        keyring.display()
    )]
    Signature {
        file: PathBuf,
        keyring: PathBuf,
        detail: String,
    },
    #[error(
        "{}: no keyring with Flatcar's image signing key; download {SIGNING_KEY_URL} and run `gpg --dearmor < Flatcar_Image_Signing_Key.asc > {}` (or set SYSEXT_TEST_FLATCAR_KEYRING)",
        path.display(),
        path.display()
    )]
    NoKeyring { path: PathBuf },
    #[error("{}: version.txt has no FLATCAR_VERSION= line", path.display())]
    BadVersionFile { path: PathBuf },
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Tool(#[from] sysext_builder::host_tool::ToolError),
}

impl FlatcarError {
    fn io(path: &Path, error: std::io::Error) -> FlatcarError {
        FlatcarError::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

type Result<T> = std::result::Result<T, FlatcarError>;

fn cached_note(versions: &[String]) -> String {
    if versions.is_empty() {
        String::new()
    } else {
        format!(" (cached: {})", versions.join(", "))
    }
}

/// `flatcar:<channel>[:<version>]`: a channel's current release, or one version of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub channel: String,
    pub version: Option<String>,
}

impl std::str::FromStr for Release {
    type Err = FlatcarError;
    fn from_str(s: &str) -> Result<Release> {
        let bad = || FlatcarError::Spec {
            given: s.to_string(),
        };
        let rest = s.strip_prefix("flatcar:").ok_or_else(bad)?;
        let (channel, version) = match rest.split_once(':') {
            Some((c, v)) => (c, Some(v)),
            None => (rest, None),
        };
        if !CHANNELS.contains(&channel) {
            return Err(bad());
        }
        if let Some(v) = version
            && (v.is_empty()
                || !v.chars().all(|c| c.is_ascii_digit() || c == '.')
                || v.starts_with('.'))
        {
            return Err(bad());
        }
        Ok(Release {
            channel: channel.to_string(),
            version: version.map(str::to_string),
        })
    }
}

/// A verified, decompressed release in the cache.
#[derive(Debug, Clone)]
pub struct Image {
    pub channel: String,
    pub version: String,
    pub arch: Arch,
    /// The raw disk image (GPT; USR-A, OEM, ROOT, ...).
    pub disk: PathBuf,
    pub dir: PathBuf,
    /// True when nothing was downloaded.
    pub from_cache: bool,
}

/// Fetches releases into `cache/flatcar/`.
pub struct Fetcher {
    /// `https://{channel}.release.flatcar-linux.net`, or a stand-in with `{channel}` in it.
    pub base: String,
    pub keyring: PathBuf,
    pub cache: PathBuf,
}

/// One folder of the release server and where its files are kept here.
struct Folder {
    channel: String,
    /// A version, or [`CURRENT`].
    name: String,
    arch: Arch,
    url: String,
    dir: PathBuf,
}

/// What the server said identifies the `version.txt` we have (RFC 9110 8.8), sent back so
/// it can answer 304 when the channel has not moved.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

impl Validators {
    fn from_headers(h: &HeaderMap) -> Validators {
        let get = |k| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        Validators {
            etag: get(ETAG),
            last_modified: get(LAST_MODIFIED),
        }
    }

    fn read(path: &Path) -> Option<Validators> {
        let v: Validators = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        (v.etag.is_some() || v.last_modified.is_some()).then_some(v)
    }

    fn ask_if_changed(&self, mut req: RequestBuilder) -> RequestBuilder {
        if let Some(etag) = &self.etag {
            req = req.header(IF_NONE_MATCH, etag);
        }
        if let Some(date) = &self.last_modified {
            req = req.header(IF_MODIFIED_SINCE, date);
        }
        req
    }
}

fn board(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64-usr",
        Arch::Arm64 => "arm64-usr",
    }
}

impl Fetcher {
    /// The real release server, or `SYSEXT_TEST_FLATCAR_URL` (a URL with `{channel}` in it);
    /// the keyring from `SYSEXT_TEST_FLATCAR_KEYRING`, else `cache/flatcar/flatcar-signing-key.gpg`.
    pub fn from_env(cache: &Path) -> Fetcher {
        let base = std::env::var("SYSEXT_TEST_FLATCAR_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "https://{channel}.release.flatcar-linux.net".into());
        let keyring = std::env::var_os("SYSEXT_TEST_FLATCAR_KEYRING")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| cache.join("flatcar/flatcar-signing-key.gpg"));
        Fetcher::new(&base, &keyring, cache)
    }

    /// The HTTP client is made by [`Fetcher::fetch`], so that one that cannot be made is
    /// that fetch's error ([`FlatcarError::Client`]).
    pub fn new(base: &str, keyring: &Path, cache: &Path) -> Fetcher {
        Fetcher {
            base: base.trim_end_matches('/').to_string(),
            keyring: keyring.to_path_buf(),
            cache: cache.join("flatcar"),
        }
    }

    fn folder(&self, channel: &str, name: &str, arch: Arch) -> Folder {
        Folder {
            channel: channel.to_string(),
            name: name.to_string(),
            arch,
            url: format!(
                "{}/{}/{name}",
                self.base.replace("{channel}", channel),
                board(arch)
            ),
            dir: if name == CURRENT {
                self.channel_dir(channel, arch)
            } else {
                self.download_dir(channel, name, arch)
            },
        }
    }

    /// Where a verified release lives.
    pub fn release_dir(&self, channel: &str, version: &str, arch: Arch) -> PathBuf {
        self.cache
            .join(format!("{channel}-{version}-{}", arch.systemd_name()))
    }

    /// Where downloads in progress (and files put there by hand) wait to be verified.
    pub fn download_dir(&self, channel: &str, version: &str, arch: Arch) -> PathBuf {
        self.cache
            .join("downloads")
            .join(format!("{channel}-{version}-{}", arch.systemd_name()))
    }

    /// Where a channel's current `version.txt` is kept between fetches, with its signature
    /// and the server's validators for it.
    pub fn channel_dir(&self, channel: &str, arch: Arch) -> PathBuf {
        self.cache
            .join("channels")
            .join(format!("{channel}-{}", arch.systemd_name()))
    }

    /// Versions of `channel` for `arch` that are in the cache, oldest first.
    fn cached_versions(&self, channel: &str, arch: Arch) -> Vec<String> {
        let suffix = format!("-{}", arch.systemd_name());
        let mut versions: Vec<String> = std::fs::read_dir(&self.cache)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let v = name
                    .strip_prefix(channel)?
                    .strip_prefix('-')?
                    .strip_suffix(&suffix)?
                    .to_string();
                self.cached(channel, &v, arch).map(|_| v)
            })
            .collect();
        versions.sort_by(|a, b| sysext_builder::version::compare(a, b));
        versions
    }

    /// The release, from the cache when it is there, else downloaded, verified and
    /// decompressed into it. A channel without a version asks the server which version is
    /// current first ([`CHANNEL_FRESHNESS`]).
    pub fn fetch(&self, release: &Release, arch: Arch, progress: &dyn Fn(&str)) -> Result<Image> {
        if let Some(v) = &release.version
            && let Some(img) = self.cached(&release.channel, v, arch)
        {
            progress(&format!(
                "flatcar {} {v} ({arch}): cached in {}",
                release.channel,
                img.dir.display()
            ));
            return Ok(img);
        }
        if !self.keyring.is_file() {
            return Err(FlatcarError::NoKeyring {
                path: self.keyring.clone(),
            });
        }
        let client = with_deadlines(Client::builder())?;
        let (version_txt, version, folder) = match &release.version {
            Some(v) => {
                let folder = self.folder(&release.channel, v, arch);
                std::fs::create_dir_all(&folder.dir)
                    .map_err(|e| FlatcarError::io(&folder.dir, e))?;
                for f in [VERSION_TXT, &format!("{VERSION_TXT}.sig")] {
                    self.download(&client, &folder, f, progress)?;
                }
                let txt = folder.dir.join(VERSION_TXT);
                self.verify(&txt)?;
                let version = flatcar_version(&txt)?;
                (txt, version, folder)
            }
            None => {
                let txt = self.current(&client, &release.channel, arch, progress)?;
                let version = flatcar_version(&txt)?;
                // The image comes from the version's own folder: `current` may move on
                // while it downloads, and a resumed download must continue the same file.
                (
                    txt,
                    version.clone(),
                    self.folder(&release.channel, &version, arch),
                )
            }
        };
        if let Some(img) = self.cached(&release.channel, &version, arch) {
            progress(&format!(
                "flatcar {} {} is {version}: cached in {}",
                release.channel,
                release.version.as_deref().unwrap_or(CURRENT),
                img.dir.display()
            ));
            return Ok(img);
        }
        let dl = &folder.dir;
        std::fs::create_dir_all(dl).map_err(|e| FlatcarError::io(dl, e))?;
        for f in [IMAGE, &format!("{IMAGE}.sig")] {
            self.download(&client, &folder, f, progress)?;
        }
        self.verify(&dl.join(IMAGE))?;
        progress(&format!(
            "flatcar {} {version}: signatures verified, decompressing",
            release.channel
        ));
        let dest = self.release_dir(&release.channel, &version, arch);
        let parent = dest.parent().unwrap_or(&self.cache);
        let tmp = tempfile::Builder::new()
            .prefix(".flatcar-")
            .tempdir_in(parent)
            .map_err(|e| FlatcarError::io(parent, e))?;
        let out = tmp.path().join("flatcar_production_qemu_uefi_image.img");
        let file = std::fs::File::create(&out).map_err(|e| FlatcarError::io(&out, e))?;
        let status = Command::new("bunzip2")
            .arg("-c")
            .arg(dl.join(IMAGE))
            .stdout(file)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                return Err(FlatcarError::io(
                    &dl.join(IMAGE),
                    std::io::Error::other(format!("bunzip2 exited {s}")),
                ));
            }
            Err(e) => {
                return Err(sysext_builder::host_tool::start_error(e, "bunzip2", "bzip2").into());
            }
        }
        std::fs::copy(&version_txt, tmp.path().join(VERSION_TXT))
            .map_err(|e| FlatcarError::io(&version_txt, e))?;
        let staged = tmp.keep();
        if let Err(e) = std::fs::rename(&staged, &dest) {
            let _ = std::fs::remove_dir_all(&staged);
            // Another user finished the same release first: theirs is as good as ours.
            if !dest.is_dir() {
                return Err(FlatcarError::io(&dest, e));
            }
        }
        let _ = std::fs::remove_dir_all(dl);
        progress(&format!(
            "flatcar {} {version} ({arch}): cached in {}",
            release.channel,
            dest.display()
        ));
        Ok(Image {
            channel: release.channel.clone(),
            version,
            arch,
            disk: dest.join("flatcar_production_qemu_uefi_image.img"),
            dir: dest,
            from_cache: false,
        })
    }

    fn cached(&self, channel: &str, version: &str, arch: Arch) -> Option<Image> {
        let dir = self.release_dir(channel, version, arch);
        let disk = dir.join("flatcar_production_qemu_uefi_image.img");
        disk.is_file().then(|| Image {
            channel: channel.to_string(),
            version: version.to_string(),
            arch,
            disk,
            dir,
            from_cache: true,
        })
    }

    /// The channel's current `version.txt`, verified. Asked of the server every time,
    /// sending back the validators of the copy kept from last time, so that an unchanged
    /// channel is one 304; a copy is only reused on that answer.
    fn current(
        &self,
        client: &Client,
        channel: &str,
        arch: Arch,
        progress: &dyn Fn(&str),
    ) -> Result<PathBuf> {
        let folder = self.folder(channel, CURRENT, arch);
        let dir = &folder.dir;
        std::fs::create_dir_all(dir).map_err(|e| FlatcarError::io(dir, e))?;
        let (txt, validators) = (dir.join(VERSION_TXT), dir.join(VALIDATORS));
        let sig_name = format!("{VERSION_TXT}.sig");
        let sig = dir.join(&sig_name);
        let known = (txt.is_file() && sig.is_file())
            .then(|| Validators::read(&validators))
            .flatten();
        let url = format!("{}/{VERSION_TXT}", folder.url);
        progress(&format!("asking {url} for the current {channel} version"));
        let mut req = client.get(&url);
        if let Some(v) = &known {
            req = v.ask_if_changed(req);
        }
        let resp = self.send(req, &url, &folder)?;
        match resp.status().as_u16() {
            304 if known.is_some() => {
                progress(&format!("{url}: unchanged since the last fetch"));
                self.verify(&txt)?;
            }
            200 => {
                // Until the new pair is in place and verified, the next fetch must not send
                // the old validators: it would be told "unchanged" about a half-replaced copy.
                remove_if_there(&validators)?;
                let fresh = Validators::from_headers(resp.headers());
                let body = resp
                    .bytes()
                    .map_err(|e| FlatcarError::io(&txt, to_io(&e)))?;
                sysext_builder::atomic::write_bytes(&txt, &body)
                    .map_err(|e| FlatcarError::io(&txt, e))?;
                remove_if_there(&sig)?;
                self.download(client, &folder, &sig_name, progress)?;
                self.verify(&txt)?;
                let json = serde_json::to_vec(&fresh)
                    .map_err(|e| FlatcarError::io(&validators, to_io(&e)))?;
                sysext_builder::atomic::write_bytes(&validators, &json)
                    .map_err(|e| FlatcarError::io(&validators, e))?;
            }
            status => {
                return Err(FlatcarError::Http {
                    url,
                    status,
                    dir_url: folder.url,
                });
            }
        }
        Ok(txt)
    }

    /// Sends `req`; a failure names what to do about it: trust the server's CA, or, offline,
    /// fill the download folder by hand or name a version instead of a channel.
    fn send(&self, req: RequestBuilder, url: &str, folder: &Folder) -> Result<Response> {
        req.send().map_err(|e| {
            // The URL is said once, by the error around the reason.
            let e = e.without_url();
            let reason = one_line(&e);
            if untrusted_certificate(&e) {
                FlatcarError::Untrusted {
                    url: url.to_string(),
                    reason,
                }
            } else if folder.name == CURRENT {
                FlatcarError::OfflineChannel {
                    url: url.to_string(),
                    reason,
                    channel: folder.channel.clone(),
                    cached: self.cached_versions(&folder.channel, folder.arch),
                }
            } else {
                FlatcarError::Offline {
                    url: url.to_string(),
                    reason,
                    files: format!("{IMAGE}{{,.sig}} and {VERSION_TXT}{{,.sig}}"),
                    dir_url: folder.url.clone(),
                    dir: folder.dir.clone(),
                }
            }
        })
    }

    /// Downloads `file` into the folder's directory, resuming a partial copy with a byte
    /// range. A complete file already there (a resumed run, or put there by hand) is kept.
    fn download(
        &self,
        client: &Client,
        folder: &Folder,
        file: &str,
        progress: &dyn Fn(&str),
    ) -> Result<()> {
        let dest = folder.dir.join(file);
        if dest.is_file() {
            return Ok(());
        }
        let part = folder.dir.join(format!("{file}.part"));
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let url = format!("{}/{file}", folder.url);
        let mut req = client.get(&url);
        if have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
            progress(&format!("resuming {url} at byte {have}"));
        } else {
            progress(&format!("downloading {url}"));
        }
        let mut resp = self.send(req, &url, folder)?;
        let status = resp.status().as_u16();
        let append = match status {
            206 => true,
            200 => false,
            // The partial copy is the whole file already.
            416 if have > 0 => {
                std::fs::rename(&part, &dest).map_err(|e| FlatcarError::io(&dest, e))?;
                return Ok(());
            }
            _ => {
                return Err(FlatcarError::Http {
                    url,
                    status,
                    dir_url: folder.url.clone(),
                });
            }
        };
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(&part)
            .map_err(|e| FlatcarError::io(&part, e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            // A cut connection leaves the .part file for the next try to resume.
            let n = resp
                .read(&mut buf)
                .map_err(|e| FlatcarError::io(&part, e))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| FlatcarError::io(&part, e))?;
        }
        out.sync_all().map_err(|e| FlatcarError::io(&part, e))?;
        std::fs::rename(&part, &dest).map_err(|e| FlatcarError::io(&dest, e))
    }

    /// `gpgv` on `file` and `file.sig`; on failure both are deleted.
    fn verify(&self, file: &Path) -> Result<()> {
        let sig = PathBuf::from(format!("{}.sig", file.display()));
        let out = Command::new("gpgv")
            .arg("--keyring")
            .arg(&self.keyring)
            .arg(&sig)
            .arg(file)
            .output()
            .map_err(|e| sysext_builder::host_tool::start_error(e, "gpgv", "gpgv"))?;
        if out.status.success() {
            return Ok(());
        }
        let _ = std::fs::remove_file(file);
        let _ = std::fs::remove_file(&sig);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let detail = stderr
            .lines()
            .map(|l| l.trim_start_matches("gpgv: ").trim())
            .find(|l| l.contains("BAD signature") || l.contains("Can't check") || l.contains("not"))
            .or_else(|| stderr.lines().last())
            .unwrap_or("gpgv failed")
            .to_string();
        Err(FlatcarError::Signature {
            file: file.to_path_buf(),
            keyring: self.keyring.clone(),
            detail,
        })
    }
}

/// Every request gets a deadline: connecting (an offline machine fails here at once), and
/// the whole transfer (a stalled one is resumed by the next try). A client without them is
/// never made: it would hang on a server that stops answering.
fn with_deadlines(builder: ClientBuilder) -> Result<Client> {
    builder
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(1800))
        .build()
        .map_err(|e| FlatcarError::Client {
            reason: one_line(&e),
        })
}

fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(FlatcarError::io(path, e)),
        _ => Ok(()),
    }
}

fn to_io(e: &dyn std::error::Error) -> std::io::Error {
    std::io::Error::other(one_line(e))
}

/// `e` and its sources on one line, each said once (a TLS error repeats OpenSSL's).
fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s.replace('\n', " ")
}

/// Whether OpenSSL refused the server's certificate (it does not chain to a trusted CA, or
/// is not valid for the host), as opposed to a server that cannot be reached at all.
fn untrusted_certificate(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(stack) = err.downcast_ref::<openssl::error::ErrorStack>()
            && stack
                .errors()
                .iter()
                .any(|e| e.reason() == Some("certificate verify failed"))
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// `FLATCAR_VERSION=` from a release's version.txt.
fn flatcar_version(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| FlatcarError::io(path, e))?;
    text.lines()
        .find_map(|l| l.strip_prefix("FLATCAR_VERSION="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| FlatcarError::BadVersionFile {
            path: path.to_path_buf(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case("flatcar:stable", "stable", None)]
    #[case("flatcar:lts:4081.3.4", "lts", Some("4081.3.4"))]
    fn release_specs_parse(#[case] s: &str, #[case] channel: &str, #[case] version: Option<&str>) {
        let r: Release = s.parse().unwrap();
        assert_eq!(
            (r.channel.as_str(), r.version.as_deref()),
            (channel, version)
        );
    }

    /// A client builder that cannot build (here: a TLS backend it does not know) is an error
    /// that says so, never a client without the timeouts.
    #[test]
    fn a_client_that_cannot_have_its_timeouts_is_an_error() {
        let err = with_deadlines(Client::builder().tls_backend_preconfigured(()))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("cannot make an HTTP client with timeouts"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    #[rstest::rstest]
    #[case("stable")]
    #[case("flatcar:nightly")]
    #[case("flatcar:stable:")]
    #[case("flatcar:stable:../../etc")]
    fn bad_release_specs_say_what_is_expected(#[case] s: &str) {
        let e = s.parse::<Release>().unwrap_err().to_string();
        assert!(e.contains("flatcar:<channel>[:<version>]"), "{e}");
    }
}
