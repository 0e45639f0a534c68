//! `{{name}}`: a pilot-host control plugin. `GET /plugins/{{name}}/health` answers 200 when every
//! process is up and 503 otherwise; every exit with an error is logged. It needs
//! `grants: { control: [read] }` in the manifest.

use pilot_plugin_sdk::control::{
    self, ControlDescription, ControlPlugin, Event, EventKind, Request, Response, Setup,
};
use pilot_plugin_sdk::{log, PluginError};

/// The plugin; it keeps no state.
#[derive(Default)]
struct {{camel}};

impl ControlPlugin for {{camel}} {
    fn describe(&self) -> ControlDescription {
        ControlDescription::new("{{name}}", env!("CARGO_PKG_VERSION"))
    }

    fn init(&mut self, _config: pilot_plugin_sdk::serde_json::Value) -> Result<Setup, PluginError> {
        Ok(Setup::default().events(&[EventKind::Exited]))
    }

    fn on_event(&mut self, event: &Event) -> Result<(), PluginError> {
        let data = event.data();
        if data["code"].as_i64().is_some_and(|c| c != 0) {
            log::warn!("`{}` exited with status {}", event.process.as_deref().unwrap_or("?"), data["code"]);
        }
        Ok(())
    }

    fn handle(&mut self, request: Request) -> Response {
        if request.path != "/health" {
            return Response::text(404, "try GET /health\n");
        }
        match control::processes() {
            Ok(list) => {
                let down: Vec<&str> =
                    list.iter().filter(|p| !p.up).map(|p| p.name.as_str()).collect();
                if down.is_empty() {
                    Response::text(200, "all up\n")
                } else {
                    Response::text(503, format!("down: {}\n", down.join(", ")))
                }
            }
            Err(e) => Response::text(500, format!("{e:?}\n")),
        }
    }
}

pilot_plugin_sdk::export_control!({{camel}});
