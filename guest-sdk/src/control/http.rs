//! Outgoing HTTP requests of a control plugin (`wasi:http/outgoing-handler`), to the hosts the
//! manifest grants in `plugins.<name>.grants.http`; a request elsewhere fails with an error that says
//! it was denied. The host caps each request's waits (5 s to connect, for the first byte, between
//! bytes) and the answer's body (4 MiB); the plugin's own call deadline bounds it all.
//!
//! ```no_run
//! use pilot_plugin_sdk::control::http;
//!
//! let answer = http::post_json("http://127.0.0.1:9000/hook", &serde_json::json!({"text": "hi"}))?;
//! assert!(answer.status < 300);
//! # Ok::<(), String>(())
//! ```

use super::message::Response;
use crate::__private::control_bindings::wasi::http::outgoing_handler;
use crate::__private::control_bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use crate::__private::control_bindings::wasi::io::streams::{
    InputStream, OutputStream, StreamError,
};

/// The most bytes read from a body.
const MAX_READ: usize = 4 << 20;

/// Sends `method` `url` with `headers` and `body`; returns the whole answer, or why it failed.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let (scheme, authority, path) = split_url(url)?;
    let mut pairs: Vec<(String, Vec<u8>)> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("content-length"))
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    // A length, not chunks: simple webhook receivers read `content-length` only.
    if !body.is_empty() || !matches!(method.to_ascii_uppercase().as_str(), "GET" | "HEAD") {
        pairs.push(("content-length".into(), body.len().to_string().into_bytes()));
    }
    let fields = Fields::from_list(&pairs).map_err(|e| format!("bad header: {e:?}"))?;
    let request = OutgoingRequest::new(fields);
    let method = match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_string()),
    };
    let set = |ok: Result<(), ()>, what: &str| ok.map_err(|()| format!("bad {what} in `{url}`"));
    set(request.set_method(&method), "method")?;
    set(request.set_scheme(Some(&scheme)), "scheme")?;
    set(request.set_authority(Some(authority)), "host")?;
    set(request.set_path_with_query(Some(path)), "path")?;
    let out = request
        .body()
        .map_err(|()| "the request body is taken".to_string())?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| error_text(&e))?;
    // A refused request closes the body at once: its own error says more than the write's.
    let wrote = write_body(out, body);
    let answer = loop {
        match pending.get() {
            Some(done) => break done,
            None => pending.subscribe().block(),
        }
    };
    let answer = answer
        .map_err(|()| "the answer was already taken".to_string())?
        .map_err(|e| error_text(&e))?;
    wrote?;
    let status = answer.status();
    let headers = answer
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let incoming = answer
        .consume()
        .map_err(|()| "the answer's body is taken".to_string())?;
    let body = read_body(incoming)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Sends `value` as JSON with `POST`.
pub fn post_json(url: &str, value: &impl serde::Serialize) -> Result<Response, String> {
    let body = serde_json::to_vec(value).map_err(|e| format!("cannot encode the body: {e}"))?;
    send("POST", url, &[("content-type", "application/json")], &body)
}

/// Sends `GET`.
pub fn get(url: &str) -> Result<Response, String> {
    send("GET", url, &[], &[])
}

fn error_text(e: &ErrorCode) -> String {
    match e {
        ErrorCode::HttpRequestDenied => {
            "denied: the host is not in this plugin's `grants.http`".to_string()
        }
        other => format!("{other:?}"),
    }
}

/// Splits `http(s)://authority/path?query`.
fn split_url(url: &str) -> Result<(Scheme, &str, &str), String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(format!("`{url}` is not an http:// or https:// URL"));
    };
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(cut);
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    Ok((scheme, authority, if path.is_empty() { "/" } else { path }))
}

/// Writes `bytes` to a body and finishes it.
pub(crate) fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    {
        let stream = body
            .write()
            .map_err(|()| "the body's stream is taken".to_string())?;
        write_all(&stream, bytes)?;
    }
    OutgoingBody::finish(body, None).map_err(|e| error_text(&e))
}

fn write_all(stream: &OutputStream, mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        let ready = loop {
            match stream.check_write() {
                Ok(0) => stream.subscribe().block(),
                Ok(n) => break n as usize,
                Err(e) => return Err(stream_error(e)),
            }
        };
        let n = ready.min(bytes.len());
        stream.write(&bytes[..n]).map_err(stream_error)?;
        bytes = &bytes[n..];
    }
    stream.blocking_flush().map_err(stream_error)
}

fn stream_error(e: StreamError) -> String {
    match e {
        StreamError::Closed => "the body was closed".to_string(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}

/// Reads a whole body (at most 4 MiB).
pub(crate) fn read_body(body: IncomingBody) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let stream: InputStream = body
            .stream()
            .map_err(|()| "the body's stream is taken".to_string())?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    if out.len() + chunk.len() > MAX_READ {
                        return Err(format!("the body is larger than {} MiB", MAX_READ >> 20));
                    }
                    out.extend_from_slice(&chunk);
                }
                Err(StreamError::Closed) => break,
                Err(e) => return Err(stream_error(e)),
            }
        }
    }
    drop(IncomingBody::finish(body));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_host_and_path() {
        let (s, a, p) = split_url("http://127.0.0.1:9000/hook?x=1").unwrap();
        assert!(matches!(s, Scheme::Http));
        assert_eq!((a, p), ("127.0.0.1:9000", "/hook?x=1"));
        let (s, a, p) = split_url("https://hooks.example.com").unwrap();
        assert!(matches!(s, Scheme::Https));
        assert_eq!((a, p), ("hooks.example.com", "/"));
        assert!(split_url("ftp://x").is_err());
        assert!(split_url("http:///x").is_err());
    }
}
