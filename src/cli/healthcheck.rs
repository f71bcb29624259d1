//! A minimal HTTP GET for container health checks: distroless images have no curl or shell.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("only http://host:port/path URLs are supported, got {0:?}")]
    Url(String),
    #[error("cannot reach {url}: {cause}")]
    Connect { url: String, cause: std::io::Error },
    #[error("{url} answered {status:?}")]
    Status { url: String, status: String },
}

/// `Ok` when `url` answers with status 200 within `timeout`.
pub fn check(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ProbeError::Url(url.to_string()))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let connect = |cause| ProbeError::Connect {
        url: url.to_string(),
        cause,
    };
    let address = authority
        .to_socket_addrs()
        .map_err(connect)?
        .next()
        .ok_or_else(|| ProbeError::Url(url.to_string()))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout).map_err(connect)?;
    stream.set_read_timeout(Some(timeout)).map_err(connect)?;
    stream.set_write_timeout(Some(timeout)).map_err(connect)?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: alertmanager-sipgate-healthcheck\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(connect)?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(connect)?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    let status = status_line.lines().next().unwrap_or("").to_string();
    if status.split(' ').nth(1) == Some("200") {
        Ok(())
    } else {
        Err(ProbeError::Status {
            url: url.to_string(),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_it_cannot_ask() {
        assert!(matches!(
            check("https://x/", Duration::from_secs(1)),
            Err(ProbeError::Url(_))
        ));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", closed.local_addr().unwrap());
        drop(closed);
        assert!(matches!(
            check(&url, Duration::from_secs(1)),
            Err(ProbeError::Connect { .. })
        ));
    }

    #[test]
    fn reads_the_status() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/-/healthy", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            for answer in [
                "HTTP/1.1 200 OK\r\n\r\nOK",
                "HTTP/1.1 503 Service Unavailable\r\n\r\n",
            ] {
                let (mut s, _) = listener.accept().unwrap();
                let mut request = [0u8; 256];
                let n = s.read(&mut request).unwrap();
                assert!(
                    String::from_utf8_lossy(&request[..n])
                        .starts_with("GET /-/healthy HTTP/1.0\r\n")
                );
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        assert!(check(&url, Duration::from_secs(2)).is_ok());
        let err = check(&url, Duration::from_secs(2)).unwrap_err().to_string();
        assert!(
            err.ends_with("answered \"HTTP/1.1 503 Service Unavailable\""),
            "{err}"
        );
        server.join().unwrap();
    }
}
