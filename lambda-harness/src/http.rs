//! Just enough HTTP/1.1 for the Runtime API: requests with a Content-Length or chunked body,
//! responses with a Content-Length, connections kept alive. Every request is read within
//! [`Limits`]: a line, the headers and the body that claim more are refused before anything is
//! allocated for them, so no request can make the reader run out of memory.

use std::io::{self, BufRead, Read, Write};

/// How much of a request is read at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The request line, and each header line, in bytes.
    pub line: usize,
    /// The request line and every header together, in bytes.
    pub head: usize,
    /// The body, in bytes.
    pub body: usize,
}

impl Limits {
    /// What reaches a function through API Gateway: a request line and headers of at most 10,240
    /// bytes together (API Gateway's quota), and a body of at most 6 MB, Lambda's limit for a
    /// synchronous invocation's payload (Lambda refuses more before the function runs).
    pub const API_GATEWAY: Limits = Limits {
        line: 10_240,
        head: 10_240,
        body: 6 * 1024 * 1024,
    };
    /// What a function sends the Runtime API: a response (or an error) of at most 6 MB, Lambda's
    /// limit, with room for the envelope.
    pub const RUNTIME_API: Limits = Limits {
        line: 16 * 1024,
        head: 64 * 1024,
        body: 6 * 1024 * 1024 + 64 * 1024,
    };
}

/// A request refused for its size: what was too large, and the HTTP status that says so.
#[derive(Debug)]
pub struct TooLarge {
    /// 413 for a body, 414 for a request line, 431 for headers.
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TooLarge {}

/// The [`TooLarge`] an error of [`read_request`] is, if it is one.
pub fn too_large(error: &io::Error) -> Option<&TooLarge> {
    error.get_ref()?.downcast_ref::<TooLarge>()
}

fn refuse(status: u16, message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, TooLarge { status, message })
}

/// One line of at most `limit` bytes (its end included); empty at the end of the stream.
fn read_line(reader: &mut impl BufRead, limit: usize, status: u16) -> io::Result<String> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(limit as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if line.len() > limit {
        return Err(refuse(status, format!("a line longer than {limit} bytes")));
    }
    String::from_utf8(line).map_err(|_| invalid("a line that is not UTF-8"))
}

#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The next request on a connection, within `limits`; `None` when the peer closed it between
/// requests. A request over a limit is an error that [`too_large`] recognises.
pub fn read_request(reader: &mut impl BufRead, limits: Limits) -> io::Result<Option<Request>> {
    let line = read_line(reader, limits.line, 414)?;
    if line.is_empty() {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(invalid(format!("malformed request line {line:?}")));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let headers = read_headers(reader, limits.line, limits.head.saturating_sub(line.len()))?;
    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        request.body = read_chunked(reader, limits)?;
    } else if let Some(length) = request.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("malformed content-length {length:?}")))?;
        if length > limits.body {
            return Err(body_too_large(limits));
        }
        request.body = vec![0; length];
        reader.read_exact(&mut request.body)?;
    }
    Ok(Some(request))
}

fn body_too_large(limits: Limits) -> io::Error {
    refuse(
        413,
        format!("a request body larger than {} bytes", limits.body),
    )
}

fn read_chunked(reader: &mut impl BufRead, limits: Limits) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader, limits.line, 413)?;
        let size = line.trim_end().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("malformed chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                let line = read_line(reader, limits.line, 431)?;
                if line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        if size > limits.body - body.len() {
            return Err(body_too_large(limits));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        read_line(reader, limits.line, 413)?;
    }
}

/// A response as [`read_response`] reads it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The next response on a connection, with a Content-Length body (as [`write_response`] writes
/// them).
pub fn read_response(reader: &mut impl BufRead) -> io::Result<Response> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("not an HTTP status line: {line:?}")))?;
    let headers = read_headers(reader, Limits::RUNTIME_API.line, Limits::RUNTIME_API.head)?;
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map(|(_, value)| value.parse::<usize>())
        .transpose()
        .map_err(|_| invalid("malformed content-length"))?
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Header lines up to the empty one, names in lowercase: each at most `line` bytes, all together
/// at most `total`.
fn read_headers(
    reader: &mut impl BufRead,
    line: usize,
    total: usize,
) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    let mut left = total;
    loop {
        let text = read_line(reader, line.min(left), 431)?;
        if text.is_empty() {
            return Err(invalid("the connection closed inside the headers"));
        }
        left -= text.len();
        let header = text.trim_end();
        if header.is_empty() {
            return Ok(headers);
        }
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| invalid(format!("malformed header {header:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
}

/// Writes a whole response in one write, so it leaves in one segment.
pub fn write_response(
    writer: &mut impl Write,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut response = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = response.into_bytes();
    bytes.extend_from_slice(body);
    writer.write_all(&bytes)?;
    writer.flush()
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_content_length_and_chunked_bodies_on_one_connection() {
        let wire = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
                     POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n\
                     GET /c HTTP/1.1\r\n\r\n";
        let mut reader = io::BufReader::new(&wire[..]);
        let a = read_request(&mut reader, Limits::API_GATEWAY)
            .unwrap()
            .unwrap();
        assert_eq!((a.method.as_str(), a.path.as_str()), ("POST", "/a"));
        assert_eq!(a.header("host"), Some("x"));
        assert_eq!(a.body, b"hello");
        let b = read_request(&mut reader, Limits::API_GATEWAY)
            .unwrap()
            .unwrap();
        assert_eq!(b.body, b"abcde");
        let c = read_request(&mut reader, Limits::API_GATEWAY)
            .unwrap()
            .unwrap();
        assert_eq!((c.method.as_str(), c.body.len()), ("GET", 0));
        assert!(
            read_request(&mut reader, Limits::API_GATEWAY)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn refuses_malformed_requests() {
        for wire in [
            &b"NONSENSE\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
        ] {
            let error =
                read_request(&mut io::BufReader::new(wire), Limits::API_GATEWAY).unwrap_err();
            assert_eq!(
                error.kind(),
                io::ErrorKind::InvalidData,
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn refuses_what_is_too_large_before_allocating_it() {
        let limits = Limits {
            line: 64,
            head: 100,
            body: 10,
        };
        let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(80));
        let many_headers = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: aaaaaaaaaaaaaaaa\r\n".repeat(8)
        );
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(80));
        for (wire, status) in [
            // What crashed `up`: a length nothing could allocate.
            ("POST / HTTP/1.1\r\nContent-Length: 100000000000\r\n\r\n".to_owned(), 413),
            ("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world".to_owned(), 413),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n"
                    .to_owned(),
                413,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n".to_owned(),
                413,
            ),
            (long_header, 431),
            (many_headers, 431),
            (long_line, 414),
        ] {
            let error =
                read_request(&mut io::BufReader::new(wire.as_bytes()), limits).unwrap_err();
            let refused = too_large(&error).unwrap_or_else(|| panic!("{error}: {wire:?}"));
            assert_eq!(refused.status, status, "{wire:?}");
        }
        let fits = "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
        let request = read_request(&mut io::BufReader::new(fits.as_bytes()), limits).unwrap();
        assert_eq!(request.unwrap().body, b"0123456789");
    }

    #[test]
    fn reads_back_what_it_writes() {
        let mut wire = Vec::new();
        write_response(&mut wire, "404 Not Found", &[("Status", "X")], b"{\"a\":1}").unwrap();
        write_response(&mut wire, "200 OK", &[], b"").unwrap();
        let mut reader = io::BufReader::new(&wire[..]);
        let response = read_response(&mut reader).unwrap();
        assert_eq!(
            (response.status, response.body.as_slice()),
            (404, &b"{\"a\":1}"[..])
        );
        assert!(
            response
                .headers
                .contains(&("status".to_owned(), "X".to_owned()))
        );
        assert_eq!(read_response(&mut reader).unwrap().status, 200);
    }

    #[test]
    fn writes_one_response_with_its_length() {
        let mut wire = Vec::new();
        write_response(&mut wire, "202 Accepted", &[("A", "b")], b"{}").unwrap();
        assert_eq!(
            wire,
            b"HTTP/1.1 202 Accepted\r\nA: b\r\nContent-Length: 2\r\n\r\n{}"
        );
    }
}
