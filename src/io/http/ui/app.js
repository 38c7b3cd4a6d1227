// The skylan controller web UI. Plain JavaScript, no build step, no libraries.
//
// - The API token comes from the URL fragment (#token=...) that `skylan controller ui`
//   prints; it is moved into sessionStorage and removed from the address bar.
// - Every data call is an ordinary API request with X-ZT1-Auth; the page polls every
//   POLL_MS and redraws the lists, but never overwrites a form the user is editing.
// - Data goes into the page only as text (textContent, form values), never as markup.
'use strict';

const TOKEN_KEY = 'skylan.token';
const POLL_MS = 2000;
const COMPILE_DELAY_MS = 300;
const AUDIT_KEEP = 500;
/// A peer heard from within this long counts as online.
const ONLINE_MS = 60000;

const state = {
  token: null,
  status: null,
  networks: [],
  selected: null,
  tab: 'members',
  members: [],
  peers: new Map(),
  joined: new Set(),
  hits: null,
  auditView: false,
  audit: [],
  auditAfter: 0,
  editingMember: null,
  formDirty: false,
  formRevision: -1,
  rulesDirty: false,
  savedRules: '',
  compiled: null,
  compileSeq: 0,
  compileTimer: null,
  pollTimer: null,
};

const $ = (id) => document.getElementById(id);

/// An element with text children; `props` sets properties (className, title, ...).
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) {
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function button(text, onClick, className) {
  const b = el('button', { type: 'button', className: className || '' }, text);
  b.addEventListener('click', onClick);
  return b;
}

class ApiError extends Error {
  constructor(status, body) {
    const msg = body && typeof body === 'object' && body.error ? body.error : String(body || status);
    super(msg);
    this.status = status;
    this.body = body;
  }
}

/// One API request; JSON in and out (a string body is sent as text). Throws ApiError.
async function api(method, path, body) {
  const headers = { 'X-ZT1-Auth': state.token };
  let payload;
  if (typeof body === 'string') {
    payload = body;
    headers['Content-Type'] = 'text/plain; charset=utf-8';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  const r = await fetch(path, {
    method, headers, body: payload, cache: 'no-store', credentials: 'omit',
  });
  const text = await r.text();
  let data = text;
  try { data = text ? JSON.parse(text) : null; } catch (_) { /* Prometheus text */ }
  if (r.status === 401) {
    signOut('The API refused the token (it changes when authtoken.secret is replaced).');
    throw new ApiError(r.status, data);
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// ---- sign-in ----

function readToken() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function signOut(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  clearTimeout(state.pollTimer);
  $('app').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-reason').textContent = reason || 'This page has no API token.';
  $('live').textContent = '';
}

function start() {
  state.token = readToken();
  if (!state.token) {
    signOut('This page has no API token.');
    return;
  }
  $('login').hidden = true;
  $('app').hidden = false;
  $('logout').hidden = false;
  poll();
}

// ---- messages ----

function say(text, isError) {
  const m = $('message');
  m.textContent = text;
  m.className = isError ? 'error' : 'ok';
}

function failed(what) {
  return (e) => say(`${what}: ${e.message}`, true);
}

// ---- polling ----

async function poll() {
  clearTimeout(state.pollTimer);
  try {
    await refresh();
    $('live').textContent = `live, updated ${new Date().toLocaleTimeString()}`;
    $('live').className = 'ok';
  } catch (e) {
    if (!state.token) return;
    $('live').textContent = `cannot reach the node: ${e.message}`;
    $('live').className = 'error';
  }
  // Polls started by a click overlap the timer's: keep one timer.
  clearTimeout(state.pollTimer);
  if (state.token) state.pollTimer = setTimeout(poll, POLL_MS);
}

async function refresh() {
  state.status = await api('GET', '/status');
  $('node-info').textContent = `node ${state.status.address} ${state.status.online ? 'online' : 'offline'}`;
  const nets = await api('GET', '/unstable/controller/network');
  state.networks = nets.data || [];
  renderNetworkList();
  if (state.auditView) await refreshAudit();
  const net = selectedNetwork();
  if (!net) {
    if (state.selected) selectNetwork(null);
    return;
  }
  const [members, peers, joined] = await Promise.all([
    api('GET', `/unstable/controller/network/${net.id}/member`),
    api('GET', '/peer'),
    api('GET', '/network'),
  ]);
  state.members = members.data || [];
  state.peers = new Map(peers.map((p) => [p.address, p]));
  state.joined = new Set(joined.map((n) => n.id || n.nwid));
  if (state.tab === 'rules') state.hits = parseHits(await api('GET', '/metrics'));
  renderNetwork(net);
}

function selectedNetwork() {
  return state.networks.find((n) => n.id === state.selected) || null;
}

// ---- network list and selection ----

function renderNetworkList() {
  const list = $('network-list');
  list.replaceChildren();
  for (const n of state.networks) {
    const meta = n.meta || {};
    const b = button(n.name || '(unnamed)', () => selectNetwork(n.id), n.id === state.selected ? 'selected' : '');
    b.append(el('small', {}, ` ${n.id} · ${meta.authorizedMemberCount ?? 0}/${meta.totalMemberCount ?? 0} members`));
    list.append(el('li', {}, b));
  }
  if (state.networks.length === 0) list.append(el('li', { className: 'note' }, 'No networks yet.'));
  $('empty-hint').hidden = state.auditView || state.selected !== null;
}

function selectNetwork(nwid) {
  state.selected = nwid;
  state.auditView = false;
  state.editingMember = null;
  state.formDirty = false;
  state.formRevision = -1;
  state.rulesDirty = false;
  state.compiled = null;
  state.hits = null;
  $('audit-view').hidden = true;
  $('member-editor').hidden = true;
  $('network-view').hidden = nwid === null;
  say('', false);
  renderNetworkList();
  const net = selectedNetwork();
  if (net) {
    fillNetworkForm(net);
    fillRules(net);
    renderNetwork(net);
  }
  poll();
}

function showTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll('.tab')) {
    b.classList.toggle('selected', b.dataset.tab === tab);
  }
  for (const name of ['members', 'settings', 'rules']) $(`tab-${name}`).hidden = name !== tab;
  if (tab === 'rules') poll();
}

function renderNetwork(net) {
  $('network-title').textContent = net.name || '(unnamed)';
  $('network-id').textContent = net.id;
  renderMembers();
  if (!state.formDirty && net.revision !== state.formRevision) fillNetworkForm(net);
  if (net.revision !== state.formRevision) {
    $('network-form-note').textContent = 'This network was changed elsewhere; saving overwrites those fields.';
  }
  if (!state.rulesDirty && (net.rulesSource || '') !== state.savedRules) fillRules(net);
  renderCompiled();
}

// ---- members ----

function memberVersion(m, peer) {
  if (m.vMajor >= 0) return `${m.vMajor}.${m.vMinor}.${m.vRev}`;
  if (peer && peer.version && peer.version !== '-') return peer.version;
  return 'unknown';
}

function agoText(ms) {
  if (ms < 0) return 'just now';
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

/// This node's view of a member: online, link, latency, last seen ("unknown" without a
/// peer entry; the node itself is "this node").
function liveView(address) {
  if (state.status && address === state.status.address) {
    return { online: 'this node', link: '-', latency: '-', seen: 'now' };
  }
  const p = state.peers.get(address);
  if (!p) return { online: 'unknown', link: 'unknown', latency: 'unknown', seen: 'unknown' };
  const clock = state.status ? state.status.clock : Date.now();
  const heard = p.lastReceive > 0;
  const ago = clock - p.lastReceive;
  return {
    online: heard && ago < ONLINE_MS ? 'online' : 'offline',
    link: p.link === 'NONE' ? 'no path' : p.link,
    latency: p.latency >= 0 ? `${p.latency} ms` : 'unknown',
    seen: heard ? agoText(ago) : 'never',
  };
}

function renderMembers() {
  const body = $('members').tBodies[0];
  body.replaceChildren();
  for (const m of state.members) {
    const live = liveView(m.address);
    const actions = el('td', { className: 'actions' });
    actions.append(
      m.authorized
        ? button('Deauthorize', () => setMember(m.address, { authorized: false }, 'deauthorized'))
        : button('Authorize', () => setMember(m.address, { authorized: true }, 'authorized')),
      button('Edit', () => editMember(m)),
      button('Delete', () => deleteMember(m.address), 'danger'),
    );
    const row = el('tr', { className: m.authorized ? 'authorized' : 'unauthorized' },
      el('td', {}, el('code', {}, m.address)),
      el('td', {}, m.name || ''),
      el('td', { className: 'auth' }, m.authorized ? 'yes' : 'no'),
      el('td', {}, live.online),
      el('td', {}, live.link),
      el('td', {}, live.latency),
      el('td', {}, live.seen),
      el('td', {}, memberVersion(m, state.peers.get(m.address))),
      el('td', {}, (m.ipAssignments || []).join(', ')),
      el('td', {}, m.activeBridge ? 'yes' : 'no'),
      actions);
    row.dataset.address = m.address;
    body.append(row);
  }
  if (state.members.length === 0) {
    body.append(el('tr', {}, el('td', { colSpan: 11, className: 'note' }, 'No members yet: nodes that join appear here, or add one by address.')));
  }
}

async function setMember(address, fields, verb, query) {
  try {
    await api('POST', `/controller/network/${state.selected}/member/${address}${query || ''}`, fields);
    say(`Member ${address} ${verb}.`, false);
    await poll();
  } catch (e) {
    failed(`Member ${address} not changed`)(e);
  }
}

async function deleteMember(address) {
  if (!confirm(`Delete member ${address}? Its addresses are freed and it loses access.`)) return;
  try {
    await api('DELETE', `/controller/network/${state.selected}/member/${address}`);
    if (state.editingMember === address) closeMemberEditor();
    say(`Member ${address} deleted.`, false);
    await poll();
  } catch (e) {
    failed(`Member ${address} not deleted`)(e);
  }
}

function editMember(m) {
  state.editingMember = m.address;
  $('edit-member-address').textContent = m.address;
  $('member-name').value = m.name || '';
  $('member-ips').value = (m.ipAssignments || []).join(', ');
  $('member-tags').value = (m.tags || []).map(([id, v]) => `${id}=${v}`).join(', ');
  $('member-bridge').checked = !!m.activeBridge;
  $('member-no-auto').checked = !!m.noAutoAssignIps;
  $('member-outside-pools').checked = false;
  $('member-editor').hidden = false;
}

function closeMemberEditor() {
  state.editingMember = null;
  $('member-editor').hidden = true;
}

function words(text) {
  return text.split(/[\s,]+/).filter((w) => w !== '');
}

function parseTags(text) {
  return words(text).map((w) => {
    const m = /^(\d+)=(\d+)$/.exec(w);
    if (!m) throw new Error(`tag "${w}" is not id=value (two numbers)`);
    return [Number(m[1]), Number(m[2])];
  });
}

async function saveMember(ev) {
  ev.preventDefault();
  const address = state.editingMember;
  let fields;
  try {
    fields = {
      name: $('member-name').value,
      ipAssignments: words($('member-ips').value),
      tags: parseTags($('member-tags').value),
      activeBridge: $('member-bridge').checked,
      noAutoAssignIps: $('member-no-auto').checked,
    };
  } catch (e) {
    failed('Member not saved')(e);
    return;
  }
  const query = $('member-outside-pools').checked ? '?allowOutsidePools=true' : '';
  await setMember(address, fields, 'saved', query);
}

async function addMember(ev) {
  ev.preventDefault();
  const address = $('new-member-address').value.trim().toLowerCase();
  if (!/^[0-9a-f]{10}$/.test(address)) {
    say('A member address is 10 hex digits (as `skylan info` shows it).', true);
    return;
  }
  try {
    await api('POST', `/controller/network/${state.selected}/member/${address}`, {});
    $('new-member-address').value = '';
    say(`Member ${address} added (not authorized yet).`, false);
    await poll();
  } catch (e) {
    failed(`Member ${address} not added`)(e);
  }
}

// ---- network settings ----

function fillNetworkForm(net) {
  $('net-name').value = net.name || '';
  $('net-private').checked = !!net.private;
  $('net-v4-auto').checked = !!(net.v4AssignMode && net.v4AssignMode.zt);
  $('net-pools').value = (net.ipAssignmentPools || []).map((p) => `${p.ipRangeStart}-${p.ipRangeEnd}`).join('\n');
  $('net-routes').value = (net.routes || []).map((r) => (r.via ? `${r.target} via ${r.via}` : r.target)).join('\n');
  $('net-allow-default').checked = false;
  $('net-dns-domain').value = (net.dns && net.dns.domain) || '';
  $('net-dns-servers').value = ((net.dns && net.dns.servers) || []).join(', ');
  $('net-mtu').value = net.mtu;
  $('net-multicast').value = net.multicastLimit;
  $('net-broadcast').checked = !!net.enableBroadcast;
  $('network-form-note').textContent = '';
  state.formDirty = false;
  state.formRevision = net.revision;
}

function lines(text) {
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

function parsePools(text) {
  return lines(text).map((l) => {
    const m = /^(\S+)\s*-\s*(\S+)$/.exec(l);
    if (!m) throw new Error(`pool "${l}" is not START-END`);
    return { ipRangeStart: m[1], ipRangeEnd: m[2] };
  });
}

function parseRoutes(text) {
  return lines(text).map((l) => {
    const m = /^(\S+?)(?:(?:\s+via\s+|\s*,\s*|\s+)(\S+))?$/.exec(l);
    if (!m) throw new Error(`route "${l}" is not TARGET or TARGET via GATEWAY`);
    return { target: m[1], via: m[2] || null };
  });
}

function integer(id, what) {
  const v = Number($(id).value);
  if (!Number.isInteger(v)) throw new Error(`${what} must be a whole number`);
  return v;
}

async function saveNetwork(ev) {
  ev.preventDefault();
  let fields;
  try {
    fields = {
      name: $('net-name').value,
      private: $('net-private').checked,
      v4AssignMode: { zt: $('net-v4-auto').checked },
      ipAssignmentPools: parsePools($('net-pools').value),
      routes: parseRoutes($('net-routes').value),
      dns: { domain: $('net-dns-domain').value.trim(), servers: words($('net-dns-servers').value) },
      mtu: integer('net-mtu', 'MTU'),
      multicastLimit: integer('net-multicast', 'Multicast limit'),
      enableBroadcast: $('net-broadcast').checked,
    };
  } catch (e) {
    failed('Settings not saved')(e);
    return;
  }
  const query = $('net-allow-default').checked ? '?allowDefaultRoute=true' : '';
  try {
    const net = await api('POST', `/controller/network/${state.selected}${query}`, fields);
    fillNetworkForm(net);
    say(`Settings saved (revision ${net.revision}).`, false);
    await poll();
  } catch (e) {
    failed('Settings not saved')(e);
  }
}

async function deleteNetwork() {
  const net = selectedNetwork();
  if (!net || !confirm(`Delete network ${net.id} (${net.name}) and all its members?`)) return;
  try {
    await api('DELETE', `/controller/network/${net.id}`);
    say(`Network ${net.id} deleted.`, false);
    selectNetwork(null);
  } catch (e) {
    failed('Network not deleted')(e);
  }
}

async function createNetwork(ev) {
  ev.preventDefault();
  try {
    const net = await api('POST', '/controller/network', { name: $('new-network-name').value.trim() });
    $('new-network-name').value = '';
    await refresh();
    selectNetwork(net.id);
    showTab('settings');
    say(`Network ${net.id} created.`, false);
  } catch (e) {
    failed('Network not created')(e);
  }
}

// ---- rules ----

function fillRules(net) {
  state.savedRules = net.rulesSource || '';
  $('rules-source').value = state.savedRules;
  state.rulesDirty = false;
  $('rules-saved').textContent = state.savedRules === ''
    ? `No rules source saved; the network has ${(net.rules || []).length} rule entries set as JSON.`
    : 'Saved.';
  compileSoon(0);
}

function compileSoon(delay) {
  clearTimeout(state.compileTimer);
  state.compileTimer = setTimeout(compileNow, delay);
}

async function compileNow() {
  const seq = ++state.compileSeq;
  const source = $('rules-source').value;
  const status = $('rules-status');
  try {
    const compiled = await api('POST', '/controller/rules/compile', source);
    if (seq !== state.compileSeq) return;
    state.compiled = { source, result: compiled };
    status.textContent = `Compiles: ${compiled.origins.length} rules, ${compiled.rules.length} entries, ${compiled.capabilities.length} capabilities, ${compiled.tags.length} tags.`;
    status.className = 'ok';
    $('rules-error').hidden = true;
    renderWarnings(compiled.warnings);
  } catch (e) {
    if (seq !== state.compileSeq) return;
    state.compiled = null;
    status.className = 'error';
    renderWarnings([]);
    if (e.body && e.body.line) {
      status.textContent = `Error at line ${e.body.line}:${e.body.column}: ${e.body.message}`;
      showErrorLine(source, e.body.line, e.body.column);
    } else {
      status.textContent = `Cannot compile: ${e.message}`;
      $('rules-error').hidden = true;
    }
  }
  renderCompiled();
}

/// The offending line with a caret under the column.
function showErrorLine(source, line, column) {
  const text = source.split('\n')[line - 1] || '';
  const pre = $('rules-error');
  pre.textContent = `${String(line).padStart(4)} | ${text}\n     | ${' '.repeat(Math.max(column - 1, 0))}^`;
  pre.hidden = false;
}

function renderWarnings(warnings) {
  const list = $('rules-warnings');
  list.replaceChildren();
  for (const w of warnings) list.append(el('li', { className: 'warning' }, `Warning at line ${w.line}:${w.column}: ${w.message}`));
}

/// Rule hits from Prometheus text: `skylan_rule_hits` or `skylan_rule_hits_total`
/// `{network, table, rule}` → Map("nwid/table/rule" → count).
function parseHits(text) {
  const hits = new Map();
  if (typeof text !== 'string') return hits;
  for (const line of text.split('\n')) {
    const m = /^skylan_rule_hits(?:_total)?\{([^}]*)\}\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of m[1].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    hits.set(`${labels.network}/${labels.table}/${labels.rule}`, Number(m[2]));
  }
  return hits;
}

function renderCompiled() {
  const body = $('compiled-rules').tBodies[0];
  body.replaceChildren();
  const note = $('hits-note');
  const c = state.compiled;
  if (!c) {
    note.textContent = '';
    return;
  }
  const nwid = state.selected;
  const member = state.joined.has(nwid);
  const current = c.source === state.savedRules;
  const showHits = member && current && state.hits !== null;
  const hit = (rule) => {
    if (!showHits) return '–';
    return String(state.hits.get(`${nwid}/base/${rule}`) || 0);
  };
  c.result.origins.forEach((o, i) => {
    body.append(el('tr', {}, el('td', {}, i), el('td', {}, o.line), el('td', {}, el('code', {}, o.text)), el('td', { className: 'hits' }, hit(i))));
  });
  body.append(el('tr', { className: 'note' }, el('td', {}, ''), el('td', {}, ''), el('td', {}, 'no rule matched: drop'), el('td', { className: 'hits' }, hit('default'))));
  if (!member) {
    note.textContent = 'Hit counts: not available here. This node is not a member of this network, and hits are counted on the members that evaluate the rules (see skylan_rule_hits in a member\'s /metrics).';
  } else if (!current) {
    note.textContent = 'Hit counts are for the saved rules; save these to count them.';
  } else {
    note.textContent = 'Hit counts: frames this node (a member) decided with each rule, since it last received the rules.';
  }
}

async function saveRules() {
  const source = $('rules-source').value;
  try {
    const net = await api('POST', `/controller/network/${state.selected}`, { rulesSource: source });
    state.savedRules = net.rulesSource;
    state.rulesDirty = false;
    $('rules-saved').textContent = `Saved (revision ${net.revision}).`;
    say('Rules saved.', false);
    renderCompiled();
    await poll();
  } catch (e) {
    const where = e.body && e.body.line ? ` (line ${e.body.line}:${e.body.column})` : '';
    failed(`Rules not saved${where}`)(e);
  }
}

// ---- audit log ----

function showAudit() {
  state.auditView = true;
  $('network-view').hidden = true;
  $('audit-view').hidden = false;
  $('empty-hint').hidden = true;
  poll();
}

async function refreshAudit() {
  for (;;) {
    const page = await api('GET', `/controller/audit?after=${state.auditAfter}&limit=1000`);
    if (page.length === 0) break;
    state.audit.push(...page);
    state.auditAfter = page[page.length - 1].seq;
    if (page.length < 1000) break;
  }
  if (state.audit.length > AUDIT_KEEP) state.audit.splice(0, state.audit.length - AUDIT_KEEP);
  renderAudit();
}

function short(v) {
  const s = JSON.stringify(v);
  return s === undefined ? 'none' : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function renderAudit() {
  const body = $('audit').tBodies[0];
  body.replaceChildren();
  const only = $('audit-selected-only').checked ? state.selected : null;
  for (const e of [...state.audit].reverse()) {
    if (only && e.nwid !== only) continue;
    const changes = el('td', { className: 'changes' });
    const fields = Object.entries(e.changes || {});
    if (/\.create$/.test(e.action || '')) {
      changes.append(el('div', {}, `created with ${fields.length} fields`));
    } else {
      for (const [field, c] of fields) {
        changes.append(el('div', {}, `${field}: ${short(c.before)} → ${short(c.after)}`));
      }
    }
    body.append(el('tr', {},
      el('td', {}, e.seq),
      el('td', {}, new Date(e.time).toISOString().replace('T', ' ').slice(0, 19)),
      el('td', {}, e.actor),
      el('td', {}, e.action),
      el('td', {}, el('code', {}, e.nwid || '')),
      el('td', {}, el('code', {}, e.member || '')),
      changes));
  }
}

// ---- wiring ----

document.addEventListener('DOMContentLoaded', () => {
  $('logout').addEventListener('click', () => signOut('You forgot the token; open a new login link to come back.'));
  $('create-network').addEventListener('submit', createNetwork);
  $('show-audit').addEventListener('click', showAudit);
  $('audit-selected-only').addEventListener('change', renderAudit);
  for (const b of document.querySelectorAll('.tab')) b.addEventListener('click', () => showTab(b.dataset.tab));
  $('add-member').addEventListener('submit', addMember);
  $('member-editor').addEventListener('submit', saveMember);
  $('member-cancel').addEventListener('click', closeMemberEditor);
  $('network-form').addEventListener('submit', saveNetwork);
  $('network-form').addEventListener('input', () => { state.formDirty = true; });
  $('delete-network').addEventListener('click', deleteNetwork);
  $('rules-source').addEventListener('input', () => {
    state.rulesDirty = true;
    $('rules-saved').textContent = 'Not saved.';
    compileSoon(COMPILE_DELAY_MS);
  });
  $('save-rules').addEventListener('click', saveRules);
  window.addEventListener('hashchange', start);
  showTab('members');
  start();
});
