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

/// The byte range `[start, end)` a `Range:` header asks for within `len` bytes (RFC 9110
/// 14.1.2). `Err(())` when it cannot be satisfied (416); `Ok(None)` when absent, not a
/// single `bytes=` range, or not valid (the whole body is sent, as 14.2 allows).
///
/// Positions are counted without overflow: a client that does not know the size may ask
/// `bytes=0-18446744073709551615` (or more digits than fit in 64 bits), and a last position
/// at or past the end means "to the end", a first one past the end "unsatisfiable".
pub fn byte_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some((unit, spec)) = header.and_then(|h| h.trim().split_once('=')) else {
        return Ok(None);
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (position(first), position(last)) {
        // int-range: first-pos "-" [ last-pos ]
        (Some(start), Some(last)) if start <= last => (start, last.saturating_add(1).min(len)),
        (Some(start), None) if last.is_empty() => (start, len),
        // suffix-range: "-" suffix-length
        (None, Some(0)) if first.is_empty() => return Err(()),
        // An empty body has no range to name: the whole of it, as a 200.
        (None, Some(_)) if first.is_empty() && len == 0 => return Ok(None),
        (None, Some(suffix)) if first.is_empty() => (len.saturating_sub(suffix), len),
        _ => return Ok(None),
    };
    if range.0 >= len {
        return Err(());
    }
    Ok(Some(range))
}

/// A byte position (`1*DIGIT`); more digits than fit in a `u64` saturate, since such a
/// position is past the end of any file either way.
fn position(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
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
    #[case(Some("bytes=999-999"), Ok(Some((999, 1000))))]
    #[case(Some("bytes=1000-1000"), Err(()))]
    #[case(Some("bytes=-2000"), Ok(Some((0, 1000))))]
    #[case(Some("bytes=-0"), Err(()))]
    #[case(Some("bytes=5-4"), Ok(None))]
    #[case(Some("bytes=-"), Ok(None))]
    #[case(Some("bytes=+5-"), Ok(None))]
    #[case(Some("bytes=0x10-"), Ok(None))]
    #[case(Some("Bytes=0-0"), Ok(Some((0, 1))))]
    fn ranges_follow_rfc_9110(
        #[case] header: Option<&str>,
        #[case] want: Result<Option<(u64, u64)>, ()>,
    ) {
        assert_eq!(byte_range(header, 1000), want);
    }

    /// RFC 9110 14.1.2: a last position at or past the end means "to the end", however
    /// large; a first position past the end is unsatisfiable, however large; a suffix
    /// longer than the body is the whole body.
    #[rstest]
    #[case("bytes=0-18446744073709551615", Ok(Some((0, 3))))]
    #[case("bytes=1-18446744073709551614", Ok(Some((1, 3))))]
    #[case("bytes=0-99999999999999999999999", Ok(Some((0, 3))))]
    #[case("bytes=18446744073709551615-", Err(()))]
    #[case("bytes=99999999999999999999999-", Err(()))]
    #[case("bytes=99999999999999999999999-99999999999999999999999", Err(()))]
    #[case("bytes=-18446744073709551615", Ok(Some((0, 3))))]
    #[case("bytes=-99999999999999999999999", Ok(Some((0, 3))))]
    fn range_past_the_end_means_to_the_end(
        #[case] header: &str,
        #[case] want: Result<Option<(u64, u64)>, ()>,
    ) {
        assert_eq!(byte_range(Some(header), 3), want);
    }

    /// An empty body has no byte to point at: a first position is always past its end,
    /// and a suffix is served as the whole (empty) body rather than a range it cannot name.
    #[rstest]
    #[case("bytes=0-", Err(()))]
    #[case("bytes=0-0", Err(()))]
    #[case("bytes=-5", Ok(None))]
    #[case("bytes=-0", Err(()))]
    fn ranges_of_an_empty_body(#[case] header: &str, #[case] want: Result<Option<(u64, u64)>, ()>) {
        assert_eq!(byte_range(Some(header), 0), want);
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
