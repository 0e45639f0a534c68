// The pilot-host dashboard: reads the control API with a bearer token and stays live through the
// event stream (GET /v1/events?stats=true). No polling: the page fetches again only when an event
// says something changed.
'use strict';

const $ = (sel) => document.querySelector(sel);
const HISTORY = 60;
const state = { token: '', processes: [], history: {}, selected: null, logAbort: null, refetch: null };

function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem('pilot-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname);
  }
  return sessionStorage.getItem('pilot-token') || '';
}

function headers() {
  return state.token ? { Authorization: 'Bearer ' + state.token } : {};
}

async function api(method, path) {
  const res = await fetch(path, { method, headers: headers() });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) { showLogin(); throw new Error(body.error || 'unauthorized'); }
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

// Reads server-sent events from a fetch (EventSource cannot send the bearer token).
async function sse(path, signal, onMessage) {
  const res = await fetch(path, { headers: headers(), signal });
  if (res.status === 401) { showLogin(); throw new Error('unauthorized'); }
  if (!res.ok) throw new Error('HTTP ' + res.status);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onMessage(event, data.join('\n'));
    }
  }
}

function toast(text) {
  const t = $('#toast');
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

function uptime(s) {
  s = Math.floor(s);
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h' + String(Math.floor(s % 3600 / 60)).padStart(2, '0') + 'm';
  return Math.floor(s / 86400) + 'd' + String(Math.floor(s % 86400 / 3600)).padStart(2, '0') + 'h';
}

function bytes(b) {
  if (b < 1048576) return (b / 1024).toFixed(0) + ' KiB';
  if (b < 1073741824) return (b / 1048576).toFixed(1) + ' MiB';
  return (b / 1073741824).toFixed(1) + ' GiB';
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function spark(values) {
  const s = svg('svg', { class: 'spark', width: 60, height: 16, viewBox: '0 0 60 16' });
  if (values.length > 0) {
    const max = Math.max(...values) || 1;
    if (values.length === 1) values = [values[0], values[0]];
    // The latest sample at the right edge.
    const pts = values.map((v, i) => `${(60 - (values.length - 1 - i) * 60 / (HISTORY - 1)).toFixed(1)},${(15 - v / max * 14).toFixed(1)}`);
    s.append(svg('polyline', { points: pts.join(' ') }));
  }
  return s;
}

// Rows are made once per process and then updated in place, so a button under the pointer stays
// the same element while samples arrive.
function row(p) {
  const act = (action) => el('button', { 'data-action': action, onclick: (e) => act_on(e.target, p.name, action) }, action[0].toUpperCase() + action.slice(1));
  return el('tr', { 'data-process': p.name },
    el('td', { class: 'name', onclick: () => follow(p.name) }, p.name),
    el('td', {}, el('span', { class: 'state' })),
    el('td', { class: 'num pid' }),
    el('td', { class: 'num uptime' }),
    el('td', { class: 'num restarts' }),
    el('td', { class: 'num cpu' }, el('span'), spark([])),
    el('td', { class: 'num rss' }, el('span'), spark([])),
    el('td', {}, act('start'), act('stop'), act('restart')));
}

function renderProcesses() {
  const body = $('#processes tbody');
  const names = state.processes.map((p) => p.name).join('\n');
  if (body.dataset.names !== names) {
    body.replaceChildren(...state.processes.map(row));
    body.dataset.names = names;
  }
  state.processes.forEach((p, i) => {
    const tr = body.children[i];
    const h = state.history[p.name] || { cpu: [], rss: [] };
    const running = p.pid != null;
    tr.className = p.name === state.selected ? 'selected' : '';
    const badge = tr.querySelector('.state');
    badge.className = 'state ' + p.state;
    badge.textContent = p.state;
    badge.title = p.reason || p.last_exit || '';
    tr.querySelector('.pid').textContent = running ? p.pid : '-';
    tr.querySelector('.uptime').textContent = running ? uptime(p.uptime_sec) : '-';
    tr.querySelector('.restarts').textContent = p.restarts;
    const cpu = tr.querySelector('.cpu');
    cpu.firstChild.textContent = running ? p.cpu_percent.toFixed(1) + '%' : '-';
    cpu.lastChild.replaceWith(spark(h.cpu));
    const rss = tr.querySelector('.rss');
    rss.firstChild.textContent = running && p.rss_bytes > 0 ? bytes(p.rss_bytes) : '-';
    rss.lastChild.replaceWith(spark(h.rss));
  });
}

async function act_on(button, name, action) {
  button.disabled = true;
  try {
    await api('POST', `/v1/processes/${encodeURIComponent(name)}/${action}`);
  } catch (e) {
    toast(`${action} ${name}: ${e.message}`);
  } finally {
    button.disabled = false;
    refetchSoon();
  }
}

function renderGraph() {
  const g = $('#graph');
  const byName = Object.fromEntries(state.processes.map((p) => [p.name, p]));
  const level = {};
  const depth = (n, seen = new Set()) => {
    if (level[n] != null) return level[n];
    if (seen.has(n)) return 0;
    seen.add(n);
    const deps = (byName[n] && byName[n].dependencies) || [];
    return (level[n] = deps.length ? 1 + Math.max(...deps.map((d) => depth(d, seen))) : 0);
  };
  state.processes.forEach((p) => depth(p.name));
  const columns = [];
  state.processes.forEach((p) => (columns[level[p.name]] = columns[level[p.name]] || []).push(p.name));
  const W = 110, H = 34, GX = 40, GY = 14;
  const pos = {};
  columns.forEach((names, x) => names.forEach((n, y) => { pos[n] = { x: 10 + x * (W + GX), y: 10 + y * (H + GY) }; }));
  const width = 20 + columns.length * (W + GX);
  const height = 20 + Math.max(1, ...columns.map((c) => c.length)) * (H + GY);
  g.setAttribute('viewBox', `0 0 ${width} ${height}`);
  g.style.height = Math.min(height, 400) + 'px';
  const defs = svg('defs');
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto' });
  marker.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#999' }));
  defs.append(marker);
  const parts = [defs];
  state.processes.forEach((p) => (p.dependencies || []).forEach((d) => {
    if (!pos[d]) return;
    parts.push(svg('line', { x1: pos[d].x + W, y1: pos[d].y + H / 2, x2: pos[p.name].x, y2: pos[p.name].y + H / 2 }));
  }));
  const fill = { ready: '#d4efdc', running: '#d4efdc', failed: '#f6d5d1', skipped: '#f6d5d1', starting: '#f8ebd2', stopping: '#f8ebd2', backing_off: '#f8ebd2' };
  state.processes.forEach((p) => {
    const { x, y } = pos[p.name];
    const node = svg('g', { 'data-node': p.name });
    node.append(svg('rect', { x, y, width: W, height: H, fill: fill[p.state] || '#e4e4e0' }));
    const t = svg('text', { x: x + W / 2, y: y + H / 2 });
    t.textContent = p.name;
    node.append(t);
    parts.push(node);
  });
  g.replaceChildren(...parts);
}

async function refetch() {
  state.processes = await api('GET', '/v1/processes');
  renderProcesses();
  renderGraph();
}

function refetchSoon() {
  if (state.refetch) return;
  state.refetch = setTimeout(() => {
    state.refetch = null;
    refetch().catch((e) => toast(e.message));
  }, 30);
}

async function plugins() {
  const list = await api('GET', '/v1/plugins');
  $('#plugins tbody').replaceChildren(...(list.length ? list.map((p) => el('tr', {},
    el('td', {}, p.name), el('td', {}, p.version), el('td', { class: 'num' }, p.calls_total),
    el('td', { class: 'num' }, p.failures_total),
    el('td', {}, el('span', { class: 'state ' + (p.quarantined ? 'failed' : 'running'), title: p.last_error || '' }, p.quarantined ? 'quarantined' : 'ok'))))
    : [el('tr', {}, el('td', { colspan: 5 }, 'no plugins'))]));
}

function describe(ev) {
  const t = new Date(ev.at_ms).toLocaleTimeString();
  const rest = Object.entries(ev).filter(([k]) => !['seq', 'at_ms', 'type', 'process'].includes(k))
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(2) : v}`).join(' ');
  return `${t} ${ev.type}${ev.process ? ' ' + ev.process : ''} ${rest}`;
}

function onEvent(event, data) {
  const ev = JSON.parse(data);
  if (ev.type === 'stats') {
    for (const s of ev.processes) {
      const h = state.history[s.name] = state.history[s.name] || { cpu: [], rss: [] };
      h.cpu.push(s.cpu_percent); h.rss.push(s.rss_bytes);
      if (h.cpu.length > HISTORY) { h.cpu.shift(); h.rss.shift(); }
    }
    state.processes = ev.processes;
    renderProcesses();
    return;
  }
  const list = $('#events');
  list.prepend(el('li', {}, ev.type === 'missed' ? `${ev.count} events missed` : describe(ev)));
  while (list.children.length > 200) list.lastChild.remove();
  if (ev.type === 'plugin') plugins().catch(() => {});
  else refetchSoon();
}

async function live() {
  let delay = 250;
  for (;;) {
    try {
      $('#link').textContent = 'live';
      $('#link').className = 'link up';
      await sse('/v1/events?stats=true', undefined, onEvent);
      delay = 250;
    } catch (e) {
      if (e.message === 'unauthorized') return;
    }
    $('#link').textContent = 'reconnecting…';
    $('#link').className = 'link down';
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 5000);
    refetch().catch(() => {});
  }
}

function follow(name) {
  if (state.logAbort) state.logAbort.abort();
  state.selected = name;
  state.logAbort = new AbortController();
  $('#log-name').textContent = name;
  const log = $('#log');
  log.replaceChildren();
  renderProcesses();
  sse(`/v1/processes/${encodeURIComponent(name)}/logs?tail=200&follow=true`, state.logAbort.signal, (event, data) => {
    const line = event === 'missed' ? { stream: 'stderr', text: `[${JSON.parse(data).count} lines missed]` } : JSON.parse(data);
    const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(el('div', { class: line.stream }, line.text));
    while (log.children.length > 500) log.firstChild.remove();
    if (stick) log.scrollTop = log.scrollHeight;
  }).catch((e) => { if (e.name !== 'AbortError') toast(`output of ${name}: ${e.message}`); });
}

function showLogin() {
  $('#main').hidden = true;
  $('#login').hidden = false;
}

async function start() {
  state.token = takeToken();
  try {
    await refetch();
  } catch (e) {
    if (e.message !== 'unauthorized') toast(e.message);
    return;
  }
  $('#login').hidden = true;
  $('#main').hidden = false;
  api('GET', '/v1/manifest').then((m) => { $('#source').textContent = `${m.processes.length} processes`; }).catch(() => {});
  plugins().catch((e) => toast(e.message));
  if (state.processes.length) follow(state.processes[0].name);
  live();
}

$('#login').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem('pilot-token', $('#token').value.trim());
  start();
});

start();
