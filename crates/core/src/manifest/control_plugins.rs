//! Validation of control plugins: the names `control_server` and `control_plugins` give, and the
//! `grants` of a plugin's settings (control calls, outgoing HTTP destinations).

use super::explain::{closest, list};
use super::model::{ControlGrant, Grants, HttpGrant};
use super::raw::RawGrants;
use super::validate::Checker;

/// Returns the control plugins to run: the one `control_server` names, then `control_plugins`, each
/// once, every name checked against the loaded control plugins.
pub(crate) fn control_plugins(
    c: &mut Checker,
    named: Option<String>,
    listed: Option<&[String]>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let given = named.map(|n| ("control_server", n)).into_iter().chain(
        listed
            .into_iter()
            .flatten()
            .map(|n| ("control_plugins", n.clone())),
    );
    for (field, name) in given {
        if let Some(problem) = unknown(c, &name) {
            c.problem(None, field, problem);
        } else if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Why `name` is not a control plugin that can run, if it is not.
fn unknown(c: &Checker, name: &str) -> Option<String> {
    let catalog = c.catalog;
    if catalog.accept_any || catalog.control_plugins.contains(name) {
        return None;
    }
    if name.trim().is_empty() {
        return Some("a control plugin's name is empty; name one, e.g. `ops-endpoints`".into());
    }
    if !catalog.loaded {
        return Some(format!(
            "`{name}` is not a control server pilot-host provides (`http`, `tcp`), so it must be a control plugin, and no plugins are loaded; pass `--plugins DIR` with its `.wasm`"
        ));
    }
    let known: Vec<&str> = catalog.control_plugins.iter().map(String::as_str).collect();
    let hint = closest(name, known.iter().copied())
        .map(|b| format!("; did you mean `{b}`?"))
        .unwrap_or_default();
    let what = if catalog.plugins.contains(name) {
        format!("plugin `{name}` is not a control plugin (it exports `pilot:plugin/plugin`, not the `pilot-control` world)")
    } else {
        format!("no loaded plugin is called `{name}`")
    };
    Some(format!(
        "{what} (loaded control plugins: {}){hint}",
        if known.is_empty() {
            "none".into()
        } else {
            list(&known, 12)
        }
    ))
}

/// Checks `plugins.<plugin>.grants`.
pub(crate) fn grants(c: &mut Checker, plugin: &str, raw: Option<&RawGrants>) -> Grants {
    let Some(raw) = raw else {
        return Grants::default();
    };
    if c.catalog.loaded
        && !c.catalog.accept_any
        && c.catalog.plugins.contains(plugin)
        && !c.catalog.control_plugins.contains(plugin)
    {
        c.warn(
            None,
            &format!("plugins.{plugin}.grants"),
            format!("`{plugin}` is not a control plugin, and only control plugins use `grants`; it is ignored"),
        );
    }
    let (grants, problems) = parse_grants(
        raw.control.as_deref().unwrap_or_default(),
        raw.http.as_deref().unwrap_or_default(),
    );
    for (field, problem) in problems {
        c.problem(None, &format!("plugins.{plugin}.grants.{field}"), problem);
    }
    grants
}

/// Parses the `control` and `http` grants of a control plugin, for the manifest and for `plugin
/// check`'s spec files; returns them with every problem as (`control` or `http`, what is wrong and the
/// fix).
pub fn parse_grants(control: &[String], http: &[String]) -> (Grants, Vec<(&'static str, String)>) {
    let mut problems = Vec::new();
    let mut grants = Grants::default();
    for name in control {
        match ControlGrant::parse(name) {
            Some(g) => {
                grants.control.insert(g);
            }
            None => {
                let known: Vec<&str> = ControlGrant::ALL.iter().map(|g| g.name()).collect();
                let hint = closest(name, known.iter().copied())
                    .map(|b| format!("; did you mean `{b}`?"))
                    .unwrap_or_default();
                problems.push((
                    "control",
                    format!(
                        "`{name}` is not a control grant (known: {}){hint}",
                        list(&known, 5)
                    ),
                ));
            }
        }
    }
    for dest in http {
        match http_grant(dest) {
            Ok(g) => grants.http.push(g),
            Err(why) => problems.push(("http", why)),
        }
    }
    (grants, problems)
}

/// Parses `host`, `host:port` or `[v6]:port`.
fn http_grant(dest: &str) -> Result<HttpGrant, String> {
    let example = "e.g. `hooks.example.com` (ports 80 and 443) or `127.0.0.1:9000`";
    if dest.contains("://") || dest.contains('/') {
        return Err(format!(
            "`{dest}` is a URL; grant the host and port only, {example}"
        ));
    }
    let (host, port) = if let Some(rest) = dest.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{dest}` has no closing `]`; {example}"))?;
        (host, after.strip_prefix(':'))
    } else if dest.matches(':').count() == 1 {
        let (h, p) = dest.split_once(':').expect("one colon");
        (h, Some(p))
    } else {
        (dest, None)
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => {
                return Err(format!(
                    "`{dest}` has port `{p}`, which is not from 1 to 65535; {example}"
                ))
            }
        },
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.' | ':' | '_'));
    if !valid {
        return Err(format!(
            "`{dest}` is not a host name or IP address; {example}"
        ));
    }
    Ok(HttpGrant {
        host: host.to_ascii_lowercase(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_grants_parse_hosts_ports_and_refuse_urls() {
        let g = http_grant("Hooks.Example.com").unwrap();
        assert_eq!(g.port, None);
        assert!(g.allows("hooks.example.com", 443));
        assert!(g.allows("hooks.example.com", 80));
        assert!(!g.allows("hooks.example.com", 8080));
        assert!(!g.allows("evil.example.com", 443));
        let g = http_grant("127.0.0.1:9000").unwrap();
        assert!(g.allows("127.0.0.1", 9000));
        assert!(!g.allows("127.0.0.1", 9001));
        let g = http_grant("[::1]:8080").unwrap();
        assert!(g.allows("[::1]", 8080));
        assert_eq!(g.to_string(), "[::1]:8080");
        for bad in [
            "http://x.example.com",
            "x.example.com/path",
            "host:0",
            "host:99999",
            "",
            "a b",
        ] {
            assert!(http_grant(bad).is_err(), "{bad}");
        }
    }
}
