//! Which `Host` a request on the HTTP listener may name. A page of another site that makes its own
//! name resolve to 127.0.0.1 (DNS rebinding) reaches the listener as if it were the dashboard, but its
//! requests carry that site's name: they are answered 421.
//!
//! Allowed: loopback names and addresses (`localhost`, `*.localhost`, `127.0.0.1`, `[::1]`), the
//! listen address (and, when it is a wildcard such as `0.0.0.0`, any IP address, since a browser
//! sends an address only for a page loaded from that address), and the manifest's `allowed_hosts`.
//! Any port is accepted.

use std::net::{IpAddr, SocketAddr};

/// The hosts a listener answers for.
#[derive(Debug, Clone)]
pub struct Hosts {
    listen: IpAddr,
    allowed: Vec<String>,
}

impl Hosts {
    /// The hosts of a listener on `listen`, with `allowed` (lowercase names) besides.
    pub fn new(listen: SocketAddr, allowed: Vec<String>) -> Hosts {
        Hosts {
            listen: listen.ip(),
            allowed,
        }
    }

    /// Returns whether a request naming `host` (a `Host` header's value) is answered.
    pub fn allows(&self, host: &str) -> bool {
        let Some(name) = name_of(host) else {
            return false;
        };
        if let Ok(ip) = name.parse::<IpAddr>() {
            return ip.is_loopback() || ip == self.listen || self.listen.is_unspecified();
        }
        name == "localhost" || name.ends_with(".localhost") || self.allowed.contains(&name)
    }
}

/// Returns the name or address of a `Host` value without its port or brackets, lowercase, without a
/// final dot; `None` when it is no host.
fn name_of(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        inside
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_the_listen_address_and_allowed_names_pass() {
        let hosts = Hosts::new(
            "127.0.0.1:7070".parse().unwrap(),
            vec!["pilot.example.com".into()],
        );
        for good in [
            "127.0.0.1:7070",
            "127.0.0.1",
            "localhost:7070",
            "LOCALHOST",
            "app.localhost:1",
            "[::1]:7070",
            "[::1]",
            "127.9.9.9",
            "pilot.example.com",
            "Pilot.Example.Com.:443",
        ] {
            assert!(hosts.allows(good), "{good}");
        }
        for bad in [
            "evil.example:7070",
            "evil.example",
            "localhost.evil.example",
            "10.0.0.5:7070",
            "[fe80::1]:7070",
            "",
            "127.0.0.1:http",
            "[::1]x",
            "example.com.pilot.example.com",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
    }

    #[test]
    fn a_wildcard_listen_address_answers_any_address_but_no_unknown_name() {
        let any = Hosts::new("0.0.0.0:7070".parse().unwrap(), Vec::new());
        assert!(any.allows("10.0.0.5:7070"));
        assert!(any.allows("[2001:db8::1]:7070"));
        assert!(!any.allows("rebind.evil.example:7070"));
        let one = Hosts::new("10.0.0.5:7070".parse().unwrap(), Vec::new());
        assert!(one.allows("10.0.0.5:7070"));
        assert!(!one.allows("10.0.0.6:7070"));
    }
}
