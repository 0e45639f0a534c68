// pilot-plugin-sdk for JavaScript: write pilot-host plugins (ready strategies, lifecycle hooks, stat
// handlers) as WebAssembly components, built with @bytecodealliance/componentize-js.
//
//     import * as pilot from './pilot_sdk.js';
//
//     class Patience extends pilot.Plugin {
//       describe() {
//         return { name: 'patience', version: '0.1.0', readyStrategies: ['patience'] };
//       }
//       readyCheck(strategy, process, params) {
//         const wanted = params.intOr('min_restarts', 1);
//         return process.restartCount >= wanted
//           ? pilot.READY
//           : pilot.notYet(`${process.restartCount} of ${wanted} restarts`);
//       }
//     }
//
//     export const plugin = pilot.exportPlugin(Patience);
//
// The WIT contract's generated bindings stay behind this module. Errors are exceptions: throw
// `InvalidConfig`, `UnknownName`, `Unavailable` or `Failed` and the host gets that error as data; any
// other exception is a trap that discards the instance.

import { log as hostLog } from 'pilot:plugin/host@0.1.1';

/** A ready check's "ready" answer. */
export const READY = Object.freeze({ tag: 'ready' });

/** Returns a ready check's "not yet" answer, with the reason shown if the deadline passes. */
export function notYet(reason) {
  return { tag: 'not-yet', val: String(reason) };
}

/** Returns a stat handler's request to restart `process`, saying why. */
export function restart(process, reason) {
  return { kind: 'restart', process, reason: String(reason) };
}

/** Returns a stat handler's request to stop `process`, saying why. */
export function stop(process, reason) {
  return { kind: 'stop', process, reason: String(reason) };
}

/** A plugin's own error: reported by the host as data, fatal to nothing but the call. */
export class PluginError extends Error {
  constructor(message, tag = 'failed') {
    super(message);
    // componentize-js turns an exception with a `payload` into the export's `err` value.
    Object.defineProperty(this, 'payload', { value: { tag, val: String(message) } });
  }
}

/** The configuration or `ready_params` are wrong; retrying will not help. */
export class InvalidConfig extends PluginError {
  constructor(message) { super(message, 'invalid-config'); }
}

/** The strategy, hook or handler name is not one this plugin provides. */
export class UnknownName extends PluginError {
  constructor(message) { super(message, 'unknown-name'); }
}

/** Something the plugin needs cannot be reached (a file, a socket, a variable). */
export class Unavailable extends PluginError {
  constructor(message) { super(message, 'unavailable'); }
}

/** Any other failure. */
export class Failed extends PluginError {
  constructor(message) { super(message, 'failed'); }
}

const show = (value) => JSON.stringify(value);
const isWhole = (v) => Number.isInteger(v) && v >= 0;

/**
 * A JSON mapping read with typed getters whose errors are `InvalidConfig` naming the key: a process's
 * `ready_params`, or the plugin's `config`. A missing key and `null` are the same.
 */
export class Params {
  constructor(value, scope = 'ready_params') {
    this.value = value;
    this.scope = scope;
  }

  /** Parses JSON text; bad JSON is an `InvalidConfig` error. */
  static parse(text, scope = 'ready_params') {
    try {
      return new Params(JSON.parse(text), scope);
    } catch (e) {
      throw new InvalidConfig(`\`${scope}\` is not valid JSON: ${e.message}`);
    }
  }

  #map() {
    if (this.value === null || this.value === undefined) return {};
    if (typeof this.value !== 'object' || Array.isArray(this.value)) {
      throw new InvalidConfig(
        `\`${this.scope}\` must be a mapping of keys to values, got \`${show(this.value)}\``);
    }
    return this.value;
  }

  /** Returns the value at `key`, or undefined when it is missing or null. */
  get(key) {
    const v = Object.hasOwn(this.#map(), key) ? this.#map()[key] : undefined;
    return v === null ? undefined : v;
  }

  #typed(key, what, ok, fallback, required) {
    const v = this.get(key);
    if (v === undefined) {
      if (required) throw new InvalidConfig(`\`${this.scope}.${key}\` is required (${what}) and missing`);
      return fallback;
    }
    if (!ok(v)) throw new InvalidConfig(`\`${this.scope}.${key}\` must be ${what}, got \`${show(v)}\``);
    return v;
  }

  /** Returns the string at `key`, which must be present. */
  str(key) { return this.#typed(key, 'a string', (v) => typeof v === 'string', undefined, true); }
  /** Returns the string at `key`, or `fallback` when it is missing. */
  strOr(key, fallback) { return this.#typed(key, 'a string', (v) => typeof v === 'string', fallback, false); }
  /** Returns the whole number (0 or more) at `key`, which must be present. */
  int(key) { return this.#typed(key, 'a whole number', isWhole, undefined, true); }
  /** Returns the whole number (0 or more) at `key`, or `fallback` when it is missing. */
  intOr(key, fallback) { return this.#typed(key, 'a whole number', isWhole, fallback, false); }
  /** Returns the number at `key`, or `fallback` when it is missing. */
  numberOr(key, fallback) {
    return this.#typed(key, 'a number', (v) => typeof v === 'number' && Number.isFinite(v), fallback, false);
  }
  /** Returns the boolean at `key`, or `fallback` when it is missing. */
  boolOr(key, fallback) { return this.#typed(key, 'true or false', (v) => typeof v === 'boolean', fallback, false); }
}

/** Lines in the host's log, tagged with the plugin's name and rate-limited by the host. */
export const log = Object.freeze({
  trace: (message) => hostLog('trace', String(message)),
  debug: (message) => hostLog('debug', String(message)),
  info: (message) => hostLog('info', String(message)),
  warn: (message) => hostLog('warn', String(message)),
  error: (message) => hostLog('error', String(message)),
});

/**
 * A pilot-host plugin. Override `describe` and the methods for what it lists; the defaults answer
 * `UnknownName`. One object lives per instance: after a trap the host starts a fresh one.
 */
export class Plugin {
  /** Says what the plugin provides: `{ name, version, readyStrategies, lifecycleHooks, statHandlers }`. */
  describe() { throw new Error('a plugin must implement `describe`'); }
  /** Configures the instance with `plugins.<name>.config`, as `Params` (scope `config`). */
  init(config) {}
  /** Answers `READY`, `notYet(reason)`, or throws. Never wait: the host polls. */
  readyCheck(strategy, process, params) {
    throw new UnknownName(`this plugin has no ready strategy \`${strategy}\``);
  }
  /** Runs hook `hook` at `event` ('pre-start', 'post-start', 'on-shutdown', 'on-restart'). */
  lifecycle(hook, event, process, exit) {
    throw new UnknownName(`this plugin has no lifecycle hook \`${hook}\``);
  }
  /** Sees the latest stats of the processes that name `handler`; answers actions. */
  stats(handler, stats) {
    throw new UnknownName(`this plugin has no stat handler \`${handler}\``);
  }
}

function describeFully(d) {
  return {
    name: String(d.name),
    version: String(d.version),
    readyStrategies: [...(d.readyStrategies ?? [])],
    lifecycleHooks: [...(d.lifecycleHooks ?? [])],
    statHandlers: [...(d.statHandlers ?? [])],
  };
}

function checkName(d, provided, what, name) {
  if (provided.includes(name)) return;
  const known = provided.length ? provided.map((p) => `\`${p}\``).join(', ') : 'none';
  throw new UnknownName(`plugin \`${d.name}\` has no ${what} \`${name}\` (it provides: ${known})`);
}

/**
 * Returns the object to export as `pilot:plugin/plugin`, dispatching to one `new PluginClass()` per
 * instance: `export const plugin = exportPlugin(MyPlugin);`.
 */
export function exportPlugin(PluginClass) {
  let loaded = null;
  const load = () => {
    if (loaded === null) {
      const plugin = new PluginClass();
      loaded = { plugin, description: describeFully(plugin.describe()) };
    }
    return loaded;
  };
  return {
    describe: () => load().description,
    init(config) {
      load().plugin.init(Params.parse(config, 'config'));
    },
    readyCheck(strategy, process, params) {
      const { plugin, description: d } = load();
      checkName(d, d.readyStrategies, 'ready strategy', strategy);
      return plugin.readyCheck(strategy, process, Params.parse(params));
    },
    lifecycle(hook, event, process, exit) {
      const { plugin, description: d } = load();
      checkName(d, d.lifecycleHooks, 'lifecycle hook', hook);
      plugin.lifecycle(hook, event, process, exit ?? undefined);
    },
    stats(handler, stats) {
      const { plugin, description: d } = load();
      checkName(d, d.statHandlers, 'stat handler', handler);
      return [...(plugin.stats(handler, stats) ?? [])];
    },
  };
}
