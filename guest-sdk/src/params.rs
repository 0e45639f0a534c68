//! Typed reading of `ready_params` and plugin configuration.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::PluginError;

/// A JSON mapping read with typed getters whose errors are [`PluginError::InvalidConfig`] naming the
/// key: a process's `ready_params`, or the plugin's `config`.
///
/// A missing key and a `null` value are the same. A missing mapping (`null`) reads as empty.
///
/// ```
/// use pilot_plugin_sdk::Params;
///
/// let params = Params::parse(r#"{"url": "http://127.0.0.1:8080/health", "timeout_ms": 200}"#)?;
/// assert_eq!(params.str("url")?, "http://127.0.0.1:8080/health");
/// assert_eq!(params.u64_or("timeout_ms", 500)?, 200);
/// assert_eq!(params.u64_or("retries", 3)?, 3);
///
/// let err = params.u64("url").unwrap_err();
/// assert_eq!(
///     err.message(),
///     "`ready_params.url` must be a whole number, got `\"http://127.0.0.1:8080/health\"`"
/// );
/// # Ok::<(), pilot_plugin_sdk::PluginError>(())
/// ```
///
/// Or all at once into a serde struct (the plugin crate then depends on `serde` with `derive`):
///
/// ```
/// # use pilot_plugin_sdk::Params;
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Probe {
///     path: String,
///     #[serde(default)]
///     min_bytes: u64,
/// }
///
/// let probe: Probe = Params::parse(r#"{"path": "/run/app.sock"}"#)?.deserialize()?;
/// assert_eq!((probe.path.as_str(), probe.min_bytes), ("/run/app.sock", 0));
/// # Ok::<(), pilot_plugin_sdk::PluginError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    value: Value,
    scope: &'static str,
}

impl Params {
    /// Wraps a process's `ready_params`; errors name keys as `ready_params.<key>`.
    pub fn new(value: Value) -> Self {
        Self {
            value,
            scope: "ready_params",
        }
    }

    /// Wraps the plugin's configuration; errors name keys as `config.<key>`.
    ///
    /// ```
    /// # use pilot_plugin_sdk::{serde_json::json, Params};
    /// let config = Params::config(json!({ "max_rss_mib": "lots" }));
    /// assert_eq!(
    ///     config.u64("max_rss_mib").unwrap_err().message(),
    ///     "`config.max_rss_mib` must be a whole number, got `\"lots\"`"
    /// );
    /// ```
    pub fn config(value: Value) -> Self {
        Self {
            value,
            scope: "config",
        }
    }

    /// Parses `ready_params` from JSON text.
    pub fn parse(json: &str) -> Result<Self, PluginError> {
        serde_json::from_str(json).map(Self::new).map_err(|e| {
            PluginError::invalid_config(format!("`ready_params` is not valid JSON: {e}"))
        })
    }

    /// Returns the whole value as given.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Returns the value at `key`, or `None` when it is missing or `null`.
    pub fn get(&self, key: &str) -> Result<Option<&Value>, PluginError> {
        Ok(self
            .map()?
            .and_then(|m| m.get(key))
            .filter(|v| !v.is_null()))
    }

    /// Returns the string at `key`, which must be present.
    pub fn str(&self, key: &str) -> Result<&str, PluginError> {
        self.opt_str(key)?
            .ok_or_else(|| self.missing(key, "a string"))
    }

    /// Returns the string at `key`, or `default` when it is missing.
    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str, PluginError> {
        Ok(self.opt_str(key)?.unwrap_or(default))
    }

    /// Returns the string at `key`, if present.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, PluginError> {
        match self.get(key)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    /// Returns the whole number at `key`, which must be present.
    pub fn u64(&self, key: &str) -> Result<u64, PluginError> {
        self.opt_u64(key)?
            .ok_or_else(|| self.missing(key, "a whole number"))
    }

    /// Returns the whole number at `key`, or `default` when it is missing.
    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64, PluginError> {
        Ok(self.opt_u64(key)?.unwrap_or(default))
    }

    /// Returns the whole number at `key`, if present.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, PluginError> {
        match self.get(key)? {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a whole number", v)),
        }
    }

    /// Returns the number at `key`, or `default` when it is missing.
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, PluginError> {
        match self.get(key)? {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.wrong(key, "a number", v)),
        }
    }

    /// Returns the boolean at `key`, or `default` when it is missing.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, PluginError> {
        match self.get(key)? {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.wrong(key, "true or false", v)),
        }
    }

    /// Deserializes the value at `key`, which must be present, into `T`.
    pub fn field<T: DeserializeOwned>(&self, key: &str) -> Result<T, PluginError> {
        let value = self
            .get(key)?
            .ok_or_else(|| self.missing(key, std::any::type_name::<T>()))?;
        T::deserialize(value).map_err(|e| {
            PluginError::invalid_config(format!("`{}.{key}` is wrong: {e}", self.scope))
        })
    }

    /// Deserializes the whole mapping into `T` (`null` deserializes as an empty mapping).
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        let empty = Value::Object(Map::new());
        let value = if self.value.is_null() {
            &empty
        } else {
            &self.value
        };
        T::deserialize(value)
            .map_err(|e| PluginError::invalid_config(format!("`{}` is wrong: {e}", self.scope)))
    }

    fn map(&self) -> Result<Option<&Map<String, Value>>, PluginError> {
        match &self.value {
            Value::Null => Ok(None),
            Value::Object(m) => Ok(Some(m)),
            other => Err(PluginError::invalid_config(format!(
                "`{}` must be a mapping of keys to values, got `{other}`",
                self.scope
            ))),
        }
    }

    fn missing(&self, key: &str, what: &str) -> PluginError {
        PluginError::invalid_config(format!(
            "`{}.{key}` is required ({what}) and missing",
            self.scope
        ))
    }

    fn wrong(&self, key: &str, what: &str, got: &Value) -> PluginError {
        PluginError::invalid_config(format!(
            "`{}.{key}` must be {what}, got `{got}`",
            self.scope
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invalid(e: PluginError) -> String {
        match e {
            PluginError::InvalidConfig(m) => m,
            other => panic!("want invalid-config, got {other:?}"),
        }
    }

    #[test]
    fn missing_and_null_are_the_same() {
        let p = Params::new(json!({ "a": null }));
        assert_eq!(p.opt_str("a").unwrap(), None);
        assert_eq!(p.u64_or("a", 7).unwrap(), 7);
        assert_eq!(
            invalid(p.str("a").unwrap_err()),
            "`ready_params.a` is required (a string) and missing"
        );
    }

    #[test]
    fn null_params_read_as_empty() {
        let p = Params::parse("null").unwrap();
        assert_eq!(p.str_or("x", "d").unwrap(), "d");
        #[derive(serde::Deserialize)]
        struct Empty {
            #[serde(default)]
            n: u64,
        }
        assert_eq!(p.deserialize::<Empty>().unwrap().n, 0);
    }

    #[test]
    fn wrong_types_name_the_key_and_value() {
        let p = Params::new(json!({ "port": -1, "on": "yes", "ratio": "x" }));
        assert_eq!(
            invalid(p.u64("port").unwrap_err()),
            "`ready_params.port` must be a whole number, got `-1`"
        );
        assert_eq!(
            invalid(p.bool_or("on", false).unwrap_err()),
            "`ready_params.on` must be true or false, got `\"yes\"`"
        );
        assert_eq!(
            invalid(p.f64_or("ratio", 1.0).unwrap_err()),
            "`ready_params.ratio` must be a number, got `\"x\"`"
        );
    }

    #[test]
    fn non_mapping_and_bad_json_are_invalid_config() {
        let p = Params::new(json!([1, 2]));
        assert_eq!(
            invalid(p.str("a").unwrap_err()),
            "`ready_params` must be a mapping of keys to values, got `[1,2]`"
        );
        assert!(invalid(Params::parse("{").unwrap_err())
            .starts_with("`ready_params` is not valid JSON"));
    }

    #[test]
    fn field_and_deserialize_report_serde_errors() {
        let p = Params::config(json!({ "list": [1, "two"] }));
        let e = invalid(p.field::<Vec<u64>>("list").unwrap_err());
        assert!(e.starts_with("`config.list` is wrong: invalid type"), "{e}");
        assert_eq!(p.field::<Vec<serde_json::Value>>("list").unwrap().len(), 2);
    }
}
