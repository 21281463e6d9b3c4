//! Just enough HTTP/1.1 for systemd-pull (libcurl) and reqwest: GET and HEAD, one byte range,
//! one request per connection. Written by hand rather than on a server framework because the
//! faults need control a framework hides: a body that stops half way, headers followed by
//! silence.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest request head we read; curl's are a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path without query string.
    pub path: String,
    pub range: Option<String>,
}

/// Reads a request head; `None` when the client closed, stalled or sent garbage.
pub async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                return Some(());
            }
            if buf.len() > MAX_HEAD {
                return None;
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, read).await.ok()??;
    parse_head(&buf)
}

fn parse_head(buf: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(buf).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?;
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_string();
    let range = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("range"))
        .map(|(_, v)| v.trim().to_string());
    Some(Request {
        method,
        path,
        range,
    })
}

/// The byte range `[start, end)` a `Range:` header asks for within `len` bytes.
/// `Err(())` when it cannot be satisfied (416); `Ok(None)` when absent or not a single
/// `bytes=` range (the whole body is sent, as RFC 9110 allows).
pub fn byte_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(last)) if start <= last => (start, (last + 1).min(len)),
        (Ok(start), Err(_)) if b.is_empty() => (start, len),
        (Err(_), Ok(suffix)) if a.is_empty() => (len.saturating_sub(suffix), len),
        _ => return Ok(None),
    };
    if range.0 >= len {
        return Err(());
    }
    Ok(Some(range))
}

/// The reason phrase for the statuses the mirror sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// Writes a response head. `content_range` is `(start, end, total)` for a 206.
pub async fn write_head(
    stream: &mut TcpStream,
    status: u16,
    content_length: u64,
    content_range: Option<(u64, u64, u64)>,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {content_length}\r\nContent-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\nConnection: close\r\n",
        reason(status)
    );
    if let Some((start, end, total)) = content_range {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{total}\r\n",
            end.saturating_sub(1)
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await
}

/// A 416 for a file of `total` bytes: no body, and the size the client may ask within.
pub async fn write_unsatisfiable(stream: &mut TcpStream, total: u64) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 416 {}\r\nContent-Length: 0\r\nContent-Range: bytes */{total}\r\nConnection: close\r\n\r\n",
        reason(416)
    );
    stream.write_all(head.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(None, Ok(None))]
    #[case(Some("bytes=0-99"), Ok(Some((0, 100))))]
    #[case(Some("bytes=100-"), Ok(Some((100, 1000))))]
    #[case(Some("bytes=-10"), Ok(Some((990, 1000))))]
    #[case(Some("bytes=900-5000"), Ok(Some((900, 1000))))]
    #[case(Some("bytes=1000-"), Err(()))]
    #[case(Some("bytes=0-1,5-6"), Ok(None))]
    #[case(Some("items=0-1"), Ok(None))]
    fn ranges_follow_rfc_9110(
        #[case] header: Option<&str>,
        #[case] want: Result<Option<(u64, u64)>, ()>,
    ) {
        assert_eq!(byte_range(header, 1000), want);
    }

    #[test]
    fn request_head_gives_method_path_and_range() {
        let r = parse_head(
            b"GET /extensions/x/SHA256SUMS?a=b HTTP/1.1\r\nHost: h\r\nrange: bytes=1-2\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/extensions/x/SHA256SUMS");
        assert_eq!(r.range.as_deref(), Some("bytes=1-2"));
    }
}
