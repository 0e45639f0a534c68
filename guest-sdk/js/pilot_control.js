// pilot-control-sdk for JavaScript: write pilot-host control plugins (the `pilot-control` world) as
// WebAssembly components built with @bytecodealliance/componentize-js: HTTP endpoints under
// `/plugins/<name>/`, the supervisor's events and ticks, and control calls as far as the manifest
// grants (`plugins.<name>.grants.control`).
//
//     import * as pilot from './pilot_control.js';
//
//     class Ops extends pilot.ControlPlugin {
//       describe() { return { name: 'ops', version: '0.1.0' }; }
//       handle(request) {
//         const down = pilot.control.processes().filter((p) => !p.up);   // grant: read
//         return pilot.json(down.length ? 503 : 200, { down: down.map((p) => p.name) });
//       }
//     }
//
//     const exported = pilot.exportControl(Ops);
//     export const controlPlugin = exported.controlPlugin;
//     export const incomingHandler = exported.incomingHandler;
//
// Build with `node build.mjs --world pilot-control ...` (componentize-js with its `http` and
// `fetch-event` features off: the SDK serves wasi:http/incoming-handler itself over the
// wasi:http/types resources, because componentize-js 0.23's fetch event is bound to wasi:http 0.2.10
// and this world exports 0.2.12). Each request runs on a fresh instance; events and ticks go, in order,
// to one long-lived instance. `httpSend({ method, url, headers, body })` sends a request to a host
// granted in `plugins.<name>.grants.http` and returns `{ status, headers, body }`; it throws
// `HttpError` (its `code` is `HTTP-request-denied` for a host not granted). Control calls throw
// `Denied`, `UnknownProcess` or `Refused`; throw `InvalidConfig`, `Unavailable` or `Failed` (from
// pilot_sdk.js, re-exported) for the plugin's own errors. An exception a handler lets through answers
// 403 (`Denied`, or an `HttpError` whose host is not granted), 409 (another control error), 502
// (another `HttpError`) or 500, with its message.

import * as wit from 'pilot:plugin/control@0.1.1';
import { handle as sendRequest } from 'wasi:http/outgoing-handler@0.2.12';
import {
  Fields, IncomingBody, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
} from 'wasi:http/types@0.2.12';
import { Params, InvalidConfig, PluginError, Unavailable } from './pilot_sdk.js';

export { log, Params, PluginError, InvalidConfig, Unavailable, Failed } from './pilot_sdk.js';

const MAX_BODY = 4 << 20;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A control call did nothing; `kind` is `denied`, `unknown-process` or `refused`. */
export class ControlError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}
/** The call is not granted; the message names the grant to add. */
export class Denied extends ControlError { constructor(m) { super('denied', m); } }
/** A named process is not in the manifest. */
export class UnknownProcess extends ControlError { constructor(m) { super('unknown-process', m); } }
/** The supervisor refused (a dependency is down, shutting down, too many requests). */
export class Refused extends ControlError { constructor(m) { super('refused', m); } }

function call(f, ...args) {
  try {
    return f(...args);
  } catch (e) {
    const err = e?.payload ?? e;
    if (err?.tag === 'denied') throw new Denied(err.val);
    if (err?.tag === 'unknown-process') throw new UnknownProcess(err.val);
    if (err?.tag === 'refused') throw new Refused(err.val);
    throw e;
  }
}

const names = (list) => [...list].map(String);

/** The supervisor's control calls; each needs its grant in `plugins.<name>.grants.control`. */
export const control = Object.freeze({
  /** Every process in manifest order: `{ name, phase, pid, up, restarts, uptimeSec, lastExit, reason }`. Grant: read. */
  processes: () => call(wit.processes),
  /** The latest sample of every process (`rssBytes` and `maxRssBytes` are BigInt). Grant: read. */
  stats: () => call(wit.stats),
  /** The manifest in effect, parsed. Grant: read. */
  manifest: () => JSON.parse(call(wit.manifest)),
  /** The last `tail` lines `process` printed (at most 1000). Grant: read. */
  logs: (process, tail = 100) => call(wit.logs, String(process), tail),
  /** Starts the named processes (all or none). Grant: start. */
  start: (processes) => call(wit.start, names(processes)),
  /** Stops the named processes (all or none). Grant: stop. */
  stop: (processes) => call(wit.stop, names(processes)),
  /** Restarts the named processes (all or none; rate-limited). Grant: restart. */
  restart: (processes) => call(wit.restart, names(processes)),
  /** Re-reads the manifest and applies it; returns the report, parsed. Grant: reload. */
  reload: () => JSON.parse(call(wit.reload)),
});

/** The event kinds a plugin may ask for in `init`. */
export const EVENT_KINDS = Object.freeze([
  'state-changed', 'spawned', 'ready', 'exited', 'restart-scheduled', 'gave-up', 'adopted',
  'reloaded', 'plugin', 'shutting-down',
]);

/** Returns a JSON answer. */
export function json(status, value, headers = {}) {
  return { status, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(value) };
}

/** Returns a text answer. */
export function text(status, body, headers = {}) {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8', ...headers }, body: String(body) };
}

/**
 * A control plugin; extend it. `describe` is required; the others have defaults: `init(config)`
 * returns `{ events: [...kinds], tickMs }`, `onEvent(event)`, `onTick()`, and `handle(request)`
 * returns `{ status, headers, body }` (body: string, Uint8Array, or a value sent as JSON).
 */
export class ControlPlugin {
  describe() { throw new Error('a control plugin must implement `describe`'); }
  init(config) { return { events: [] }; }
  onEvent(event) {}
  onTick() {}
  handle(request) { return text(404, `no route for ${request.method} ${request.path}\n`); }
}

function dispose(resource) {
  resource?.[Symbol.dispose]?.();
}

function readBody(incoming) {
  const body = incoming.consume();
  const stream = body.stream();
  const chunks = [];
  let size = 0;
  try {
    for (;;) {
      let chunk;
      try {
        chunk = stream.blockingRead(65536n);
      } catch (e) {
        if ((e?.payload ?? e)?.tag === 'closed') break;
        throw e;
      }
      size += chunk.length;
      if (size > MAX_BODY) throw new Error(`the body is larger than ${MAX_BODY >> 20} MiB`);
      chunks.push(chunk);
    }
  } finally {
    dispose(stream);
    dispose(IncomingBody.finish(body));
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) { all.set(c, at); at += c.length; }
  return all;
}

const METHODS = {
  get: 'GET', head: 'HEAD', post: 'POST', put: 'PUT', delete: 'DELETE', connect: 'CONNECT',
  options: 'OPTIONS', trace: 'TRACE', patch: 'PATCH',
};

const METHOD_TAGS = Object.fromEntries(Object.entries(METHODS).map(([tag, name]) => [name, tag]));

function readRequest(incoming) {
  const method = incoming.method();
  const target = incoming.pathWithQuery() ?? '/';
  const cut = target.indexOf('?');
  const fields = incoming.headers();
  const headers = {};
  for (const [name, value] of fields.entries()) {
    const key = name.toLowerCase();
    if (!(key in headers)) headers[key] = decoder.decode(value);
  }
  dispose(fields);
  const body = readBody(incoming);
  return {
    method: method.tag === 'other' ? method.val : METHODS[method.tag],
    path: (cut < 0 ? target : target.slice(0, cut)) || '/',
    query: cut < 0 ? undefined : target.slice(cut + 1),
    headers,
    body,
    /** The body as text. */
    text() { return decoder.decode(body); },
    /** The body parsed as JSON (throws on bad JSON). */
    json() { return JSON.parse(decoder.decode(body) || 'null'); },
  };
}

function bodyBytes(body) {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (body instanceof Uint8Array) return body;
  if (typeof body === 'string') return encoder.encode(body);
  return encoder.encode(JSON.stringify(body));
}

function sendResponse(out, answer) {
  const status = Number.isInteger(answer?.status) ? answer.status : 500;
  const pairs = Object.entries(answer?.headers ?? {}).map(([k, v]) => [k.toLowerCase(), encoder.encode(String(v))]);
  const bytes = bodyBytes(answer?.body);
  let fields;
  try {
    fields = Fields.fromList(pairs);
  } catch {
    fields = new Fields(); // a forbidden or malformed header: send none
  }
  const response = new OutgoingResponse(fields);
  response.setStatusCode(status);
  const body = response.body();
  ResponseOutparam.set(out, { tag: 'ok', val: response });
  const stream = body.write();
  try {
    for (let at = 0; at < bytes.length; at += 4096) {
      stream.blockingWriteAndFlush(bytes.subarray(at, at + 4096));
    }
  } finally {
    dispose(stream);
    OutgoingBody.finish(body, undefined);
  }
}

/**
 * An outgoing request failed; `code` is the wasi:http error code (`HTTP-request-denied` when the host
 * is not in `plugins.<name>.grants.http`, `connection-refused`, `HTTP-response-timeout`, ...).
 */
export class HttpError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

let pluginName = () => '<name>';

function splitUrl(url) {
  const m = /^(https?):\/\/([^/?]+)(.*)$/i.exec(url);
  if (!m) {
    throw new InvalidConfig(`\`${url}\` is not an http:// or https:// URL with a host (e.g. \`http://127.0.0.1:9000/hook\`)`);
  }
  const path = m[3] || '/';
  return { scheme: { tag: m[1].toUpperCase() }, authority: m[2], path: path.startsWith('/') ? path : `/${path}` };
}

function httpError(e, what, authority) {
  const code = (e?.payload ?? e)?.tag;
  if (typeof code !== 'string') throw e;
  if (code === 'HTTP-request-denied') {
    return new HttpError(code, `${what}: the host \`${authority}\` is not in \`plugins.${pluginName()}.grants.http\`; add it there to send to it`);
  }
  const detail = (e?.payload ?? e)?.val;
  return new HttpError(code, `${what} failed${typeof detail === 'string' ? `: ${detail}` : ''}`);
}

/**
 * Sends a request to a host granted in `plugins.<name>.grants.http` and returns the whole answer
 * (at most 4 MiB) as `{ status, headers, body, bytes, json() }`: `headers` maps lowercase names to
 * their first value, `body` is the text, `bytes` a Uint8Array. `body` to send is a string, a
 * Uint8Array, or a value sent as JSON. Throws `HttpError` (with its `code`) when the request fails,
 * `InvalidConfig` for a bad URL or header. The host caps each wait at 5 s.
 *
 *     const answer = pilot.httpSend({ method: 'POST', url: 'http://127.0.0.1:9000/hook', body: { text: 'hi' } });
 */
export function httpSend({ method = 'GET', url, headers = {}, body } = {}) {
  const { scheme, authority, path } = splitUrl(String(url));
  const verb = String(method).toUpperCase();
  const what = `${verb} ${url}`;
  const bytes = bodyBytes(body);
  const pairs = Object.entries(headers)
    .filter(([k]) => k.toLowerCase() !== 'content-length')
    .map(([k, v]) => [k.toLowerCase(), encoder.encode(String(v))]);
  const json = body !== undefined && body !== null && typeof body !== 'string' && !(body instanceof Uint8Array);
  if (json && !pairs.some(([k]) => k === 'content-type')) pairs.push(['content-type', encoder.encode('application/json')]);
  // A length, not chunks: simple webhook receivers read `content-length` only.
  if (bytes.length || !['GET', 'HEAD'].includes(verb)) pairs.push(['content-length', encoder.encode(String(bytes.length))]);
  let fields;
  try {
    fields = Fields.fromList(pairs);
  } catch (e) {
    throw new InvalidConfig(`a header of ${what} is ${(e?.payload ?? e)?.tag ?? 'invalid'}; use lowercase names of letters, digits and \`-\`, and leave out \`host\`, \`connection\` and the like`);
  }
  const request = new OutgoingRequest(fields);
  request.setMethod(METHOD_TAGS[verb] ? { tag: METHOD_TAGS[verb] } : { tag: 'other', val: verb });
  request.setScheme(scheme);
  request.setAuthority(authority);
  request.setPathWithQuery(path);
  const out = request.body();
  let pending;
  try {
    pending = sendRequest(request, undefined);
  } catch (e) {
    dispose(out);
    throw httpError(e, what, authority);
  }
  let wrote = null;
  const stream = out.write();
  try {
    for (let at = 0; at < bytes.length; at += 4096) stream.blockingWriteAndFlush(bytes.subarray(at, at + 4096));
  } catch (e) {
    wrote = e;
  } finally {
    dispose(stream);
  }
  try { OutgoingBody.finish(out, undefined); } catch (e) { wrote ??= e; }
  let got;
  while ((got = pending.get()) === undefined) {
    const ready = pending.subscribe();
    ready.block();
    dispose(ready);
  }
  dispose(pending);
  // A refused request closes the body at once: its own error says more than the write's.
  if (got.tag === 'err') throw new HttpError('internal-error', `${what}: the answer was already taken`);
  if (got.val.tag === 'err') throw httpError(got.val.val, what, authority);
  const response = got.val.val;
  if (wrote) {
    dispose(response);
    throw new HttpError('HTTP-request-body-size', `${what}: the body could not be sent whole`);
  }
  const status = response.status();
  const answerFields = response.headers();
  const answerHeaders = {};
  for (const [name, value] of answerFields.entries()) {
    if (!(name in answerHeaders)) answerHeaders[name] = decoder.decode(value);
  }
  dispose(answerFields);
  let data;
  try {
    data = readBody(response);
  } catch (e) {
    throw new HttpError('HTTP-response-body-size', `${what}: answered ${status}, but ${e?.message ?? e}`);
  } finally {
    dispose(response);
  }
  const text = decoder.decode(data);
  return { status, headers: answerHeaders, body: text, bytes: data, json() { return JSON.parse(text || 'null'); } };
}

function event(e) {
  let data = {};
  try { data = JSON.parse(e.json); } catch { /* the host sends JSON */ }
  return { seq: e.seq, atMs: e.atMs, kind: e.kind, process: e.process ?? undefined, json: e.json, data };
}

function asPluginError(e) {
  if (e instanceof PluginError) return e;
  if (e instanceof ControlError) return new PluginError(`${e.kind}: ${e.message}`);
  if (e instanceof HttpError) return new Unavailable(e.message);
  return e;
}

/**
 * Returns `{ controlPlugin, incomingHandler }` for `PluginClass`; export both from the entry module.
 * One `new PluginClass()` lives per instance.
 */
export function exportControl(PluginClass) {
  let plugin = null;
  const get = () => (plugin ??= new PluginClass());
  pluginName = () => String(get().describe().name);
  const controlPlugin = {
    describe() {
      const d = get().describe();
      return { name: String(d.name), version: String(d.version) };
    },
    init(config) {
      const setup = get().init(Params.parse(config, 'config')) ?? {};
      const events = [...(setup.events ?? [])].map(String);
      const unknown = events.filter((k) => !EVENT_KINDS.includes(k));
      if (unknown.length) {
        throw new InvalidConfig(`unknown event kinds ${JSON.stringify(unknown)}; known: ${EVENT_KINDS.join(', ')}`);
      }
      return { events, tickMs: setup.tickMs ?? undefined };
    },
    onEvent(e) {
      try { get().onEvent(event(e)); } catch (err) { throw asPluginError(err); }
    },
    onTick() {
      try { get().onTick(); } catch (err) { throw asPluginError(err); }
    },
  };
  const incomingHandler = {
    async handle(incoming, out) {
      let answer;
      try {
        answer = await get().handle(readRequest(incoming));
      } catch (e) {
        const status = e instanceof Denied || e?.code === 'HTTP-request-denied' ? 403
          : e instanceof ControlError ? 409 : e instanceof HttpError ? 502 : 500;
        answer = text(status, `${e?.message ?? e}\n`);
      }
      dispose(incoming);
      sendResponse(out, answer);
    },
  };
  return { controlPlugin, incomingHandler };
}
