//! The small part of URLs that `http-ready` needs: `http://IP-or-localhost[:port][/path]`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use pilot_plugin_sdk::PluginError;

/// A parsed `http://` URL whose host is an IP address.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpUrl {
    /// The address to connect to.
    pub ip: IpAddr,
    /// The port (80 unless given).
    pub port: u16,
    /// `host[:port]` as written, for the `Host` header.
    pub authority: String,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `text`, or explains what is wrong with it as `invalid-config`.
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let bad = |why: &str| {
            PluginError::invalid_config(format!(
                "`ready_params.url` `{text}` {why} (example: `http://127.0.0.1:8080/health`)"
            ))
        };
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "has scheme `{scheme}`; only plain `http` is supported"
                )))
            }
            None => return Err(bad("does not start with `http://`")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let path = path.split('#').next().unwrap_or("/").to_string();
        if authority.is_empty() {
            return Err(bad("has no host"));
        }
        if authority.contains('@') {
            return Err(bad("has user information, which is not supported"));
        }
        let (host, port) = split_port(authority).ok_or_else(|| bad("has a bad port"))?;
        let ip = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            h => h
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| {
                    bad("has a host name; use an IP address, plugins cannot look names up")
                })?,
        };
        Ok(Self {
            ip,
            port,
            authority: authority.to_string(),
            path,
        })
    }
}

/// Splits `host[:port]` (IPv6 hosts in brackets); `None` when the port is not a number.
fn split_port(authority: &str) -> Option<(&str, u16)> {
    let port_at = if authority.starts_with('[') {
        authority.find(']').map(|i| i + 1)?
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    let (host, port) = authority.split_at(port_at);
    match port.strip_prefix(':') {
        None if port.is_empty() => Some((host, 80)),
        None => None,
        Some(p) => p.parse().ok().map(|p| (host, p)),
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> HttpUrl {
        HttpUrl::parse(text).unwrap()
    }

    fn err(text: &str) -> String {
        match HttpUrl::parse(text).unwrap_err() {
            PluginError::InvalidConfig(m) => m,
            other => panic!("want invalid-config, got {other:?}"),
        }
    }

    #[test]
    fn parses_ip_hosts_ports_and_paths() {
        let u = ok("http://127.0.0.1:8080/health?deep=1");
        assert_eq!((u.ip.to_string(), u.port), ("127.0.0.1".into(), 8080));
        assert_eq!(u.path, "/health?deep=1");
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(ok("http://localhost").path, "/");
        assert_eq!(ok("HTTP://localhost").port, 80);
        assert_eq!(ok("http://[::1]:9000/x#frag").path, "/x");
        assert_eq!(ok("http://[::1]:9000/").ip.to_string(), "::1");
        assert_eq!(ok("http://10.0.0.1?q").path, "/?q");
    }

    #[test]
    fn explains_bad_urls() {
        assert!(err("https://127.0.0.1/").contains("only plain `http`"));
        assert!(err("127.0.0.1:80").contains("does not start with `http://`"));
        assert!(err("http://example.com/").contains("use an IP address"));
        assert!(err("http://127.0.0.1:http/").contains("bad port"));
        assert!(err("http://127.0.0.1:99999/").contains("bad port"));
        assert!(err("http:///x").contains("no host"));
        assert!(err("http://u:p@127.0.0.1/").contains("user information"));
    }
}
