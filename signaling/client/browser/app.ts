/**
 * The demo page: join with `?token=` as a presenter (share camera, microphone, screen; publish
 * alerts) or as a trader (watch, chat, see alerts), with the connection state always shown.
 * Bundled by esbuild into dist/web/app.js; uses mediasoup-client and the project's SDK.
 */
import { Device } from 'mediasoup-client';
import type { Consumer, Producer, RtpCapabilities, RtpParameters, Transport } from 'mediasoup-client/types';
import { TradingRoomClient, type EventData, type JoinResult } from '../index.js';
import { VideoLayers, type Quality } from './video-layers.js';

type Source = 'camera' | 'microphone' | 'screen' | 'screen-audio';

const SIMULCAST = [
  { scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];
const layerEvents: EventData<'consumer.layersChanged'>[] = [];

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const token = new URLSearchParams(location.search).get('token') ?? '';
const client = new TradingRoomClient({
  url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
  token,
});

let device: Device | undefined;
let sendTransport: Transport | undefined;
let recvTransport: Transport | undefined;
const producers = new Map<Source, Producer>();
/** What the page shows for one consumer: its element (in a tile for video) and, for video, its layers. */
interface Remote {
  consumer: Consumer;
  producerId: string;
  element: HTMLMediaElement;
  shown: HTMLElement;
  layers?: VideoLayers;
}
const consumers = new Map<string, Remote>();
const participants = new Map<string, { name: string; role: string }>();
let selfId = '';

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
client.on('resync', (join) => void onJoined(join));

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
client.onEvent('consumer.layersChanged', (layers) => {
  layerEvents.push(layers);
  consumers.get(layers.consumerId)?.layers?.received(layers.spatialLayer);
});
client.onEvent('participant.count', ({ count }) => {
  largeRoomCount = count;
  renderParticipants();
});
client.onEvent('chat.message', (m) => item('chat', `${m.from.name}: ${m.text}`));
client.onEvent('alert.published', (a) => addAlert(a));
client.onEvent('producer.added', (p) => {
  if (p.participantId !== selfId) void consume(p.producerId).catch(showError);
});
client.onEvent('producer.removed', ({ producerId }) => dropConsumersOf(producerId));
client.onEvent('consumer.closed', ({ consumerId }) => dropConsumer(consumerId));
client.onEvent('transport.closed', ({ transportId }) => {
  // The worker behind it died: forget the transport; a presenter publishes again at once.
  if (recvTransport?.id === transportId) {
    recvTransport.close();
    recvTransport = undefined;
  }
  if (sendTransport?.id === transportId) {
    sendTransport.close();
    sendTransport = undefined;
    const sources = [...producers.keys()];
    producers.clear();
    removePreviews();
    for (const source of sources) void share(source).catch(showError);
  }
});

function addAlert(a: EventData<'alert.published'>): void {
  const price = a.price !== undefined ? ` @ ${a.price}` : '';
  const note = a.note ? ` — ${a.note}` : '';
  item('alerts', `${a.action.toUpperCase()} ${a.symbol}${price}${note} (${a.from.name})`, `alert ${a.action}`);
}

function showPublishing(role: string): void {
  const publisher = role === 'presenter' || role === 'moderator';
  $('publish').hidden = !publisher;
  $('alert-form').hidden = !publisher;
}

async function onJoined(join: JoinResult): Promise<void> {
  selfId = join.participantId;
  $('who').textContent = `${join.roomId} · ${join.role}`;
  participants.clear();
  for (const p of join.participants) participants.set(p.participantId, p);
  largeRoomCount = join.participantCount > join.participants.length ? join.participantCount : undefined;
  renderParticipants();
  showPublishing(join.role);
  // Media state does not survive a fresh join: start over.
  for (const id of [...consumers.keys()]) dropConsumer(id);
  sendTransport?.close();
  recvTransport?.close();
  sendTransport = recvTransport = undefined;
  producers.clear();
  const publisher = join.role === 'presenter' || join.role === 'moderator';
  $('waiting').textContent = !join.routerRtpCapabilities
    ? 'Media is off on this node.'
    : publisher
      ? 'Share your camera or screen to go live.'
      : 'Waiting for the presenter…';
  renderStage();
  if (!join.routerRtpCapabilities) return;
  device = new Device();
  await device.load({ routerRtpCapabilities: join.routerRtpCapabilities as RtpCapabilities });
  for (const p of join.producers) if (p.participantId !== selfId) await consume(p.producerId).catch(showError);
}

async function createTransport(direction: 'send' | 'recv'): Promise<Transport> {
  if (!device) throw new Error('media is not available');
  const params = await client.request('sfu.createTransport', { direction });
  const options = {
    id: params.transportId,
    iceParameters: params.iceParameters,
    iceCandidates: params.iceCandidates,
    dtlsParameters: params.dtlsParameters,
  } as Parameters<Device['createSendTransport']>[0];
  const transport = direction === 'send' ? device.createSendTransport(options) : device.createRecvTransport(options);
  transport.on('connect', ({ dtlsParameters }, callback, errback) => {
    client
      .request('sfu.connectTransport', { transportId: transport.id, dtlsParameters: dtlsParameters as never })
      .then(() => callback(), errback);
  });
  if (direction === 'send') {
    transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
      client
        .request('sfu.produce', {
          transportId: transport.id,
          kind,
          rtpParameters: rtpParameters as never,
          source: appData.source as Source,
        })
        .then(({ producerId }) => callback({ id: producerId }), errback);
    });
  }
  return transport;
}

async function consume(producerId: string): Promise<void> {
  if (!device) return;
  recvTransport ??= await createTransport('recv');
  const c = await client.request('sfu.consume', {
    transportId: recvTransport.id,
    producerId,
    rtpCapabilities: device.rtpCapabilities as never,
  });
  const consumer = await recvTransport.consume({
    id: c.consumerId,
    producerId: c.producerId,
    kind: c.kind,
    rtpParameters: c.rtpParameters as RtpParameters,
  });
  const video = consumer.kind === 'video' ? showVideo(consumer) : undefined;
  const element = video?.element ?? document.createElement('audio');
  element.srcObject = new MediaStream([consumer.track]);
  element.dataset.producerId = producerId;
  const shown = video?.tile ?? element;
  (video ? $('videos') : $('audio')).append(shown);
  consumers.set(consumer.id, { consumer, producerId, element, shown, layers: video?.layers });
  renderStage();
  await client.request('sfu.resumeConsumer', { consumerId: consumer.id });
  if (!video) playAudio(element);
}

/** A remote video fills the stage, with a line saying which layer arrives. */
function showVideo(consumer: Consumer): { element: HTMLVideoElement; tile: HTMLElement; layers: VideoLayers } {
  const element = document.createElement('video');
  element.autoplay = element.muted = element.playsInline = true;
  element.className = 'remote';
  const status = document.createElement('span');
  status.className = 'layer-status';
  const tile = document.createElement('div');
  tile.className = 'tile';
  tile.append(element, status);
  const layers = new VideoLayers({
    element,
    status,
    scalabilityMode: consumer.rtpParameters.encodings?.[0]?.scalabilityMode,
    quality: $<HTMLSelectElement>('quality').value as Quality,
    request: (spatialLayer) =>
      void client.request('sfu.setConsumerLayers', { consumerId: consumer.id, spatialLayer }).catch(showError),
  });
  return { element, tile, layers };
}

/** Audio plays unseen; when the browser blocks sound until a click, the page offers one. */
function playAudio(element: HTMLMediaElement): void {
  element.play().catch((error: unknown) => {
    if (error instanceof DOMException && error.name === 'NotAllowedError') $('unmute').hidden = false;
  });
}

/** The stage says what it waits for until a video is on it. */
function renderStage(): void {
  $('waiting').hidden = $('videos').querySelector('video') !== null;
  $('quality-picker').hidden = $('videos').querySelector('video.remote') === null;
}

function dropConsumer(consumerId: string): void {
  const entry = consumers.get(consumerId);
  if (!entry) return;
  entry.consumer.close();
  entry.layers?.close();
  entry.shown.remove();
  consumers.delete(consumerId);
  renderStage();
}

function dropConsumersOf(producerId: string): void {
  for (const [id, entry] of consumers) if (entry.producerId === producerId) dropConsumer(id);
}

async function share(source: Source): Promise<void> {
  if (!device) throw new Error('media is not available on this node');
  if (producers.has(source)) return;
  const stream =
    source === 'screen'
      ? await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false })
      : await navigator.mediaDevices.getUserMedia(
          source === 'camera' ? { video: { width: 960, height: 540 } } : { audio: true },
        );
  const track = stream.getTracks()[0];
  if (!track) throw new Error('no track');
  sendTransport ??= await createTransport('send');
  // Video goes out as three simulcast layers, so each viewer gets what its link and screen take.
  const producer = await sendTransport.produce({
    track,
    appData: { source },
    ...(track.kind === 'video' ? { encodings: SIMULCAST } : {}),
  });
  producers.set(source, producer);
  if (track.kind === 'video') {
    const preview = document.createElement('video');
    preview.autoplay = preview.muted = preview.playsInline = true;
    preview.srcObject = new MediaStream([track]);
    preview.dataset.local = source;
    $('videos').prepend(preview);
    renderStage();
  }
}

function removePreviews(): void {
  for (const el of document.querySelectorAll('video[data-local]')) el.remove();
  renderStage();
}

function stopAll(): void {
  for (const [source, producer] of producers) {
    producer.close();
    void client.request('sfu.closeProducer', { producerId: producer.id }).catch(() => {});
    producers.delete(source);
  }
  removePreviews();
}

$('share-camera').onclick = () => void share('camera').catch(showError);
$('share-mic').onclick = () => void share('microphone').catch(showError);
$('share-screen').onclick = () => void share('screen').catch(showError);
$('stop-all').onclick = stopAll;
$<HTMLSelectElement>('quality').onchange = (event) => {
  const quality = (event.target as HTMLSelectElement).value as Quality;
  for (const { layers } of consumers.values()) if (layers) layers.quality = quality;
};
$('unmute').onclick = () => {
  $('unmute').hidden = true;
  for (const el of document.querySelectorAll('audio')) void el.play().catch(showError);
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
  void client
    .request('alert.publish', {
      symbol: String(data.get('symbol')),
      action: String(data.get('action')) as 'buy',
      ...(price > 0 ? { price } : {}),
      ...(note ? { note } : {}),
    })
    .catch(showError);
};

/** Hooks for automated checks: the page's client and inbound video statistics. */
const hooks = {
  client,
  /** `consumer.layersChanged` notifications received, oldest first. */
  layerEvents,
  /** The largest `framesDecoded` among receiving video consumers (probation receivers read 0). */
  async framesDecoded(): Promise<number> {
    let best = 0;
    for (const { consumer } of consumers.values()) {
      if (consumer.kind !== 'video') continue;
      const stats = await consumer.getStats();
      stats.forEach((s: { type: string; framesDecoded?: number }) => {
        if (s.type === 'inbound-rtp' && (s.framesDecoded ?? 0) > best) best = s.framesDecoded ?? 0;
      });
    }
    return best;
  },
};
(window as unknown as { tradingRoom: typeof hooks }).tradingRoom = hooks;

if (!token) showError('add ?token=<access token> to the address');
else client.connect().then(onJoined).catch(showError);
