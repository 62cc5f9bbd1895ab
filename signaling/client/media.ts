/**
 * Media for the trading-room SDK, in the browser: publish the camera, microphone and screen,
 * watch the presenter, and get it all back by itself after a reconnect.
 *
 * ```ts
 * const client = new TradingRoomClient({ url, token });
 * const media = new MediaSession(client);
 * media.on('trackadded', (track) => track.attach(videoElement));
 * await client.connect();
 * await media.publishCamera(); // a presenter
 * ```
 *
 * A {@link MediaSession} follows its core client: when the client reconnects (a resume on the
 * same node or a fresh join elsewhere) it recreates what the server lost — transports,
 * producers (from the same captured tracks) and consumers — and reports `recovering` → `live`
 * instead of errors. Failures an application can act on arrive as typed errors
 * ({@link PermissionDeniedError}, {@link MediaUnavailableError}, {@link CodecMismatchError},
 * {@link TransportFailedError}).
 *
 * Uses `mediasoup-client`; import it from `@trading-room/client/media` only where media is needed.
 */
import { Device } from 'mediasoup-client';
import type {
  Consumer,
  Producer,
  RtpCapabilities,
  RtpEncodingParameters,
  RtpParameters,
  Transport,
} from 'mediasoup-client/types';
import { RequestError, type EventData, type JoinResult, type TradingRoomClient } from './index.js';
import { LayerSelector, type Quality } from './layer-selector.js';
import {
  CodecMismatchError,
  MediaDeviceError,
  MediaError,
  MediaUnavailableError,
  PermissionDeniedError,
  TransportFailedError,
} from './media-errors.js';
import { MediaStateMachine, type MediaState } from './media-state.js';

export * from './media-errors.js';
export { MediaStateMachine, type MediaState, type MediaStateEvent } from './media-state.js';
export { LayerSelector, fittingLayer, spatialLayerCount, type Quality } from './layer-selector.js';

/** What a producer carries, as the protocol names it. */
export type MediaSource = 'camera' | 'microphone' | 'screen' | 'screen-audio';

/**
 * Simulcast for a presenter to thousands: three layers (¼, ½ and full resolution) so each
 * viewer receives what its screen and link take, and the top layer costs only its own viewers.
 */
export const PRESENTER_SIMULCAST: readonly RtpEncodingParameters[] = [
  { scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

/** Options of {@link MediaSession}. */
export interface MediaSessionOptions {
  /** Consume every other participant's producer as it appears and emit `trackadded` (default true). */
  readonly autoSubscribe?: boolean;
  /**
   * Attaches the room's camera video (only presenters and moderators publish) to this element by
   * itself — the first one, and the one published again after the presenter's reconnect.
   */
  readonly presenterVideo?: HTMLVideoElement;
  /** The quality new remote videos start with (default `auto`: fit the element). */
  readonly quality?: Quality;
  /** Video encodings; `false` sends one layer. Default {@link PRESENTER_SIMULCAST}. */
  readonly simulcast?: readonly RtpEncodingParameters[] | false;
  /**
   * A transport that has not connected this long after it started (or after an ICE restart)
   * counts as failed: `error` gets a {@link TransportFailedError} and the session ICE-restarts
   * it (default {@link DEFAULT_CONNECT_TIMEOUT_MS}). Browsers declare ICE failed only after
   * 15–30 s; on a reachable server a transport connects within a second or two.
   */
  readonly connectTimeoutMs?: number;
  /**
   * How long a remote track whose producer is moving (`producer.removed` with reason
   * `migrating`: its owner's node drains) waits for the owner's new producer of the same source
   * before it ends with `trackremoved` (default {@link DEFAULT_MIGRATION_TIMEOUT_MS}).
   */
  readonly migrationTimeoutMs?: number;
}

/** {@link MediaSessionOptions.connectTimeoutMs} unless given. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** {@link MediaSessionOptions.migrationTimeoutMs} unless given. */
export const DEFAULT_MIGRATION_TIMEOUT_MS = 30_000;
/** The longest wait between two ICE restarts of a transport that does not connect. */
const MAX_ICE_RESTART_WAIT_MS = 60_000;

/** Options of one publication. */
export interface PublishOptions {
  /** A track captured by the application instead of the SDK. */
  readonly track?: MediaStreamTrack;
  /** Constraints for the capture (getUserMedia / getDisplayMedia). */
  readonly constraints?: MediaTrackConstraints | boolean;
  /** Overrides the session's simulcast for this video. */
  readonly simulcast?: readonly RtpEncodingParameters[] | false;
}

/** Something this page publishes. */
export interface LocalTrack {
  readonly source: MediaSource;
  /** The captured track: it stays the same across reconnects (show it as the local preview). */
  readonly track: MediaStreamTrack;
  /** The server's producer id (changes when the track is published again after a reconnect). */
  readonly producerId: string | undefined;
  readonly muted: boolean;
}

type SessionEvents = {
  /** A remote track can be shown: `attach` it to an element. */
  trackadded: [RemoteTrack];
  /** A remote track ended (its producer closed or its owner left). */
  trackremoved: [RemoteTrack];
  /**
   * A remote track's producer is moving to another node (its owner's node drains): the track
   * and its elements stay (showing the last frame) until the owner's new producer arrives
   * (`trackmigrated`), or `migrationTimeoutMs` passes (`trackremoved`).
   */
  trackmigrating: [RemoteTrack];
  /** A migrating track plays again, from its owner's new producer (`producerId` changed). */
  trackmigrated: [RemoteTrack];
  /** A remote video's requested or received simulcast layer changed. */
  qualitychanged: [RemoteTrack];
  statechange: [MediaState];
  /** The loudest participant now (`null`: silence). */
  activespeaker: [string | null];
  /** A track of this page was published (again, after a reconnect) or stopped. */
  localtrackpublished: [LocalTrack];
  localtrackunpublished: [LocalTrack];
  /** The browser refused to play sound before a user gesture: call `startAudio()` from a click. */
  autoplayblocked: [HTMLMediaElement];
  /** A failure the application can act on; the session keeps running. */
  error: [MediaError];
};

type Listener<A extends unknown[]> = (...args: A) => void;

/** A producer of another participant, received through one consumer (re-created after a reconnect). */
export class RemoteTrack {
  readonly participantId: string;
  readonly kind: 'audio' | 'video';
  readonly source: MediaSource;
  /** For video: the simulcast layers and the quality override. */
  readonly layers: LayerSelector | undefined;
  #consumer: Consumer;
  #producerId: string;
  #migrating = false;
  readonly #elements = new Set<HTMLMediaElement>();
  readonly #session: MediaSession;

  /** @internal Created by {@link MediaSession}. */
  constructor(
    session: MediaSession,
    consumer: Consumer,
    info: { participantId: string; source: MediaSource },
    layers: LayerSelector | undefined,
  ) {
    this.#session = session;
    this.#consumer = consumer;
    this.#producerId = consumer.producerId;
    this.participantId = info.participantId;
    this.kind = consumer.kind as 'audio' | 'video';
    this.source = info.source;
    this.layers = layers;
  }

  /** The server's producer id (changes when its owner publishes it again after a migration). */
  get producerId(): string {
    return this.#producerId;
  }

  /**
   * True while the producer moves to another node (between `trackmigrating` and
   * `trackmigrated`): the elements keep the last frame.
   */
  get migrating(): boolean {
    return this.#migrating;
  }

  /** The server's consumer id (changes when the consumer is re-created). */
  get consumerId(): string {
    return this.#consumer.id;
  }

  /** The current media track (a new one after a reconnect; attached elements follow it). */
  get mediaStreamTrack(): MediaStreamTrack {
    return this.#consumer.track;
  }

  /** The simulcast quality override (`auto` fits the attached element). */
  get quality(): Quality {
    return this.layers?.quality ?? 'auto';
  }

  set quality(quality: Quality) {
    if (this.layers) this.layers.quality = quality;
  }

  /** Receiver statistics of the current consumer. */
  getStats(): Promise<RTCStatsReport> {
    // Between a lost consumer and its replacement there is nothing to measure.
    if (this.#consumer.closed) return Promise.resolve(new Map() as RTCStatsReport);
    return this.#consumer.getStats();
  }

  /**
   * Shows the track in `element` (or a new `<video>`/`<audio>`), plays it, and keeps it there
   * across reconnects. Audio that the browser refuses to play emits `autoplayblocked`.
   */
  attach(element?: HTMLMediaElement): HTMLMediaElement {
    const el = element ?? document.createElement(this.kind);
    if (el instanceof HTMLVideoElement) {
      el.autoplay = el.playsInline = true;
      el.muted = true;
      this.layers?.observe(el);
    }
    // Audio starts through play(), never `autoplay`: a refusal must be seen (`autoplayblocked`).
    this.#elements.add(el);
    this.#show(el);
    return el;
  }

  /** Stops showing the track in `element` (all elements when omitted). */
  detach(element?: HTMLMediaElement): void {
    for (const el of element ? [element] : [...this.#elements]) {
      el.srcObject = null;
      this.#elements.delete(el);
    }
    if (this.layers && ![...this.#elements].some((el) => el instanceof HTMLVideoElement))
      this.layers.observe(undefined);
  }

  /** The elements the track is attached to. */
  get elements(): readonly HTMLMediaElement[] {
    return [...this.#elements];
  }

  /** @internal True once its consumer closed (its transport was lost): it is consumed again. */
  get stale(): boolean {
    return this.#consumer.closed;
  }

  /**
   * @internal The consumer was re-created after a reconnect, or (after a migration) the owner's
   * new producer of the same source is consumed into this track.
   */
  replaceConsumer(consumer: Consumer): void {
    this.#consumer.close();
    this.#consumer = consumer;
    this.#producerId = consumer.producerId;
    this.#migrating = false;
    this.layers?.reset();
    for (const el of this.#elements) this.#show(el);
  }

  /** @internal The server closed the consumer: keep the elements, wait for what comes next. */
  closeConsumer(): void {
    this.#consumer.close();
  }

  /** @internal The producer moves: the consumer is gone, the elements stay. */
  startMigration(): void {
    this.#consumer.close();
    this.#migrating = true;
  }

  /** @internal */
  close(): void {
    this.#consumer.close();
    this.layers?.close();
    for (const el of this.#elements) el.srcObject = null;
    this.#elements.clear();
  }

  #show(el: HTMLMediaElement): void {
    el.srcObject = new MediaStream([this.#consumer.track]);
    el.play().catch((error: unknown) => {
      if (error instanceof DOMException && error.name === 'NotAllowedError') this.#session.autoplayBlocked(el);
    });
  }
}

interface Published {
  source: MediaSource;
  track: MediaStreamTrack;
  encodings: readonly RtpEncodingParameters[] | undefined;
  producer: Producer | undefined;
  muted: boolean;
}

/**
 * The media of one {@link TradingRoomClient}: publications, remote tracks, and their recovery.
 * Create it before or after `client.connect()`; it starts when the client has joined.
 */
export class MediaSession {
  readonly #client: TradingRoomClient;
  readonly #options: MediaSessionOptions;
  readonly #listeners = new Map<string, Set<Listener<never[]>>>();
  readonly #machine: MediaStateMachine;
  readonly #published = new Map<MediaSource, Published>();
  /** By producer id. */
  readonly #remote = new Map<string, RemoteTrack>();
  /** Elements given to `watch`, by `participantId/source`: a re-published producer goes to the same one. */
  readonly #watched = new Map<string, HTMLMediaElement>();
  readonly #blocked = new Set<HTMLMediaElement>();
  /** Producers announced since the last join (its `producers` lists only those before it). */
  readonly #announced = new Map<string, EventData<'producer.added'>>();
  readonly #unsubscribe: (() => void)[] = [];
  /** Transports that failed (or did not connect in time) and have not connected since. */
  readonly #failing = new Set<Transport>();
  /** The generation whose set-up completed (transports, producers, consumers in place). */
  #setUpDone = 0;
  #device: Device | undefined;
  #deviceCaps: string | undefined;
  #send: Transport | undefined;
  #recv: Transport | undefined;
  #join: JoinResult | undefined;
  /** Bumped on every (re)join: work of an older one stops. */
  #generation = 0;
  #setup: Promise<void> = Promise.resolve();

  constructor(client: TradingRoomClient, options: MediaSessionOptions = {}) {
    this.#client = client;
    this.#options = options;
    this.#machine = new MediaStateMachine((state) => this.#emit('statechange', state));
    const on = client.onEvent.bind(client);
    this.#unsubscribe.push(
      client.on('state', (state) => {
        if (state === 'reconnecting') this.#machine.fire('lost');
        if (state === 'joined' && client.joined) this.#onJoined(client.joined);
        if (state === 'closed') this.close();
      }),
      client.on('resync', (join, cause) => {
        if (cause.reason === 'epoch-changed') this.#queue(() => this.#reconcileRemote(join.producers));
      }),
      on('producer.added', (p) => {
        this.#announced.set(p.producerId, p);
        if (this.#join && p.participantId !== this.#join.participantId) this.#queue(() => this.#onProducer(p));
      }),
      on('producer.removed', ({ producerId, reason }) => {
        this.#announced.delete(producerId);
        if (reason === 'migrating') this.#startMigration(producerId);
        else this.#dropRemote(producerId);
      }),
      on('consumer.closed', ({ consumerId, reason }) => {
        // The track ends with its producer's `producer.removed` (which says why); a consumer
        // lost otherwise (its worker, its transport) is consumed again.
        const track = [...this.#remote.values()].find((t) => t.consumerId === consumerId);
        if (!track) return;
        track.closeConsumer();
        if (reason !== 'producer-closed') this.#queue(() => this.#consumeAgain(track));
      }),
      on('participant.left', ({ participantId }) => {
        for (const track of [...this.#remote.values()])
          if (track.participantId === participantId) this.#dropRemote(track.producerId);
      }),
      on('consumer.layersChanged', ({ consumerId, spatialLayer }) => {
        for (const track of this.#remote.values())
          if (track.consumerId === consumerId) track.layers?.onReceived(spatialLayer);
      }),
      on('activeSpeaker', ({ participantId }) => this.#emit('activespeaker', participantId)),
      on('transport.closed', ({ transportId }) => {
        // The worker behind it died: rebuild what was on it.
        if (this.#send?.id === transportId || this.#recv?.id === transportId) {
          this.#machine.fire('lost');
          if (this.#join) this.#onJoined(this.#join);
        }
      }),
    );
    if (client.state === 'joined' && client.joined) this.#onJoined(client.joined);
  }

  /** The session's state: `idle` → `connecting` → `live` ⇄ `recovering`, then `closed`. */
  get state(): MediaState {
    return this.#machine.state;
  }

  /** Remote tracks being received. */
  get remoteTracks(): readonly RemoteTrack[] {
    return [...this.#remote.values()];
  }

  /** What this page publishes. */
  get localTracks(): readonly LocalTrack[] {
    return [...this.#published.values()].map((p) => this.#local(p));
  }

  on<K extends keyof SessionEvents>(event: K, listener: Listener<SessionEvents[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as unknown as Listener<never[]>);
    return () => set.delete(listener as unknown as Listener<never[]>);
  }

  /** Publishes the camera (simulcast by default). */
  publishCamera(options: PublishOptions = {}): Promise<LocalTrack> {
    return this.#publish('camera', options);
  }

  /** Publishes the microphone. */
  publishMicrophone(options: PublishOptions = {}): Promise<LocalTrack> {
    return this.#publish('microphone', options);
  }

  /** Publishes the screen (the browser asks which one; simulcast by default). */
  publishScreen(options: PublishOptions = {}): Promise<LocalTrack> {
    return this.#publish('screen', options);
  }

  /** Stops publishing `source` and releases its capture. */
  async stop(source: MediaSource): Promise<void> {
    const p = this.#published.get(source);
    if (!p) return;
    this.#published.delete(source);
    p.track.stop();
    if (p.producer) {
      const id = p.producer.id;
      p.producer.close();
      await this.#client.request('sfu.closeProducer', { producerId: id }).catch(() => {});
    }
    this.#emit('localtrackunpublished', this.#local(p));
  }

  /** Stops every publication. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.#published.keys()].map((source) => this.stop(source)));
  }

  /** Pauses a publication (viewers keep the last frame / silence); survives reconnects. */
  async mute(source: MediaSource): Promise<void> {
    const p = this.#published.get(source);
    if (!p || p.muted) return;
    p.muted = true;
    if (p.producer) {
      p.producer.pause();
      await this.#client.request('sfu.pauseProducer', { producerId: p.producer.id });
    }
  }

  /** Resumes a muted publication. */
  async unmute(source: MediaSource): Promise<void> {
    const p = this.#published.get(source);
    if (!p || !p.muted) return;
    p.muted = false;
    if (p.producer) {
      p.producer.resume();
      await this.#client.request('sfu.resumeProducer', { producerId: p.producer.id });
    }
  }

  /**
   * Receives `producerId` into `element` (also with `autoSubscribe: false`). When the producer's
   * owner publishes the same source again (after its reconnect), the new one goes to `element` too.
   */
  async watch(producerId: string, element: HTMLMediaElement): Promise<RemoteTrack> {
    const info = this.#join?.producers.find((p) => p.producerId === producerId) ?? this.#announced.get(producerId);
    const existing = this.#remote.get(producerId);
    if (existing) {
      if (info) this.#watched.set(`${info.participantId}/${info.source}`, element);
      existing.attach(element);
      return existing;
    }
    if (!info) throw new MediaError('unavailable', `no producer ${producerId} in this room`);
    this.#watched.set(`${info.participantId}/${info.source}`, element);
    const track = await this.#consume(info, this.#generation);
    if (!track) throw new MediaUnavailableError();
    return track;
  }

  /** Sets the quality of every remote video (and of those to come). */
  setQuality(quality: Quality): void {
    this.#quality = quality;
    for (const track of this.#remote.values()) track.quality = quality;
  }

  /** Plays sound the browser blocked; call it from a click (`autoplayblocked`). */
  async startAudio(): Promise<void> {
    const blocked = [...this.#blocked];
    this.#blocked.clear();
    await Promise.all(blocked.map((el) => el.play()));
  }

  /** Stops everything; the core client stays connected. */
  close(): void {
    if (this.#machine.state === 'closed') return;
    this.#generation++;
    for (const off of this.#unsubscribe.splice(0)) off();
    for (const p of this.#published.values()) p.track.stop();
    this.#published.clear();
    for (const track of this.#remote.values()) track.close();
    this.#remote.clear();
    this.#send?.close();
    this.#recv?.close();
    this.#send = this.#recv = undefined;
    this.#machine.fire('close');
  }

  /** @internal From {@link RemoteTrack}. */
  autoplayBlocked(element: HTMLMediaElement): void {
    this.#blocked.add(element);
    this.#emit('autoplayblocked', element);
  }

  // ---------------------------------------------------------------------------------------------

  #quality: Quality | undefined;

  /** Runs media work one after another, so a rejoin never overlaps an older setup. */
  #queue(work: () => Promise<void>): void {
    this.#setup = this.#setup.then(work).catch((error: unknown) => this.#fail(error));
  }

  /** `live` once the latest join's set-up is done and no transport is failing. */
  #maybeReady(): void {
    if (this.#failing.size > 0 || this.#setUpDone !== this.#generation || this.#client.state !== 'joined') return;
    this.#machine.fire('ready');
  }

  #onJoined(join: JoinResult): void {
    if (this.#machine.state === 'closed') return;
    if (join !== this.#join) this.#announced.clear();
    this.#join = join;
    const generation = ++this.#generation;
    this.#queue(() => this.#setUp(join, generation));
  }

  /** Brings media in line with a (re)join: device, transports, producers, consumers. */
  async #setUp(join: JoinResult, generation: number): Promise<void> {
    if (generation !== this.#generation) return;
    if (!join.routerRtpCapabilities) {
      this.#machine.fire('unavailable');
      this.#teardownTransports();
      if (this.#published.size > 0) this.#emit('error', new MediaUnavailableError());
      return;
    }
    this.#machine.fire('start');
    const caps = JSON.stringify(join.routerRtpCapabilities);
    if (!this.#device || caps !== this.#deviceCaps) {
      // Another node may offer other codecs: a new device, and new transports for it.
      this.#teardownTransports();
      const device = new Device();
      await device.load({ routerRtpCapabilities: join.routerRtpCapabilities as RtpCapabilities });
      this.#device = device;
      this.#deviceCaps = caps;
    }
    // Transports that the server no longer knows (the participant was gone) are rebuilt.
    if (this.#send && !(await this.#stillThere(this.#send))) this.#dropSend();
    if (this.#recv && !(await this.#stillThere(this.#recv))) this.#dropRecv();
    if (generation !== this.#generation) return;
    const live = new Set(join.producers.map((p) => p.producerId));
    for (const p of this.#published.values()) {
      if (p.producer && !live.has(p.producer.id)) {
        p.producer.close();
        p.producer = undefined;
      }
      if (!p.producer) await this.#produce(p, generation);
    }
    await this.#reconcileRemote(join.producers, generation);
    if (generation !== this.#generation) return;
    this.#setUpDone = generation;
    this.#maybeReady();
  }

  /** Asks the server about a transport (an ICE restart): false when it is gone. */
  async #stillThere(transport: Transport): Promise<boolean> {
    try {
      const { iceParameters } = await this.#client.request('sfu.restartIce', { transportId: transport.id });
      await transport.restartIce({
        iceParameters: iceParameters as Parameters<Transport['restartIce']>[0]['iceParameters'],
      });
      return true;
    } catch (error) {
      if (error instanceof RequestError && error.code === 'DISCONNECTED') throw error;
      return false;
    }
  }

  async #reconcileRemote(producers: JoinResult['producers'], generation = this.#generation): Promise<void> {
    const live = new Set(producers.map((p) => p.producerId));
    // A migrating track waits for its owner's new producer (here, or announced later).
    for (const [id, track] of [...this.#remote]) if (!live.has(id) && !track.migrating) this.#dropRemote(id);
    for (const p of producers) {
      if (generation !== this.#generation) return;
      if (p.participantId === this.#join?.participantId) continue;
      const track = this.#remote.get(p.producerId);
      if (track && !track.stale) continue;
      if (track || this.#migratingTrack(p) || this.#wanted(p)) await this.#consume(p, generation);
    }
  }

  /** The track waiting for `p`'s owner to publish its source again after a migration. */
  #migratingTrack(p: { participantId: string; source: string }): RemoteTrack | undefined {
    for (const track of this.#remote.values())
      if (track.migrating && track.participantId === p.participantId && track.source === p.source) return track;
    return undefined;
  }

  /** `producer.removed {reason: "migrating"}`: keep the track and its elements for the new producer. */
  #startMigration(producerId: string): void {
    const track = this.#remote.get(producerId);
    if (!track || track.migrating) return;
    track.startMigration();
    this.#emit('trackmigrating', track);
    const timeoutMs = this.#options.migrationTimeoutMs ?? DEFAULT_MIGRATION_TIMEOUT_MS;
    setTimeout(() => {
      if (track.migrating && this.#remote.get(track.producerId) === track) this.#dropRemote(track.producerId);
    }, timeoutMs);
    // Its owner's new producer may have been announced already.
    for (const p of this.#announced.values())
      if (p.participantId === track.participantId && p.source === track.source && !this.#remote.has(p.producerId)) {
        this.#queue(() => this.#onProducer(p));
        break;
      }
  }

  /** A consumer the server closed while its producer lives on: consume the producer again. */
  async #consumeAgain(track: RemoteTrack): Promise<void> {
    if (this.#remote.get(track.producerId) !== track || !track.stale || !this.#canConsume()) return;
    await this.#consume(track, this.#generation);
  }

  /** Set up and not closed: a consume now can go through (or fail as DISCONNECTED and wait for the join). */
  #canConsume(): boolean {
    return this.#device !== undefined && (this.#machine.state === 'live' || this.#machine.state === 'recovering');
  }

  #wanted(p: { participantId: string; source: string }): boolean {
    return this.#options.autoSubscribe !== false || this.#watched.has(`${p.participantId}/${p.source}`);
  }

  async #onProducer(p: EventData<'producer.added'>): Promise<void> {
    if (this.#remote.has(p.producerId) || !this.#canConsume()) return;
    if (!this.#migratingTrack(p) && !this.#wanted(p)) return;
    await this.#consume(p, this.#generation);
  }

  async #consume(
    p: { producerId: string; participantId: string; source: string },
    generation: number,
  ): Promise<RemoteTrack | undefined> {
    const device = this.#device;
    if (!device) return undefined;
    this.#recv ??= await this.#createTransport('recv');
    const recv = this.#recv;
    let c;
    try {
      c = await this.#client.request('sfu.consume', {
        transportId: recv.id,
        producerId: p.producerId,
        rtpCapabilities: device.rtpCapabilities as never,
      });
    } catch (error) {
      if (error instanceof RequestError && error.code === 'NOT_FOUND') return undefined; // gone meanwhile
      throw this.#mapRequestError(error, 'video');
    }
    const consumer = await recv.consume({
      id: c.consumerId,
      producerId: c.producerId,
      kind: c.kind,
      rtpParameters: c.rtpParameters as RtpParameters,
    });
    if (generation !== this.#generation) {
      consumer.close();
      return undefined;
    }
    let track = this.#remote.get(p.producerId);
    const moved = track ? undefined : this.#migratingTrack(p);
    if (track) track.replaceConsumer(consumer);
    else if (moved) {
      this.#remote.delete(moved.producerId);
      moved.replaceConsumer(consumer);
      this.#remote.set(moved.producerId, moved);
      track = moved;
      this.#emit('trackmigrated', moved);
    } else {
      const source = p.source as MediaSource;
      const ref: { track?: RemoteTrack } = {};
      const layers =
        consumer.kind === 'video'
          ? new LayerSelector({
              scalabilityMode: consumer.rtpParameters.encodings?.[0]?.scalabilityMode,
              quality: this.#quality ?? this.#options.quality ?? 'auto',
              request: (spatialLayer) => {
                if (!ref.track) return;
                void this.#client
                  .request('sfu.setConsumerLayers', { consumerId: ref.track.consumerId, spatialLayer })
                  .catch(() => {});
              },
              onChange: () => {
                if (ref.track) this.#emit('qualitychanged', ref.track);
              },
            })
          : undefined;
      ref.track = track = new RemoteTrack(this, consumer, { participantId: p.participantId, source }, layers);
      this.#remote.set(p.producerId, track);
      const element = this.#watched.get(`${p.participantId}/${source}`) ?? this.#presenterElement(track);
      if (element) track.attach(element);
      this.#emit('trackadded', track);
    }
    await this.#client.request('sfu.resumeConsumer', { consumerId: consumer.id });
    return track;
  }

  /** The `presenterVideo` element for a camera video, when no other track shows in it. */
  #presenterElement(track: RemoteTrack): HTMLVideoElement | undefined {
    const element = this.#options.presenterVideo;
    if (!element || track.kind !== 'video' || track.source !== 'camera') return undefined;
    for (const other of this.#remote.values())
      if (other !== track && other.elements.includes(element)) return undefined;
    return element;
  }

  #dropRemote(producerId: string): void {
    const track = this.#remote.get(producerId);
    if (!track) return;
    this.#remote.delete(producerId);
    track.close();
    this.#emit('trackremoved', track);
  }

  async #publish(source: MediaSource, options: PublishOptions): Promise<LocalTrack> {
    const existing = this.#published.get(source);
    if (existing) return this.#local(existing);
    if (this.#machine.state === 'closed') throw new MediaError('unavailable', 'the media session is closed');
    if (this.#join && !this.#join.routerRtpCapabilities) throw new MediaUnavailableError();
    const track = options.track ?? (await capture(source, options.constraints));
    const simulcast = options.simulcast ?? this.#options.simulcast ?? PRESENTER_SIMULCAST;
    const p: Published = {
      source,
      track,
      encodings: track.kind === 'video' && simulcast !== false ? simulcast : undefined,
      producer: undefined,
      muted: false,
    };
    this.#published.set(source, p);
    track.addEventListener('ended', () => void this.stop(source));
    // Wait for the device (a join in progress), then publish; a reconnect meanwhile publishes it.
    await this.#setup;
    if (this.#machine.state === 'live' || this.#machine.state === 'connecting') {
      try {
        await this.#produce(p, this.#generation);
      } catch (error) {
        if (!(error instanceof RequestError && error.code === 'DISCONNECTED')) {
          this.#published.delete(source);
          track.stop();
          throw this.#mapRequestError(error, track.kind);
        }
      }
    }
    return this.#local(p);
  }

  async #produce(p: Published, generation: number): Promise<void> {
    const device = this.#device;
    if (!device) throw new MediaUnavailableError();
    const kind = p.track.kind as 'audio' | 'video';
    if (!device.canProduce(kind))
      throw new CodecMismatchError(kind, `this browser cannot send ${kind} the server takes`);
    this.#send ??= await this.#createTransport('send');
    const producer = await this.#send.produce({
      track: p.track,
      appData: { source: p.source },
      stopTracks: false,
      ...(p.encodings ? { encodings: p.encodings.map((e) => ({ ...e })) } : {}),
    });
    if (generation !== this.#generation || this.#published.get(p.source) !== p) {
      producer.close();
      return;
    }
    p.producer = producer;
    if (p.muted) {
      producer.pause();
      await this.#client.request('sfu.pauseProducer', { producerId: producer.id });
    }
    this.#emit('localtrackpublished', this.#local(p));
  }

  async #createTransport(direction: 'send' | 'recv'): Promise<Transport> {
    const device = this.#device;
    if (!device) throw new MediaUnavailableError();
    const params = await this.#client.request('sfu.createTransport', { direction });
    const options = {
      id: params.transportId,
      iceParameters: params.iceParameters,
      iceCandidates: params.iceCandidates,
      dtlsParameters: params.dtlsParameters,
    } as Parameters<Device['createSendTransport']>[0];
    const transport = direction === 'send' ? device.createSendTransport(options) : device.createRecvTransport(options);
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      this.#client
        .request('sfu.connectTransport', { transportId: transport.id, dtlsParameters: dtlsParameters as never })
        .then(() => callback(), errback);
    });
    this.#watchConnection(transport, direction, describeCandidates(params.iceCandidates));
    if (direction === 'send') {
      transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
        this.#client
          .request('sfu.produce', {
            transportId: transport.id,
            kind,
            rtpParameters: rtpParameters as never,
            source: appData.source as MediaSource,
          })
          .then(({ producerId }) => callback({ id: producerId }), errback);
      });
    }
    return transport;
  }

  /**
   * Follows a transport's connection. One that fails, or has not connected `connectTimeoutMs`
   * after it started connecting, is reported once as a {@link TransportFailedError} (the
   * session is `recovering` meanwhile) and ICE-restarted, with growing waits, until it connects;
   * one the server no longer knows is rebuilt with a rejoin's set-up.
   */
  #watchConnection(transport: Transport, direction: 'send' | 'recv', candidates: readonly string[]): void {
    const timeoutMs = this.#options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let restarts = 0;
    const ours = (): boolean => !transport.closed && (this.#send === transport || this.#recv === transport);
    const arm = (ms: number): void => {
      clearTimeout(timer);
      timer = setTimeout(failed, ms);
    };
    const failed = (): void => {
      clearTimeout(timer);
      timer = undefined;
      // Without a connection the rejoin decides (#stillThere): the node may be gone, not the path.
      if (!ours() || this.#client.state !== 'joined') return;
      if (!this.#failing.has(transport)) {
        this.#failing.add(transport);
        this.#machine.fire('lost');
        this.#emit('error', new TransportFailedError(direction, candidates));
      }
      const wait = Math.min(timeoutMs * 2 ** ++restarts, MAX_ICE_RESTART_WAIT_MS);
      this.#client
        .request('sfu.restartIce', { transportId: transport.id })
        .then(({ iceParameters }) =>
          transport.restartIce({
            iceParameters: iceParameters as Parameters<Transport['restartIce']>[0]['iceParameters'],
          }),
        )
        .then(
          () => {
            if (ours() && transport.connectionState !== 'connected') arm(wait);
          },
          (error: unknown) => {
            if (!ours() || (error instanceof RequestError && error.code === 'DISCONNECTED')) return;
            // The server lost it: build it (and what ran on it) again.
            this.#failing.delete(transport);
            if (direction === 'send') this.#dropSend();
            else this.#dropRecv();
            if (this.#join) this.#onJoined(this.#join);
          },
        );
    };
    transport.on('connectionstatechange', (state) => {
      if (state === 'connecting' && timer === undefined) arm(timeoutMs);
      else if (state === 'failed') failed();
      else if (state === 'connected') {
        clearTimeout(timer);
        timer = undefined;
        restarts = 0;
        if (this.#failing.delete(transport)) this.#maybeReady();
      }
    });
    // DTLS starts with the first produce or consume; ICE may never get to say `connecting`.
    transport.on('connect', () => {
      if (timer === undefined && transport.connectionState !== 'connected') arm(timeoutMs);
    });
    transport.observer.on('close', () => {
      clearTimeout(timer);
      this.#failing.delete(transport);
    });
  }

  #dropSend(): void {
    this.#send?.close();
    this.#send = undefined;
    for (const p of this.#published.values()) {
      p.producer?.close();
      p.producer = undefined;
    }
  }

  /** The receive side is gone: its consumers are re-created (tracks and elements stay). */
  #dropRecv(): void {
    this.#recv?.close();
    this.#recv = undefined;
  }

  #teardownTransports(): void {
    this.#dropSend();
    this.#dropRecv();
  }

  #mapRequestError(error: unknown, kind: string): unknown {
    if (!(error instanceof RequestError)) return error;
    if (error.code === 'UNAVAILABLE') return new MediaUnavailableError(error.message, error);
    if (/capabilit|codec|cannot consume|can ?not be consumed/i.test(error.message))
      return new CodecMismatchError(kind, error.message, error);
    return error;
  }

  #fail(error: unknown): void {
    if (error instanceof RequestError && error.code === 'DISCONNECTED') return; // the next join recovers
    const mapped = this.#mapRequestError(error, 'media');
    this.#emit('error', mapped instanceof MediaError ? mapped : new MediaError('unavailable', String(mapped), mapped));
  }

  #local(p: Published): LocalTrack {
    return { source: p.source, track: p.track, producerId: p.producer?.id, muted: p.muted };
  }

  #emit<K extends keyof SessionEvents>(event: K, ...args: SessionEvents[K]): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of set) {
      try {
        (listener as unknown as Listener<SessionEvents[K]>)(...args);
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
}

/** The server's ICE candidates as `address:port/protocol`, for {@link TransportFailedError}. */
function describeCandidates(candidates: unknown): string[] {
  if (!Array.isArray(candidates)) return [];
  return candidates.map((c: { address?: string; ip?: string; port?: number; protocol?: string }) => {
    return `${c.address ?? c.ip ?? '?'}:${c.port ?? '?'}/${c.protocol ?? '?'}`;
  });
}

/** Captures one track, with the browser's refusals as typed errors. */
async function capture(
  source: MediaSource,
  constraints: MediaTrackConstraints | boolean | undefined,
): Promise<MediaStreamTrack> {
  let stream: MediaStream;
  try {
    stream =
      source === 'screen' || source === 'screen-audio'
        ? await navigator.mediaDevices.getDisplayMedia({
            video: source === 'screen' ? (constraints ?? true) : true,
            audio: source === 'screen-audio',
          })
        : await navigator.mediaDevices.getUserMedia(
            source === 'camera'
              ? { video: constraints ?? { width: 960, height: 540 } }
              : { audio: constraints ?? true },
          );
  } catch (error) {
    if (error instanceof DOMException && (error.name === 'NotAllowedError' || error.name === 'SecurityError'))
      throw new PermissionDeniedError(source, error);
    throw new MediaDeviceError(source, error);
  }
  const wanted = source === 'microphone' || source === 'screen-audio' ? 'audio' : 'video';
  const track = stream.getTracks().find((t) => t.kind === wanted);
  for (const t of stream.getTracks()) if (t !== track) t.stop();
  if (!track) throw new MediaDeviceError(source);
  return track;
}
