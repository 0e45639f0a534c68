//! The HTTP client of `pilot-host ctl`: hyper's HTTP/1 over the unix socket, TCP or TLS (rustls,
//! verifying the server's certificate), one connection per request.

use std::path::PathBuf;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// Where the control server is.
#[derive(Debug, Clone)]
pub enum Target {
    /// A unix socket.
    Unix(PathBuf),
    /// HTTP on TCP, with a bearer token.
    Tcp {
        /// `host:port`.
        authority: String,
        /// The token.
        token: String,
        /// TLS, trusting these authorities; `None`: plain HTTP.
        tls: Option<Arc<rustls::ClientConfig>>,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "control socket `{}`", p.display()),
            Target::Tcp {
                authority,
                tls: None,
                ..
            } => write!(f, "http://{authority}"),
            Target::Tcp { authority, .. } => write!(f, "https://{authority}"),
        }
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there.
    #[error("cannot connect to the {target}: {source}; is pilot-host running?")]
    Connect {
        /// Where.
        target: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed, most often because the certificate cannot be verified.
    #[error("cannot set up TLS with {target}: {source}; if its certificate is your own, pass it (or the authority that signed it) with `--ca-file FILE`")]
    Tls {
        /// Where.
        target: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connection broke.
    #[error("the {target} did not answer: {source}")]
    Http {
        /// Where.
        target: String,
        /// Why.
        #[source]
        source: hyper::Error,
    },
}

/// A client of one control server.
#[derive(Debug, Clone)]
pub struct Client {
    target: Target,
}

impl Client {
    /// A client of `target`.
    pub fn new(target: Target) -> Client {
        Client { target }
    }

    /// Returns where it connects.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Sends a request and returns the answer with its body still streaming.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response<Incoming>, ClientError> {
        match body {
            Some(json) => {
                let bytes = Bytes::from(json.to_string());
                self.send_bytes(method, path, Some("application/json"), bytes)
                    .await
            }
            None => self.send_bytes(method, path, None, Bytes::new()).await,
        }
    }

    /// Sends a request with `body` (of `content_type`) and returns the answer with its body still
    /// streaming.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Response<Incoming>, ClientError> {
        let connect = |e| ClientError::Connect {
            target: self.target.to_string(),
            source: e,
        };
        let http = |e| ClientError::Http {
            target: self.target.to_string(),
            source: e,
        };
        let mut sender = match &self.target {
            Target::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect)?;
                handshake(s).await.map_err(http)?
            }
            Target::Tcp { authority, tls, .. } => {
                let s = tokio::net::TcpStream::connect(authority.as_str())
                    .await
                    .map_err(connect)?;
                let _ = s.set_nodelay(true);
                match tls {
                    None => handshake(s).await.map_err(http)?,
                    Some(config) => {
                        let s = tls_connect(config, authority, s).await.map_err(|e| {
                            ClientError::Tls {
                                target: self.target.to_string(),
                                source: e,
                            }
                        })?;
                        handshake(s).await.map_err(http)?
                    }
                }
            }
        };
        let host = match &self.target {
            Target::Unix(_) => "localhost",
            Target::Tcp { authority, .. } => authority.as_str(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host);
        if let Target::Tcp { token, .. } = &self.target {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            request = request.header(hyper::header::CONTENT_TYPE, content_type);
        }
        let request = request
            .body(Full::new(body))
            .expect("a request from valid parts");
        sender.send_request(request).await.map_err(http)
    }

    /// Sends a request and reads the whole answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http {
                target: self.target.to_string(),
                source: e,
            })?
            .to_bytes();
        Ok((status, bytes))
    }
}

/// Makes a TLS connection over `tcp` to `authority` (`host:port`), verifying its certificate.
async fn tls_connect(
    config: &Arc<rustls::ClientConfig>,
    authority: &str,
    tcp: tokio::net::TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
}

async fn handshake<T>(
    io: T,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Reads server-sent events from `body`, calling `each` with the `data:` of every message until the
/// stream ends or `each` returns false.
pub async fn read_events(
    mut body: Incoming,
    mut each: impl FnMut(Option<&str>, &str) -> bool,
) -> Result<(), hyper::Error> {
    let mut pending = String::new();
    let mut event: Option<String> = None;
    let mut data = String::new();
    while let Some(frame) = body.frame().await {
        let Ok(chunk) = frame?.into_data() else {
            continue;
        };
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !data.is_empty() && !each(event.as_deref(), &data) {
                    return Ok(());
                }
                data.clear();
                event = None;
            } else if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            } else if let Some(e) = line.strip_prefix("event:") {
                event = Some(e.trim().to_string());
            }
        }
    }
    Ok(())
}
