//! Just enough HTTP/1.1 for the Runtime API: requests with a Content-Length or chunked body,
//! responses with a Content-Length, connections kept alive.

use std::io::{self, BufRead, Write};

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

/// The next request on a connection; `None` when the peer closed it between requests.
pub fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(invalid(format!("malformed request line {line:?}")));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let headers = read_headers(reader)?;
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
        request.body = read_chunked(reader)?;
    } else if let Some(length) = request.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("malformed content-length {length:?}")))?;
        request.body = vec![0; length];
        reader.read_exact(&mut request.body)?;
    }
    Ok(Some(request))
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size = line.trim_end().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("malformed chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        line.clear();
        reader.read_line(&mut line)?;
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
    let headers = read_headers(reader)?;
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

/// Header lines up to the empty one, names in lowercase.
fn read_headers(reader: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(invalid("the connection closed inside the headers"));
        }
        let header = line.trim_end();
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
        let a = read_request(&mut reader).unwrap().unwrap();
        assert_eq!((a.method.as_str(), a.path.as_str()), ("POST", "/a"));
        assert_eq!(a.header("host"), Some("x"));
        assert_eq!(a.body, b"hello");
        let b = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(b.body, b"abcde");
        let c = read_request(&mut reader).unwrap().unwrap();
        assert_eq!((c.method.as_str(), c.body.len()), ("GET", 0));
        assert!(read_request(&mut reader).unwrap().is_none());
    }

    #[test]
    fn refuses_malformed_requests() {
        for wire in [
            &b"NONSENSE\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
        ] {
            let error = read_request(&mut io::BufReader::new(wire)).unwrap_err();
            assert_eq!(
                error.kind(),
                io::ErrorKind::InvalidData,
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
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
