/**
 * The operator console (`/ops`): the cluster's nodes and rooms from the admin API, refreshed every
 * few seconds without reloading, one room's participants and media health, a node's drain and a
 * room's close after a confirmation, and what is degraded (Redis, the backend's circuit, worker
 * restarts, dead or overdue nodes). The admin token lives in this tab's session storage only.
 * Plain DOM, no framework: every value is written as text, never as HTML.
 */
import type { AdminNode, AdminRoom, AdminRoomDetail } from '../src/http/admin-service.js';

const TOKEN_KEY = 'trading-room.admin-token';
const REFRESH_MS = Math.max(500, Number(new URLSearchParams(location.search).get('refreshMs') ?? 2000));
const ROOMS_PER_PAGE = 50;

const $ = <T extends HTMLElement>(id: string): T => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element as T;
};

/** The admin API refused the token (or is switched off). */
class AuthError extends Error {}

interface NodesAnswer {
  nodes: AdminNode[];
  unreachableNodes: string[];
}
interface RoomsAnswer {
  rooms: AdminRoom[];
  nextCursor: string | null;
  unreachableNodes: string[];
}

let token = sessionStorage.getItem(TOKEN_KEY) ?? '';
let timer: number | undefined;
let openRoomId: string | undefined;
let roomsCursor: string | undefined;
let nextCursor: string | undefined;
let refreshing = false;
/** A refresh was asked for while one was under way (after an action, say): run another when it ends. */
let refreshAgain = false;
/** The nodes of the last refresh, to show an action's effect before the next one. */
let lastNodes: NodesAnswer | undefined;
/**
 * Drains this console started, by node id, with the instance drained: that instance shows as
 * draining from the answer to the request on, even in a refresh that raced it, and even when it
 * finishes draining and leaves before a refresh sees its heartbeat say so.
 */
const drainsStarted = new Map<string, { instanceId: string; deadline: number | undefined }>();

async function api<T>(path: string, method: 'GET' | 'POST' = 'GET'): Promise<T> {
  const response = await fetch(path, { method, headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
  const body = (await response.json().catch(() => ({}))) as T & { error?: { code: string; message: string } };
  if (response.status === 401 || response.status === 403) {
    throw new AuthError(body.error?.message ?? `the admin API answered ${response.status}`);
  }
  if (!response.ok) throw new Error(`${method} ${path}: ${body.error?.message ?? response.statusText}`);
  return body;
}

/** Creates an element with text children (strings become text nodes) and attributes. */
function el(tag: string, attributes: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElement {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

function badge(text: string, level: 'ok' | 'warn' | 'bad' | 'plain' = 'plain'): HTMLElement {
  return el('span', { class: `badge ${level}` }, text);
}

function button(label: string, onClick: () => void, attributes: Record<string, string> = {}): HTMLElement {
  const b = el('button', { type: 'button', ...attributes }, label);
  b.addEventListener('click', onClick);
  return b;
}

function row(cells: (Node | string)[], attributes: Record<string, string> = {}): HTMLElement {
  return el('tr', attributes, ...cells.map((c) => el('td', {}, c)));
}

function bitrate(bps: number | undefined): string {
  if (bps === undefined) return '–';
  if (bps >= 1_000_000) return `${(bps / 1_000_000).toFixed(1)} Mb/s`;
  return `${Math.round(bps / 1000)} kb/s`;
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A room's unacknowledged webhooks: how many and how long the oldest waits ('off': webhooks are off). */
function webhookBacklog(backlog: AdminRoom['webhookBacklog'] | undefined): Node | string {
  if (!backlog) return 'off';
  if (backlog.pending === 0) return '0';
  const text = `${backlog.pending} · oldest ${duration(backlog.oldestAgeMs)}`;
  const element = badge(text, backlog.oldestAgeMs > 300_000 ? 'bad' : backlog.oldestAgeMs > 30_000 ? 'warn' : 'plain');
  if (backlog.oldestWebhookId) element.title = `${backlog.oldestEvent ?? ''} ${backlog.oldestWebhookId}`.trim();
  return element;
}

function time(epochMs: number | undefined): string {
  return epochMs === undefined ? '–' : new Date(epochMs).toLocaleTimeString();
}

/** Asks for a confirmation in the page's dialog; resolves true when confirmed. */
function confirmAction(text: string): Promise<boolean> {
  const dialog = $<HTMLDialogElement>('confirm');
  $('confirm-text').textContent = text;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) =>
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }),
  );
}

function showError(message: string | undefined): void {
  const box = $('error');
  box.textContent = message ?? '';
  box.hidden = message === undefined;
}

function nodeState(n: AdminNode): HTMLElement {
  if (!n.alive) return badge('down', 'bad');
  if (n.drainOverdue) return badge('draining (overdue)', 'bad');
  if (n.state === 'draining') return badge('draining', 'warn');
  return badge('running', 'ok');
}

/** The node as this console knows it: draining once a drain it started was accepted. */
function withDrainStarted(n: AdminNode): AdminNode {
  const started = drainsStarted.get(n.nodeId);
  if (!started || started.instanceId !== n.instanceId || n.state !== 'running') return n;
  return { ...n, state: 'draining', drainDeadline: n.drainDeadline ?? started.deadline };
}

function renderNodes(answer: NodesAnswer): string[] {
  lastNodes = answer;
  for (const [nodeId, started] of drainsStarted) {
    if (!answer.nodes.some((n) => n.nodeId === nodeId && n.instanceId === started.instanceId))
      drainsStarted.delete(nodeId);
  }
  const warnings: string[] = [];
  const rows = answer.nodes.map(withDrainStarted).map((n) => {
    const d = n.detail;
    if (!n.alive) warnings.push(`Node ${n.nodeId} is down (last heartbeat ${time(n.heartbeatAt)}).`);
    if (n.drainOverdue) warnings.push(`Node ${n.nodeId} is still draining past its deadline.`);
    if (d && d.redis.state !== 'ok') warnings.push(`Node ${n.nodeId}: Redis ${d.redis.state}.`);
    if (d?.backend && d.backend.circuit !== 'closed')
      warnings.push(`Node ${n.nodeId}: backend circuit ${d.backend.circuit}.`);
    if (d && d.media.workerRestarts > 0)
      warnings.push(`Node ${n.nodeId}: ${d.media.workerRestarts} media worker restart(s).`);
    if (d?.media.state === 'unavailable') warnings.push(`Node ${n.nodeId}: media unavailable.`);
    if (d?.openFds !== undefined && d.maxFds !== undefined && d.openFds > 0.8 * d.maxFds) {
      warnings.push(`Node ${n.nodeId}: ${d.openFds} of ${d.maxFds} file descriptors open.`);
    }
    const workers = d
      ? d.media.workers.length === 0
        ? d.media.state
        : d.media.workers.map((w) => (w.cpu === undefined ? '·' : `${Math.round(w.cpu * 100)}%`)).join(' ')
      : '–';
    const drain =
      n.alive && n.state === 'running'
        ? button('Drain', () => void drainNode(n.nodeId), { class: 'danger', 'data-drain': n.nodeId })
        : '';
    return row(
      [
        n.nodeId,
        nodeState(n),
        String(n.connections),
        String(n.rooms),
        workers,
        d ? badge(String(d.media.workerRestarts), d.media.workerRestarts > 0 ? 'warn' : 'plain') : '–',
        d ? badge(d.redis.state, d.redis.state === 'ok' ? 'ok' : 'bad') : '–',
        d?.backend ? badge(d.backend.circuit, d.backend.circuit === 'closed' ? 'ok' : 'bad') : 'none',
        d?.openFds === undefined ? '–' : `${d.openFds} / ${d.maxFds ?? '?'}`,
        n.state === 'draining' ? time(d?.drainDeadline ?? n.drainDeadline) : '–',
        drain,
      ],
      { 'data-node': n.nodeId, 'data-state': n.alive ? n.state : 'down' },
    );
  });
  $('nodes')
    .querySelector('tbody')
    ?.replaceChildren(...rows);
  for (const id of answer.unreachableNodes) warnings.push(`Node ${id} did not answer the console.`);
  return warnings;
}

function renderRooms(answer: RoomsAnswer): void {
  const rows = answer.rooms.map((r) => {
    const byNode = Object.entries(r.participantsByNode)
      .map(([node, count]) => `${node}: ${count}`)
      .join(', ');
    const backlog = webhookBacklog(r.webhookBacklog);
    return row(
      [
        r.roomId,
        String(r.participants),
        `${r.participantsByRole.presenter}/${r.participantsByRole.moderator}/${r.participantsByRole.trader}`,
        byNode,
        String(r.producers),
        bitrate(r.publishBitrate),
        String(r.chatMessagesPerMinute),
        String(r.alertsPerMinute),
        backlog,
        el(
          'span',
          {},
          button('Open', () => void openRoom(r.roomId), { 'data-open': r.roomId }),
          ' ',
          button('Close', () => void closeRoom(r.roomId), { class: 'danger', 'data-close': r.roomId }),
        ),
      ],
      { 'data-room': r.roomId },
    );
  });
  $('rooms')
    .querySelector('tbody')
    ?.replaceChildren(...rows);
  nextCursor = answer.nextCursor ?? undefined;
  $<HTMLButtonElement>('next-page').disabled = nextCursor === undefined;
  $<HTMLButtonElement>('first-page').disabled = roomsCursor === undefined;
  $('rooms-page').textContent = answer.rooms.length === 0 ? '(none)' : `(${answer.rooms.length} on this page)`;
}

function renderRoom(room: AdminRoomDetail): void {
  $('room-id').textContent = room.roomId;
  $('room-summary').textContent =
    `${room.participants} participants on ${room.nodes.join(', ')} · ${room.media.producers.length} producers · ` +
    `${room.media.consumers.length} consumers · seq ${room.lastSeq}` +
    (room.unreachableNodes.length ? ` · no answer from ${room.unreachableNodes.join(', ')}` : '');
  const participants = room.participantDetails.map((p) =>
    row(
      [
        el('span', { title: p.participantId }, p.userId),
        p.name,
        p.role,
        p.nodeId,
        p.connected === undefined ? '?' : p.connected ? badge('yes', 'ok') : badge('resuming', 'warn'),
        duration(p.connectionAgeMs),
      ],
      { 'data-participant': p.participantId },
    ),
  );
  $('participants')
    .querySelector('tbody')
    ?.replaceChildren(...participants);
  const loss = (fraction: number | undefined, lost: number | undefined): HTMLElement | string => {
    if (fraction === undefined) return '–';
    const text = `${(fraction * 100).toFixed(1)}% (${lost ?? 0} lost)`;
    return badge(text, fraction > 0.05 ? 'bad' : fraction > 0.01 ? 'warn' : 'ok');
  };
  const users = new Map(room.participantDetails.map((p) => [p.participantId, p.userId]));
  const who = (participantId: string): HTMLElement =>
    el('span', { title: participantId }, users.get(participantId) ?? participantId);
  const media = [
    ...room.media.producers.map((p) =>
      row([
        'producer',
        p.producerId,
        who(p.participantId),
        p.nodeId,
        `${p.kind} ${p.source}${p.paused ? ' (paused)' : ''}`,
        bitrate(p.bitrate),
        loss(p.fractionLost, p.packetsLost),
        p.score === undefined ? '–' : String(p.score),
      ]),
    ),
    ...room.media.consumers.map((c) =>
      row([
        'consumer',
        c.consumerId,
        who(c.participantId),
        c.nodeId,
        `${c.kind}${c.paused ? ' (paused)' : ''}`,
        bitrate(c.bitrate),
        loss(c.fractionLost, c.packetsLost),
        c.score === undefined ? '–' : String(c.score),
      ]),
    ),
  ];
  $('media')
    .querySelector('tbody')
    ?.replaceChildren(...(media.length ? media : [row(['no media in this room'])]));
  $('room').hidden = false;
}

function renderWarnings(warnings: string[]): void {
  const box = $('degraded');
  box.replaceChildren(el('strong', {}, 'Degraded'), el('ul', {}, ...warnings.map((w) => el('li', {}, w))));
  box.hidden = warnings.length === 0;
}

async function refresh(): Promise<void> {
  if (refreshing) {
    refreshAgain = true;
    return;
  }
  refreshing = true;
  refreshAgain = false;
  try {
    const query = `limit=${ROOMS_PER_PAGE}${roomsCursor ? `&cursor=${encodeURIComponent(roomsCursor)}` : ''}`;
    const [nodes, rooms] = await Promise.all([
      api<NodesAnswer>('/admin/nodes?limit=100'),
      api<RoomsAnswer>(`/admin/rooms?${query}`),
    ]);
    const warnings = renderNodes(nodes);
    renderRooms(rooms);
    renderWarnings(warnings);
    const alive = nodes.nodes.filter((n) => n.alive).length;
    const participants = rooms.rooms.reduce((sum, r) => sum + r.participants, 0);
    $('summary').replaceChildren(
      badge(`${alive} node${alive === 1 ? '' : 's'} up`, 'ok'),
      ' ',
      badge(`${rooms.rooms.length} rooms · ${participants} participants`),
      ' ',
      warnings.length ? badge('degraded', 'bad') : badge('healthy', 'ok'),
    );
    if (openRoomId) {
      const detail = await api<AdminRoomDetail>(`/admin/rooms/${encodeURIComponent(openRoomId)}`).catch(
        () => undefined,
      );
      if (detail) renderRoom(detail);
      else $('room-summary').textContent = 'The room is gone.';
    }
    $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
    showError(undefined);
  } catch (error) {
    if (error instanceof AuthError) return signOut(`The admin token was refused: ${error.message}`);
    showError(`Refresh failed: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    refreshing = false;
    if (refreshAgain && timer !== undefined) void refresh();
  }
}

async function openRoom(roomId: string): Promise<void> {
  openRoomId = roomId;
  await refresh();
}

async function drainNode(nodeId: string): Promise<void> {
  if (!(await confirmAction(`Drain node ${nodeId}? Its clients are told to reconnect elsewhere and it shuts down.`)))
    return;
  const instanceId = lastNodes?.nodes.find((n) => n.nodeId === nodeId)?.instanceId;
  try {
    const answer = await api<{ deadline?: number }>(`/admin/nodes/${encodeURIComponent(nodeId)}/drain`, 'POST');
    if (instanceId !== undefined && lastNodes) {
      drainsStarted.set(nodeId, { instanceId, deadline: answer.deadline });
      renderNodes(lastNodes);
    }
  } catch (error) {
    showError(`Drain of ${nodeId} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  await refresh();
}

async function closeRoom(roomId: string): Promise<void> {
  if (!(await confirmAction(`Close room ${roomId}? Everyone in it is disconnected.`))) return;
  try {
    await api(`/admin/rooms/${encodeURIComponent(roomId)}/close`, 'POST');
    if (openRoomId === roomId) {
      openRoomId = undefined;
      $('room').hidden = true;
    }
  } catch (error) {
    showError(`Closing ${roomId} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  await refresh();
}

function signOut(message?: string): void {
  window.clearInterval(timer);
  timer = undefined;
  token = '';
  sessionStorage.removeItem(TOKEN_KEY);
  $('console').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  const error = $('login-error');
  error.textContent = message ?? '';
  error.hidden = message === undefined;
}

async function signIn(candidate: string): Promise<void> {
  token = candidate;
  try {
    await api('/admin/nodes?limit=1');
  } catch (error) {
    const reason = error instanceof AuthError ? `The admin token was refused: ${error.message}` : String(error);
    return signOut(reason);
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $('login').hidden = true;
  $('login-error').hidden = true;
  $('console').hidden = false;
  $('logout').hidden = false;
  await refresh();
  timer = window.setInterval(() => void refresh(), REFRESH_MS);
}

$('login').addEventListener('submit', (event) => {
  event.preventDefault();
  void signIn($<HTMLInputElement>('token').value.trim());
});
$('logout').addEventListener('click', () => signOut());
$('room-hide').addEventListener('click', () => {
  openRoomId = undefined;
  $('room').hidden = true;
});
$('next-page').addEventListener('click', () => {
  roomsCursor = nextCursor;
  void refresh();
});
$('first-page').addEventListener('click', () => {
  roomsCursor = undefined;
  void refresh();
});
if (token) void signIn(token);
