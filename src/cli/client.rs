//! The blocking HTTP client the CLI uses to talk to the local daemon's API
//! (127.0.0.1, token from the home directory), and the CLI's error type.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::io::home::Home;
use crate::io::http::TOKEN_FILE;

/// The API port used when the daemon has not recorded one in the home directory.
pub const DEFAULT_API_PORT: u16 = 9993;

/// Why a controller command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The token file could not be read.
    #[error(
        "cannot read the API token {path}: {source}; run as the user that owns the skylan home directory (often root), or pass the right --home"
    )]
    Token {
        /// The token file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// Nothing answered on the API port.
    #[error(
        "cannot reach the skylan API at 127.0.0.1:{port}: {source}; is the node running? Check that `{daemon}` runs with this --home and that TCP port {port} can be reached via 127.0.0.1"
    )]
    Unreachable {
        /// The port tried.
        port: u16,
        /// The command that serves what was asked (`skylan node`, or with `--controller`).
        daemon: &'static str,
        /// Why.
        source: io::Error,
    },
    /// The controller refused the request.
    #[error("{status} {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The controller's explanation.
        message: String,
    },
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// A file the command reads is wrong (`file:line:col: what`); nothing was sent.
    #[error("{0}")]
    File(String),
    /// The answer could not be understood.
    #[error("unexpected answer from the API: {0}")]
    Protocol(String),
}

impl CliError {
    /// The process exit status for this error: 2 for usage, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// A blocking client for the local API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    addr: SocketAddr,
    token: String,
    /// The command that serves what this client asks for (named in hints).
    daemon: &'static str,
}

/// The daemon that serves the node's endpoints.
const NODE_DAEMON: &str = "skylan node";
/// The daemon that serves the controller's endpoints.
const CONTROLLER_DAEMON: &str = "skylan node --controller";

impl ApiClient {
    /// A client for 127.0.0.1:`port` presenting `token`.
    pub fn new(port: u16, token: &str) -> Self {
        ApiClient {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            token: token.to_string(),
            daemon: NODE_DAEMON,
        }
    }

    /// This client asks for the controller's endpoints: hints name
    /// `skylan node --controller`.
    pub fn for_controller(self) -> Self {
        ApiClient {
            daemon: CONTROLLER_DAEMON,
            ..self
        }
    }

    /// The API's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The token this client presents (for a login link; never print it otherwise).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `GET path`, expecting 2xx JSON.
    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call("GET", path, None)
    }

    /// `POST path` with a JSON body, expecting 2xx JSON.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.call("POST", path, Some(body))
    }

    /// `DELETE path`, expecting 2xx JSON.
    pub fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.call("DELETE", path, None)
    }

    /// Any request; a non-2xx answer becomes [`CliError::Refused`] with the API's
    /// `error` message.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let resp = self.request(method, path, body.as_bytes())?;
        if resp.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&resp.body)
            .map_err(|e| CliError::Protocol(format!("{method} {path}: body is not JSON: {e}")))
    }

    /// `GET path` for a text answer (such as `/metrics`), expecting 2xx.
    pub fn get_text(&self, path: &str) -> Result<String, CliError> {
        let resp = self.request("GET", path, b"")?;
        Ok(String::from_utf8_lossy(&resp.body).into_owned())
    }

    /// Sends one request with the token; a 2xx answer, or [`CliError::Refused`] with
    /// the API's `error` message.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<RawResponse, CliError> {
        let headers = [
            ("X-ZT1-Auth", self.token.as_str()),
            ("Content-Type", "application/json"),
        ];
        let resp = raw_request(self.addr, method, path, &headers, body).map_err(|source| {
            CliError::Unreachable {
                port: self.addr.port(),
                daemon: self.daemon,
                source,
            }
        })?;
        if !(200..300).contains(&resp.status) {
            let value: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
            let message = value["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&resp.body).into_owned());
            return Err(CliError::Refused {
                status: resp.status,
                message,
            });
        }
        Ok(resp)
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole response.
/// `headers` are sent as given; `Host` defaults to `127.0.0.1:<port>` unless given, and
/// `Content-Length` is always added.
pub fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<RawResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes())?;
    // The server may answer (e.g. 413) and close before reading the whole body; what it
    // answered is still worth reading, so a failed body write is not fatal.
    let write_result = stream.write_all(body);
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if !raw.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => return Err(write_result.err().unwrap_or(e)),
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> io::Result<RawResponse> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no complete HTTP response header"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("header is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

impl ApiClient {
    /// A client for the daemon that owns `home`: its token, and the API port it recorded
    /// (or `port` when given, or [`DEFAULT_API_PORT`]).
    pub fn for_home(home: &Path, port: Option<u16>) -> Result<Self, CliError> {
        let token_path = home.join(TOKEN_FILE);
        let token = std::fs::read_to_string(&token_path).map_err(|source| CliError::Token {
            path: token_path.display().to_string(),
            source,
        })?;
        let port = port
            .or_else(|| Home::existing(home).read_port().ok())
            .unwrap_or(DEFAULT_API_PORT);
        Ok(ApiClient::new(port, token.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_length_or_chunks() {
        let r =
            parse_response(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}extra").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"{}"[..]));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
