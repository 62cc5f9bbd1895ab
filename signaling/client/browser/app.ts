/**
 * The demo page: join with `?token=` as a presenter (share camera, microphone, screen; publish
 * alerts) or as a trader (watch, chat, see alerts), with the connection state always shown.
 * Bundled by esbuild into dist/web/app.js. It uses only the SDK's public API — the core client
 * (`@trading-room/client`) and its media entry (`@trading-room/client/media`) — and is the
 * example an integrator reads.
 */
import {
  newTraceparent,
  RoomTimeline,
  TradingRoomClient,
  type EventData,
  type JoinResult,
  type TimelineEntry,
} from '../index.js';
import { MediaSession, type MediaSource, type Quality, type RemoteTrack } from '../media.js';

const layerEvents: EventData<'consumer.layersChanged'>[] = [];
const mediaStates: string[] = [];
/** What happened to remote tracks, oldest first: `added|removed|migrating|migrated <source> <producerId>`. */
const trackEvents: string[] = [];

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const token = new URLSearchParams(location.search).get('token') ?? '';
const client = new TradingRoomClient({
  url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
  token,
});
const media = new MediaSession(client);

const participants = new Map<string, { name: string; role: string }>();
let selfId = '';
let mediaOff = false;

function showError(error: unknown): void {
  $('error').textContent = error instanceof Error ? error.message : String(error);
}

function item(list: string, text: string, className = ''): void {
  const li = document.createElement('li');
  li.textContent = text;
  if (className) li.className = className;
  const ul = $(list);
  ul.append(li);
  ul.scrollTop = ul.scrollHeight;
}

/** Set once the room is large: from then on `participant.count` is the only exact count. */
let largeRoomCount: number | undefined;

function renderParticipants(): void {
  $('count').textContent = `${largeRoomCount ?? participants.size} in the room`;
  const ul = $('participants');
  ul.replaceChildren();
  for (const [id, p] of participants) item('participants', `${p.name} (${p.role})${id === selfId ? ' — you' : ''}`);
}

client.on('state', (state) => {
  const el = $('state');
  el.textContent = state;
  el.dataset.state = state;
});
client.on('closed', ({ code, reason }) => showError(`disconnected (${code}) ${reason}`));
client.on('resync', (join) => onJoined(join));

client.onEvent('participant.joined', ({ participant }) => {
  participants.set(participant.participantId, participant);
  renderParticipants();
});
client.onEvent('participant.left', ({ participantId }) => {
  participants.delete(participantId);
  renderParticipants();
});
client.onEvent('participant.updated', ({ participant }) => {
  participants.set(participant.participantId, participant);
  renderParticipants();
  if (participant.participantId === selfId) showPublishing(participant.role);
});
client.onEvent('consumer.layersChanged', (layers) => layerEvents.push(layers));
client.onEvent('participant.count', ({ count }) => {
  largeRoomCount = count;
  renderParticipants();
});

// ---- chat and alerts: live, plus what was said before this page joined (room.history) ----------

/** One entry per `seq`: history and live delivery may both bring an event. */
const timeline = new RoomTimeline();

client.on('notification', (notification) => {
  const entry = timeline.addLive(notification, client.epoch ?? '');
  if (entry) $(listOf(entry)).append(entryItem(entry));
  for (const list of ['chat', 'alerts']) $(list).scrollTop = $(list).scrollHeight;
});

function listOf(entry: TimelineEntry): 'chat' | 'alerts' {
  return entry.notification.event === 'chat.message' ? 'chat' : 'alerts';
}

function entryItem({ notification, earlier }: TimelineEntry): HTMLLIElement {
  const li = document.createElement('li');
  if (notification.event === 'chat.message') {
    li.textContent = `${notification.data.from.name}: ${notification.data.text}`;
  } else {
    const a = notification.data;
    const price = a.price !== undefined ? ` @ ${a.price}` : '';
    const note = a.note ? ` — ${a.note}` : '';
    li.textContent = `${a.action.toUpperCase()} ${a.symbol}${price}${note} (${a.from.name})`;
    li.className = `alert ${a.action}`;
  }
  if (earlier) li.classList.add('earlier');
  return li;
}

/** The room's last chat and alerts before this page joined, above the live ones, under "Earlier". */
async function showEarlier(): Promise<void> {
  const added = timeline.addHistory(await client.history({ limit: 50 }));
  for (const list of ['chat', 'alerts'] as const) {
    const entries = added.filter((entry) => listOf(entry) === list);
    if (entries.length === 0) continue;
    const separator = document.createElement('li');
    separator.className = 'separator';
    separator.textContent = 'Earlier';
    $(list).prepend(separator, ...entries.map(entryItem));
  }
}

// ---- media: everything below goes through the SDK's MediaSession --------------------------------

/** What the page shows for each remote track: a tile with a status line for video, a hidden <audio> otherwise. */
const shown = new Map<RemoteTrack, { element: HTMLMediaElement; tile: HTMLElement; status?: HTMLElement }>();

media.on('statechange', (state) => {
  mediaStates.push(state);
  $('state').dataset.media = state;
});
media.on('error', showError);
media.on('trackadded', (track) => {
  trackEvents.push(`added ${track.source} ${track.producerId}`);
  if (track.kind === 'video') {
    const element = document.createElement('video');
    element.className = 'remote';
    const status = document.createElement('span');
    status.className = 'layer-status';
    const tile = document.createElement('div');
    tile.className = 'tile';
    tile.append(element, status);
    element.dataset.producerId = track.producerId;
    $('videos').append(tile);
    track.quality = $<HTMLSelectElement>('quality').value as Quality;
    track.attach(element);
    shown.set(track, { element, tile, status });
    renderLayers(track);
  } else {
    const element = track.attach();
    element.dataset.producerId = track.producerId;
    $('audio').append(element);
    shown.set(track, { element, tile: element });
  }
  renderStage();
});
media.on('trackremoved', (track) => {
  trackEvents.push(`removed ${track.source} ${track.producerId}`);
  shown.get(track)?.tile.remove();
  shown.delete(track);
  renderStage();
});
// The presenter's node drains: its video keeps its tile (and last frame) until it is back.
media.on('trackmigrating', (track) => {
  trackEvents.push(`migrating ${track.source} ${track.producerId}`);
  const view = shown.get(track);
  view?.tile.classList.add('migrating');
  if (view?.status) view.status.textContent = 'reconnecting…';
});
media.on('trackmigrated', (track) => {
  trackEvents.push(`migrated ${track.source} ${track.producerId}`);
  const view = shown.get(track);
  if (!view) return;
  view.tile.classList.remove('migrating');
  view.element.dataset.producerId = track.producerId;
  renderLayers(track);
});
media.on('qualitychanged', (track) => renderLayers(track));
media.on('autoplayblocked', () => ($('unmute').hidden = false));
media.on('localtrackpublished', ({ source, track }) => {
  if (track.kind !== 'video' || document.querySelector(`video[data-local="${source}"]`)) return;
  const preview = document.createElement('video');
  preview.autoplay = preview.muted = preview.playsInline = true;
  preview.srcObject = new MediaStream([track]);
  preview.dataset.local = source;
  $('videos').prepend(preview);
  renderStage();
});
media.on('localtrackunpublished', ({ source }) => {
  document.querySelector(`video[data-local="${source}"]`)?.remove();
  renderStage();
});

/** Writes which layer a remote video asks for and receives into its data attributes and status line. */
function renderLayers(track: RemoteTrack): void {
  const view = shown.get(track);
  const layers = track.layers;
  if (!view?.status || !layers) return;
  const el = view.element as HTMLVideoElement;
  el.dataset.layerCount = String(layers.count);
  el.dataset.requestedLayer = String(layers.requestedLayer);
  const received = layers.receivedLayer;
  if (received === undefined) {
    delete el.dataset.receivedLayer;
    view.status.textContent = layers.count > 1 ? 'starting…' : '';
    return;
  }
  el.dataset.receivedLayer = String(received);
  const name = received === layers.count - 1 ? 'High' : received === 0 ? 'Low' : 'Medium';
  const size = el.videoWidth ? ` ${el.videoWidth}×${el.videoHeight}` : '';
  const limited = received < layers.requestedLayer ? ' · limited by bandwidth' : '';
  view.status.textContent = `${name}${size}${limited}`;
}

function showPublishing(role: string): void {
  const publisher = role === 'presenter' || role === 'moderator';
  $('publish').hidden = !publisher;
  $('alert-form').hidden = !publisher;
  $('waiting').textContent = mediaOff
    ? 'Media is off on this node.'
    : publisher
      ? 'Share your camera or screen to go live.'
      : 'Waiting for the presenter…';
}

function onJoined(join: JoinResult): void {
  selfId = join.participantId;
  $('who').textContent = `${join.roomId} · ${join.role}`;
  participants.clear();
  for (const p of join.participants) participants.set(p.participantId, p);
  largeRoomCount = join.participantCount > join.participants.length ? join.participantCount : undefined;
  renderParticipants();
  mediaOff = !join.routerRtpCapabilities;
  showPublishing(join.role);
  renderStage();
}

/** The stage says what it waits for until a video is on it. */
function renderStage(): void {
  $('waiting').hidden = $('videos').querySelector('video') !== null;
  $('quality-picker').hidden = $('videos').querySelector('video.remote') === null;
}

const share = (source: MediaSource) => () => {
  const publish =
    source === 'camera'
      ? media.publishCamera()
      : source === 'screen'
        ? media.publishScreen()
        : media.publishMicrophone();
  void publish.catch(showError);
};
$('share-camera').onclick = share('camera');
$('share-mic').onclick = share('microphone');
$('share-screen').onclick = share('screen');
$('stop-all').onclick = () => void media.stopAll().catch(showError);
$<HTMLSelectElement>('quality').onchange = (event) =>
  media.setQuality((event.target as HTMLSelectElement).value as Quality);
$('unmute').onclick = () => {
  $('unmute').hidden = true;
  void media.startAudio().catch(showError);
};

$<HTMLFormElement>('chat-form').onsubmit = (event) => {
  event.preventDefault();
  const form = event.target as HTMLFormElement;
  const input = form.elements.namedItem('text') as HTMLInputElement;
  void client
    .request('chat.send', { text: input.value })
    .then(() => (input.value = ''))
    .catch(showError);
};

$<HTMLFormElement>('alert-form').onsubmit = (event) => {
  event.preventDefault();
  const data = new FormData(event.target as HTMLFormElement);
  const price = Number(data.get('price'));
  const note = String(data.get('note') ?? '');
  // A trace per alert: the server's spans of this alert, on every node, share its trace id.
  const traceparent = newTraceparent();
  void client
    .request(
      'alert.publish',
      {
        symbol: String(data.get('symbol')),
        action: String(data.get('action')) as 'buy',
        ...(price > 0 ? { price } : {}),
        ...(note ? { note } : {}),
      },
      { traceparent },
    )
    .then(() => console.info(`alert published, trace ${traceparent.split('-')[1]}`))
    .catch(showError);
};

/** Statistics of one receiving video: the probation receiver (SSRC 1234) reads 0 and is skipped. */
interface VideoStats {
  producerId: string;
  consumerId: string;
  source: string;
  framesDecoded: number;
}

/** Hooks for automated checks: the page's client and media session, and inbound video statistics. */
const hooks = {
  client,
  media,
  MediaSession,
  /** `consumer.layersChanged` notifications received, oldest first. */
  layerEvents,
  /** The media session's states, oldest first. */
  mediaStates,
  /** Remote tracks added, removed, migrating and migrated, oldest first. */
  trackEvents,
  /** Each remote video's consumer and the frames it decoded. */
  async videos(): Promise<VideoStats[]> {
    const out: VideoStats[] = [];
    for (const track of media.remoteTracks) {
      if (track.kind !== 'video') continue;
      let best = 0;
      (await track.getStats()).forEach((s: { type: string; framesDecoded?: number }) => {
        if (s.type === 'inbound-rtp' && (s.framesDecoded ?? 0) > best) best = s.framesDecoded ?? 0;
      });
      out.push({
        producerId: track.producerId,
        consumerId: track.consumerId,
        source: track.source,
        framesDecoded: best,
      });
    }
    return out;
  },
  /** The largest `framesDecoded` among receiving videos. */
  async framesDecoded(): Promise<number> {
    return Math.max(0, ...(await hooks.videos()).map((v) => v.framesDecoded));
  },
};
(window as unknown as { tradingRoom: typeof hooks }).tradingRoom = hooks;

if (!token) showError('add ?token=<access token> to the address');
else
  client
    .connect()
    .then((join) => {
      onJoined(join);
      return showEarlier();
    })
    .catch(showError);
