//! The host side of the `pilot-control` world in `wit/control.wit`, bound once; the types it shares
//! with `pilot-plugin` and WASI come from their own bindings.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "pilot-control",
    imports: {
        "pilot:plugin/control": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    require_store_data_send: true,
    with: {
        "pilot:plugin/types": crate::bindings::pilot::plugin::types,
        "pilot:plugin/host": crate::bindings::pilot::plugin::host,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
});

pub use self::exports::pilot::plugin::control_plugin::{
    ControlDescription, Event, EventKind, Setup,
};
