//! An HTTP request and response as a control plugin handles them: whole, in memory.

/// A request to a control plugin, or an answer to one of its outgoing requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path after the plugin's mount point, e.g. `/health` for `/plugins/ops/health`.
    pub path: String,
    /// The query, without `?`, if any.
    pub query: Option<String>,
    /// The headers, names in lowercase (`Authorization` is never passed on).
    pub headers: Vec<(String, String)>,
    /// The body (at most 64 KiB: the control plane refuses larger ones).
    pub body: Vec<u8>,
}

impl Request {
    /// Returns the first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Returns the value of query parameter `name` (not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// Parses the body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// An answer of a control plugin, or of a host it sent a request to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// An answer with `status`, no headers and no body.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain` answer.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body.into().into_bytes())
    }

    /// An `application/json` answer.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
        let body = serde_json::to_vec(value).unwrap_or_else(|e| {
            format!("{{\"error\": \"cannot encode the answer: {e}\"}}").into_bytes()
        });
        Response::new(status)
            .header("content-type", "application/json")
            .body(body)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// Returns the body as text (lossy).
    pub fn text_body(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_headers_queries_and_json() {
        let r = Request {
            method: "POST".into(),
            path: "/restart-group".into(),
            query: Some("prefix=web&dry".into()),
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"prefix": "web-"}"#.to_vec(),
        };
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.query_param("prefix"), Some("web"));
        assert_eq!(r.query_param("dry"), Some(""));
        assert_eq!(r.query_param("none"), None);
        let v: serde_json::Value = r.json().unwrap();
        assert_eq!(v["prefix"], "web-");
        let a = Response::json(503, &v);
        assert_eq!(a.status, 503);
        assert_eq!(a.headers[0].1, "application/json");
    }
}
