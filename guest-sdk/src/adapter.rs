//! The bridge from the generated `Guest` trait to a [`Plugin`]: one plugin object per instance, created
//! on the first call, checked names, parsed JSON.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

use crate::__private::bindings::exports::pilot::plugin::plugin::Guest;
use crate::{
    Description, ExitStatus, LifecycleEvent, Params, Plugin, PluginError, ProcessInfo,
    ProcessStats, ReadyStatus, StatAction,
};

/// Implements the generated `Guest` trait for plugin type `P`; [`export_plugin!`](crate::export_plugin)
/// exports it.
pub struct Adapter<P>(PhantomData<P>);

/// The instance's plugin object and what it described.
struct Loaded {
    plugin: Box<dyn Any>,
    description: Description,
}

thread_local! {
    // A component instance is single-threaded and its exports are never re-entered, so one slot
    // behind a RefCell holds the plugin object for the instance's whole life.
    static LOADED: RefCell<Option<Loaded>> = const { RefCell::new(None) };
}

/// Runs `f` on the instance's plugin object, creating it (and its description) on first use.
fn with_plugin<P: Plugin, R>(f: impl FnOnce(&mut P, &Description) -> R) -> R {
    LOADED.with_borrow_mut(|slot| {
        let loaded = slot.get_or_insert_with(|| {
            let plugin = P::default();
            let description = plugin.describe();
            Loaded {
                plugin: Box::new(plugin),
                description,
            }
        });
        let plugin = loaded
            .plugin
            .downcast_mut::<P>()
            .expect("export_plugin! is used once per component");
        f(plugin, &loaded.description)
    })
}

/// Fails with `unknown-name` unless `name` is among the `provided` names of kind `what`.
fn check_name(
    description: &Description,
    provided: &[String],
    what: &str,
    name: &str,
) -> Result<(), PluginError> {
    if provided.iter().any(|p| p == name) {
        return Ok(());
    }
    let known = if provided.is_empty() {
        "none".to_string()
    } else {
        provided
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(PluginError::unknown_name(format!(
        "plugin `{}` has no {what} `{name}` (it provides: {known})",
        description.name
    )))
}

impl<P: Plugin> Guest for Adapter<P> {
    fn describe() -> Description {
        with_plugin::<P, _>(|_, description| description.clone())
    }

    fn init(config: String) -> Result<(), PluginError> {
        let config = serde_json::from_str(&config).map_err(|e| {
            PluginError::invalid_config(format!("the plugin's `config` is not valid JSON: {e}"))
        })?;
        with_plugin::<P, _>(|plugin, _| plugin.init(config))
    }

    fn ready_check(
        strategy: String,
        process: ProcessInfo,
        params: String,
    ) -> Result<ReadyStatus, PluginError> {
        with_plugin::<P, _>(|plugin, d| {
            check_name(d, &d.ready_strategies, "ready strategy", &strategy)?;
            plugin.ready_check(&strategy, &process, &Params::parse(&params)?)
        })
    }

    fn lifecycle(
        hook: String,
        event: LifecycleEvent,
        process: ProcessInfo,
        exit: Option<ExitStatus>,
    ) -> Result<(), PluginError> {
        with_plugin::<P, _>(|plugin, d| {
            check_name(d, &d.lifecycle_hooks, "lifecycle hook", &hook)?;
            plugin.lifecycle(&hook, event, &process, exit)
        })
    }

    fn stats(handler: String, stats: Vec<ProcessStats>) -> Result<Vec<StatAction>, PluginError> {
        with_plugin::<P, _>(|plugin, d| {
            check_name(d, &d.stat_handlers, "stat handler", &handler)?;
            plugin.stats(&handler, &stats)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serde_json::Value;

    /// Counts calls; provides one name of each kind.
    #[derive(Default)]
    struct Probe {
        config: Value,
        hooks: u32,
    }

    impl Plugin for Probe {
        fn describe(&self) -> Description {
            Description::new("probe", "0.1.0")
                .ready_strategy("probe")
                .lifecycle_hook("count")
        }

        fn init(&mut self, config: Value) -> Result<(), PluginError> {
            self.config = config;
            Ok(())
        }

        fn ready_check(
            &self,
            _strategy: &str,
            _process: &ProcessInfo,
            params: &Params,
        ) -> Result<ReadyStatus, PluginError> {
            let want = self.config["want"].as_str().unwrap_or_default();
            Ok(if params.str("have")? == want {
                ReadyStatus::Ready
            } else {
                ReadyStatus::not_yet(format!("{} hooks so far", self.hooks))
            })
        }

        fn lifecycle(
            &mut self,
            _hook: &str,
            _event: LifecycleEvent,
            _process: &ProcessInfo,
            _exit: Option<ExitStatus>,
        ) -> Result<(), PluginError> {
            self.hooks += 1;
            Ok(())
        }
    }

    type A = Adapter<Probe>;

    fn process() -> ProcessInfo {
        ProcessInfo {
            name: "p".into(),
            pid: None,
            path: "/bin/p".into(),
            args: vec![],
            working_directory: "/".into(),
            restart_count: 0,
        }
    }

    fn check(strategy: &str, params: &str) -> Result<ReadyStatus, PluginError> {
        A::ready_check(strategy.into(), process(), params.into())
    }

    // One test: the instance's plugin object lives in a thread-local, and a single-threaded test
    // run would share it between tests.
    #[test]
    fn dispatches_keeps_state_and_checks_names() {
        assert_eq!(A::describe().name, "probe");
        assert!(matches!(
            A::init("{".into()),
            Err(PluginError::InvalidConfig(_))
        ));
        A::init(r#"{"want": "yes"}"#.into()).unwrap();

        assert_eq!(check("probe", r#"{"have": "yes"}"#), Ok(ReadyStatus::Ready));
        A::lifecycle("count".into(), LifecycleEvent::PreStart, process(), None).unwrap();
        assert_eq!(
            check("probe", r#"{"have": "no"}"#),
            Ok(ReadyStatus::not_yet("1 hooks so far"))
        );
        assert!(matches!(
            check("probe", "[1"),
            Err(PluginError::InvalidConfig(_))
        ));

        assert_eq!(
            check("nope", "{}"),
            Err(PluginError::unknown_name(
                "plugin `probe` has no ready strategy `nope` (it provides: `probe`)"
            ))
        );
        assert_eq!(
            A::stats("mem".into(), vec![]),
            Err(PluginError::unknown_name(
                "plugin `probe` has no stat handler `mem` (it provides: none)"
            ))
        );
    }
}
