//! The bridge from the generated `Guest` traits of the `pilot-control` world to a [`ControlPlugin`]:
//! one plugin object per instance, the HTTP request read whole and the answer written whole.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

use super::http::{read_body, write_body};
use super::{ControlDescription, ControlPlugin, Event, Request, Response, Setup};
use crate::__private::control_bindings::exports::pilot::plugin::control_plugin::Guest;
use crate::__private::control_bindings::exports::wasi::http::incoming_handler::Guest as Incoming;
use crate::__private::control_bindings::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::PluginError;

/// Implements the generated `Guest` traits for control plugin type `P`;
/// [`export_control!`](crate::export_control) exports it.
pub struct ControlAdapter<P>(PhantomData<P>);

thread_local! {
    // A component instance is single-threaded and its exports are never re-entered.
    static PLUGIN: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn with_plugin<P: ControlPlugin, R>(f: impl FnOnce(&mut P) -> R) -> R {
    PLUGIN.with_borrow_mut(|slot| {
        let plugin = slot.get_or_insert_with(|| Box::new(P::default()));
        f(plugin
            .downcast_mut::<P>()
            .expect("export_control! is used once per component"))
    })
}

impl<P: ControlPlugin> Guest for ControlAdapter<P> {
    fn describe() -> ControlDescription {
        with_plugin::<P, _>(|p| p.describe())
    }

    fn init(config: String) -> Result<Setup, PluginError> {
        let config = serde_json::from_str(&config).map_err(|e| {
            PluginError::invalid_config(format!("the plugin's `config` is not valid JSON: {e}"))
        })?;
        with_plugin::<P, _>(|p| p.init(config))
    }

    fn on_event(event: Event) -> Result<(), PluginError> {
        with_plugin::<P, _>(|p| p.on_event(&event))
    }

    fn on_tick() -> Result<(), PluginError> {
        with_plugin::<P, _>(|p| p.on_tick())
    }
}

impl<P: ControlPlugin> Incoming for ControlAdapter<P> {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let response = match read_request(request) {
            Ok(request) => with_plugin::<P, _>(|p| p.handle(request)),
            Err(e) => Response::text(400, format!("cannot read the request: {e}\n")),
        };
        write_response(response_out, response);
    }
}

fn read_request(request: IncomingRequest) -> Result<Request, String> {
    let method = match request.method() {
        Method::Get => "GET".to_string(),
        Method::Head => "HEAD".to_string(),
        Method::Post => "POST".to_string(),
        Method::Put => "PUT".to_string(),
        Method::Delete => "DELETE".to_string(),
        Method::Connect => "CONNECT".to_string(),
        Method::Options => "OPTIONS".to_string(),
        Method::Trace => "TRACE".to_string(),
        Method::Patch => "PATCH".to_string(),
        Method::Other(m) => m,
    };
    let full = request.path_with_query().unwrap_or_else(|| "/".to_string());
    let (path, query) = match full.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (full, None),
    };
    let headers = request
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect();
    let body = request
        .consume()
        .map_err(|()| "the body is taken".to_string())
        .and_then(read_body)?;
    Ok(Request {
        method,
        path,
        query,
        headers,
        body,
    })
}

fn write_response(out: ResponseOutparam, response: Response) {
    let pairs: Vec<(String, Vec<u8>)> = response
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone().into_bytes()))
        .collect();
    let fields = Fields::from_list(&pairs).unwrap_or_else(|_| Fields::new());
    let answer = OutgoingResponse::new(fields);
    if answer.set_status_code(response.status).is_err() {
        let _ = answer.set_status_code(500);
    }
    let body: OutgoingBody = answer.body().expect("a new answer has its body");
    ResponseOutparam::set(out, Ok(answer));
    // The status and headers are sent; a body that cannot be written ends the answer early.
    let _ = write_body(body, &response.body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Counter {
        events: u32,
    }

    impl ControlPlugin for Counter {
        fn describe(&self) -> ControlDescription {
            ControlDescription::new("counter", "0.1.0")
        }

        fn init(&mut self, config: serde_json::Value) -> Result<Setup, PluginError> {
            let ms = config["tick_ms"].as_u64().unwrap_or(0) as u32;
            Ok(Setup::default().tick_ms(ms))
        }

        fn on_event(&mut self, _event: &Event) -> Result<(), PluginError> {
            self.events += 1;
            if self.events > 1 {
                return Err(PluginError::failed(format!("{} events", self.events)));
            }
            Ok(())
        }
    }

    type A = ControlAdapter<Counter>;

    #[test]
    fn dispatches_to_one_plugin_object() {
        assert_eq!(A::describe().name, "counter");
        assert!(matches!(
            A::init("[".into()),
            Err(PluginError::InvalidConfig(_))
        ));
        assert_eq!(
            A::init(r#"{"tick_ms": 500}"#.into()).unwrap().tick_ms,
            Some(500)
        );
        let event = Event {
            seq: 1,
            at_ms: 0,
            kind: super::super::EventKind::Exited,
            process: Some("web".into()),
            json: r#"{"type": "exited", "code": 3}"#.into(),
        };
        assert_eq!(event.data()["code"], 3);
        A::on_event(event.clone()).unwrap();
        assert_eq!(A::on_event(event), Err(PluginError::failed("2 events")));
    }
}
