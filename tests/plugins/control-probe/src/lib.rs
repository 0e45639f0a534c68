//! `control-probe`: a pilot-host test control plugin, well-behaved and hostile by route.
//!
//! Routes (under `/plugins/control-probe/`):
//! - `GET /hello`: 200 `hello`, with the request's headers echoed as JSON in `x-seen-headers`.
//! - `GET /processes`: the control call `processes`, as JSON (or 403 with the error).
//! - `POST /restart?p=NAME`: the control call `restart` (200, or 403 with the error).
//! - `GET /fetch?url=URL`: an outgoing GET (200 with the answer's body, or 502 with the error).
//! - `GET /spin`: loops forever. `GET /sleep`: sleeps 30 s in the host. `GET /big`: answers 64 MiB
//!   (give it `memory_mib: 256` to build it).
//! - `GET /trap`: panics.
//!
//! Events (config `forward: URL`): every event of the kinds in `config.events` (default all) is posted
//! to `URL` as its JSON. Config `storm: true`: every event restarts its process.
//! Config `tick_ms`: ticks are posted to `forward` as `{"type": "tick"}`.
//! Config `tally: URL`: counts the events it gets and the gaps in their sequence numbers, and posts
//! `{"count", "gaps", "first", "last"}` to `URL` when the supervisor's `shutting-down` event arrives
//! (the events benchmark's check that no event was lost).

use pilot_plugin_sdk::control::{
    self, http, ControlDescription, ControlPlugin, Event, EventKind, Request, Response, Setup,
};
use pilot_plugin_sdk::{log, PluginError};
use serde_json::{json, Value};

/// The plugin's configuration.
#[derive(Default)]
struct Probe {
    forward: Option<String>,
    storm: bool,
    tally: Option<(String, Tally)>,
}

/// What a tallying probe counted.
#[derive(Default)]
struct Tally {
    count: u64,
    gaps: u64,
    first: Option<u64>,
    last: u64,
}

const ALL: [EventKind; 10] = [
    EventKind::StateChanged,
    EventKind::Spawned,
    EventKind::Ready,
    EventKind::Exited,
    EventKind::RestartScheduled,
    EventKind::GaveUp,
    EventKind::Adopted,
    EventKind::Reloaded,
    EventKind::Plugin,
    EventKind::ShuttingDown,
];

fn kind(name: &str) -> Option<EventKind> {
    let names = [
        "state-changed",
        "spawned",
        "ready",
        "exited",
        "restart-scheduled",
        "gave-up",
        "adopted",
        "reloaded",
        "plugin",
        "shutting-down",
    ];
    names.iter().position(|n| *n == name).map(|i| ALL[i])
}

fn query_url(request: &Request, name: &str) -> String {
    request
        .query_param(name)
        .unwrap_or_default()
        .replace("%3A", ":")
        .replace("%2F", "/")
}

impl ControlPlugin for Probe {
    fn describe(&self) -> ControlDescription {
        ControlDescription::new("control-probe", "0.1.0")
    }

    fn init(&mut self, config: Value) -> Result<Setup, PluginError> {
        if config["fail_init"] == true {
            return Err(PluginError::invalid_config("told to fail by `fail_init`"));
        }
        self.forward = config["forward"].as_str().map(str::to_string);
        self.storm = config["storm"] == true;
        self.tally = config["tally"]
            .as_str()
            .map(|url| (url.to_string(), Tally::default()));
        let events: Vec<EventKind> = match config["events"].as_array() {
            Some(list) => list
                .iter()
                .filter_map(|v| v.as_str().and_then(kind))
                .collect(),
            None => ALL.to_vec(),
        };
        let mut setup = Setup::default().events(&events);
        if let Some(ms) = config["tick_ms"].as_u64() {
            setup = setup.tick_ms(ms as u32);
        }
        Ok(setup)
    }

    fn on_event(&mut self, event: &Event) -> Result<(), PluginError> {
        if let Some((url, t)) = &mut self.tally {
            t.count += 1;
            if t.first.is_none() {
                t.first = Some(event.seq);
            } else if event.seq != t.last + 1 {
                t.gaps += 1;
            }
            t.last = event.seq;
            if event.kind == EventKind::ShuttingDown {
                let body =
                    json!({"count": t.count, "gaps": t.gaps, "first": t.first, "last": t.last});
                http::post_json(url, &body).map_err(PluginError::unavailable)?;
            }
        }
        if self.storm {
            if let Some(p) = &event.process {
                if let Err(e) = control::restart(&[p]) {
                    log::debug!("restart refused: {e:?}");
                }
            }
        }
        if let Some(url) = &self.forward {
            http::send(
                "POST",
                url,
                &[("content-type", "application/json")],
                event.json.as_bytes(),
            )
            .map_err(PluginError::unavailable)?;
        }
        Ok(())
    }

    fn on_tick(&mut self) -> Result<(), PluginError> {
        if let Some(url) = &self.forward {
            http::post_json(url, &json!({"type": "tick"})).map_err(PluginError::unavailable)?;
        }
        Ok(())
    }

    fn handle(&mut self, request: Request) -> Response {
        match request.path.as_str() {
            "/hello" => {
                let seen: Vec<&str> = request.headers.iter().map(|(k, _)| k.as_str()).collect();
                Response::text(200, "hello").header("x-seen-headers", json!(seen).to_string())
            }
            "/processes" => match control::processes() {
                Ok(list) => {
                    let names: Vec<Value> = list
                        .iter()
                        .map(|p| json!({"name": p.name, "up": p.up, "phase": format!("{:?}", p.phase)}))
                        .collect();
                    Response::json(200, &names)
                }
                Err(e) => Response::text(403, format!("{e:?}")),
            },
            "/restart" => {
                let p = request.query_param("p").unwrap_or_default().to_string();
                match control::restart(&[&p]) {
                    Ok(()) => Response::text(200, "restarting"),
                    Err(e) => Response::text(403, format!("{e:?}")),
                }
            }
            "/fetch" => match http::get(&query_url(&request, "url")) {
                Ok(answer) => Response::new(200).body(answer.body),
                Err(e) => Response::text(502, e),
            },
            "/spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "/sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(30));
                Response::text(200, "slept")
            }
            "/big" => Response::new(200).body(vec![b'x'; 64 << 20]),
            "/trap" => panic!("told to trap"),
            _ => Response::text(404, "no such route"),
        }
    }
}

pilot_plugin_sdk::export_control!(Probe);
