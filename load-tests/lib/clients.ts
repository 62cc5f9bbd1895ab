/**
 * The one client harness every benchmark uses against every server: raw `ws` clients that join
 * a room, count the chat frames they receive (a prefix compare, no parse, so the load generator
 * stays cheaper than the server), and a sender that sends chat either as fast as acknowledged
 * (bounded by an in-flight window) or at a fixed rate carrying its send time for latency.
 *
 * Two wire dialects, the same client code:
 * - `json`: trading-room's protocol (`{"id":n,"method":..,"data":..}` → `{"id":n,"ok":..}`,
 *   events `{"event":"chat.message",...}`); the bare ws baseline speaks the same.
 * - `socketio`: Engine.IO v4 / Socket.IO v5 packets over a plain WebSocket (`40` connect,
 *   `42n[...]` event with ack id, `43n[...]` ack, `2`/`3` ping/pong).
 */
import WebSocket from 'ws';

export type Dialect = 'json' | 'socketio';

/** Hot counters shared by every client of the process. */
export const stats = {
  /** Chat frames received, all clients together. */
  chatDelivered: 0,
};

const CHAT_PREFIX: Record<Dialect, Buffer> = {
  json: Buffer.from('{"event":"chat.message"'),
  socketio: Buffer.from('42["chat.message"'),
};

export interface Endpoint {
  readonly dialect: Dialect;
  readonly port: number;
  /** Path of the WebSocket endpoint (`/ws`, `/socket.io/`). */
  readonly path: string;
}

export interface Identity {
  readonly token: string;
  readonly user: string;
  readonly room: string;
  /** Source address on the loopback (spreads clients over 127.x addresses for per-IP limits). */
  readonly localAddress?: string;
}

export function urlOf(endpoint: Endpoint, id: Identity): string {
  const q = new URLSearchParams({ token: id.token, user: id.user, room: id.room });
  if (endpoint.dialect === 'socketio') {
    q.set('EIO', '4');
    q.set('transport', 'websocket');
  }
  return `ws://127.0.0.1:${endpoint.port}${endpoint.path}?${q.toString()}`;
}

export type ChatListener = (client: BenchClient, frame: Buffer) => void;
interface Reply {
  readonly ok: boolean;
  readonly body: string;
}

export class BenchClient {
  readonly ws: WebSocket;
  readonly dialect: Dialect;
  readonly identity: Identity;
  chats = 0;
  closeCode: number | undefined;
  onChat: ChatListener | undefined;
  readonly closed: Promise<number>;
  #nextId = 1;
  readonly #pending = new Map<number, (reply: Reply) => void>();
  #connected: (() => void) | undefined;
  readonly #prefix: Buffer;

  constructor(endpoint: Endpoint, identity: Identity) {
    this.dialect = endpoint.dialect;
    this.identity = identity;
    this.#prefix = CHAT_PREFIX[endpoint.dialect];
    this.ws = new WebSocket(urlOf(endpoint, identity), {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      maxPayload: 1024 * 1024,
      handshakeTimeout: 15_000,
      ...(identity.localAddress ? { localAddress: identity.localAddress } : {}),
    });
    this.ws.on('message', (data: Buffer) => this.#onMessage(data));
    this.ws.on('error', () => {});
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code) => {
        this.closeCode = code;
        for (const reply of this.#pending.values()) reply({ ok: false, body: `closed ${code}` });
        this.#pending.clear();
        resolve(code);
      }),
    );
  }

  /** Opens the socket (and the Socket.IO namespace) and joins the room. */
  async connectAndJoin(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const fail = (error: Error): void => reject(error);
      this.ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => reject(new Error(`upgrade refused: ${res.statusCode} ${body.slice(0, 200)}`)));
      });
      this.ws.once('error', fail);
      if (this.dialect === 'socketio') {
        this.#connected = () => {
          this.ws.off('error', fail);
          resolve();
        };
      } else {
        this.ws.once('open', () => {
          this.ws.off('error', fail);
          resolve();
        });
      }
    });
    const reply = await this.request('room.join', {});
    if (!reply.ok) throw new Error(`room.join refused: ${reply.body.slice(0, 200)}`);
  }

  /** Sends a request; resolves with its reply (or `ok: false` when the socket closes first). */
  request(method: string, data: unknown): Promise<Reply> {
    return new Promise((resolve) => this.send(method, data, resolve));
  }

  /** Sends a request; `onReply` runs when its reply arrives. Returns false when the socket is not open. */
  send(method: string, data: unknown, onReply?: (reply: Reply) => void): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) {
      onReply?.({ ok: false, body: 'not open' });
      return false;
    }
    const id = this.#nextId++;
    if (onReply) this.#pending.set(id, onReply);
    this.ws.send(
      this.dialect === 'json'
        ? `{"id":${id},"method":${JSON.stringify(method)},"data":${JSON.stringify(data)}}`
        : `42${id}${JSON.stringify([method, data])}`,
    );
    return true;
  }

  /** The `text` of a received chat frame. */
  static chatText(dialect: Dialect, frame: Buffer): string | undefined {
    try {
      if (dialect === 'json') return (JSON.parse(frame.toString()) as { data?: { text?: string } }).data?.text;
      const packet = JSON.parse(frame.subarray(2).toString()) as [string, { text?: string }];
      return packet[1]?.text;
    } catch {
      return undefined;
    }
  }

  terminate(): void {
    this.ws.terminate();
  }

  #onMessage(data: Buffer): void {
    const prefix = this.#prefix;
    if (data.length > prefix.length && data.compare(prefix, 0, prefix.length, 0, prefix.length) === 0) {
      stats.chatDelivered++;
      this.chats++;
      this.onChat?.(this, data);
      return;
    }
    if (this.dialect === 'json') this.#onJsonControl(data);
    else this.#onSocketIoControl(data.toString());
  }

  #onJsonControl(data: Buffer): void {
    if (data[2] !== 0x69 /* {"i */) return; // events other than chat are ignored
    let parsed: { id?: unknown; ok?: unknown };
    try {
      parsed = JSON.parse(data.toString()) as { id?: unknown; ok?: unknown };
    } catch {
      return;
    }
    if (typeof parsed.id !== 'number') return;
    const reply = this.#pending.get(parsed.id);
    if (!reply) return;
    this.#pending.delete(parsed.id);
    reply({ ok: parsed.ok === true, body: data.toString() });
  }

  #onSocketIoControl(text: string): void {
    switch (text[0]) {
      case '0': // Engine.IO open: connect to the default namespace
        this.ws.send('40');
        return;
      case '2': // ping
        this.ws.send('3');
        return;
      case '4':
        break;
      default:
        return;
    }
    const type = text[1];
    if (type === '0') {
      this.#connected?.();
      this.#connected = undefined;
    } else if (type === '4') {
      this.ws.close();
    } else if (type === '3') {
      const open = text.indexOf('[');
      const id = Number(text.slice(2, open));
      const reply = this.#pending.get(id);
      if (!reply) return;
      this.#pending.delete(id);
      let ok: boolean;
      try {
        ok = (JSON.parse(text.slice(open)) as [{ ok?: unknown }])[0]?.ok === true;
      } catch {
        ok = false;
      }
      reply({ ok, body: text });
    }
  }
}

/** Opens, and joins, one client per identity, `concurrency` at a time. */
export async function connectAll(
  endpoint: Endpoint,
  identities: readonly Identity[],
  options: { concurrency?: number; timeoutMs?: number } = {},
): Promise<BenchClient[]> {
  const clients: BenchClient[] = new Array<BenchClient>(identities.length);
  const deadline = Date.now() + (options.timeoutMs ?? 90_000);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < identities.length) {
      if (Date.now() > deadline) throw new Error(`connecting ${identities.length} clients took too long`);
      const i = next++;
      const client = new BenchClient(endpoint, identities[i] as Identity);
      clients[i] = client;
      await client.connectAndJoin();
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency ?? 32 }, worker));
  } catch (error) {
    for (const c of clients) c?.terminate();
    throw error;
  }
  return clients;
}

export async function closeAll(clients: readonly BenchClient[], timeoutMs = 5000): Promise<void> {
  for (const c of clients) c.terminate();
  await Promise.race([Promise.all(clients.map((c) => c.closed)), new Promise((r) => setTimeout(r, timeoutMs))]);
}

export interface PumpOptions {
  readonly sender: BenchClient;
  /** Clients that receive each message (for the in-flight bound). */
  readonly receivers: number;
  /** Requests sent and not yet acknowledged, at most. */
  readonly window: number;
  /** Deliveries sent and not yet received by the clients, at most (end-to-end back-pressure). */
  readonly maxInFlightDeliveries: number;
  readonly maxMessages: number;
  readonly maxDurationMs: number;
  readonly text: string;
  /**
   * Starts every text with `lat:<performance.now()> ` (the text keeps its length), so a
   * {@link StampLatency} on the receivers can take send → receive latency.
   */
  readonly stampLatency?: boolean;
  /** Paces the sends to at most this many messages per second (the window still bounds them); unset: as fast as acknowledged. */
  readonly ratePerSecond?: number;
}

/**
 * Sends chat as fast as the server acknowledges it, bounded by a window of unacknowledged
 * requests, by deliveries still in flight, by count and by time. Stops by itself.
 */
export class Pump {
  sent = 0;
  acked = 0;
  refused = 0;
  lastRefusal = '';
  readonly done: Promise<void>;
  readonly #options: PumpOptions;
  readonly #startDelivered = stats.chatDelivered;
  #outstanding = 0;
  #stopped = false;
  readonly #timer: NodeJS.Timeout;
  readonly #deadline: number;
  readonly #startedAt = performance.now();
  #finish!: () => void;

  constructor(options: PumpOptions) {
    this.#options = options;
    this.#deadline = Date.now() + options.maxDurationMs;
    this.done = new Promise((r) => (this.#finish = r));
    this.#timer = setInterval(() => this.#fill(), 1);
    this.#fill();
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#finish();
  }

  #fill(): void {
    const o = this.#options;
    if (this.#stopped) return;
    if (this.sent >= o.maxMessages || Date.now() >= this.#deadline || o.sender.closeCode !== undefined) {
      this.stop();
      return;
    }
    const paced =
      o.ratePerSecond === undefined
        ? Number.POSITIVE_INFINITY
        : Math.floor(((performance.now() - this.#startedAt) / 1000) * o.ratePerSecond) + 1;
    while (
      this.#outstanding < o.window &&
      this.sent < o.maxMessages &&
      this.sent < paced &&
      this.sent * o.receivers - (stats.chatDelivered - this.#startDelivered) < o.maxInFlightDeliveries
    ) {
      this.#outstanding++;
      this.sent++;
      o.sender.send('chat.send', { text: o.stampLatency ? stamped(o.text) : o.text }, (reply) => {
        this.#outstanding--;
        if (reply.ok) this.acked++;
        else {
          this.refused++;
          this.lastRefusal = reply.body.slice(0, 200);
        }
        this.#fill();
      });
    }
  }
}

/** `text` with the send time in front, cut back to the length of `text`. */
function stamped(text: string): string {
  const stamp = `lat:${performance.now().toFixed(3)} `;
  return (stamp + text).slice(0, Math.max(text.length, stamp.length));
}

/** Nearest-rank percentile of the first `n` values of `values` (sorted in place). */
export function percentile(values: Float64Array, n: number, p: number): number {
  if (n === 0) return Number.NaN;
  const sorted = values.subarray(0, n).sort();
  return sorted[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))] as number;
}

/** Records send→receive latencies (ms) carried as `lat:<performance.now()>` chat texts. */
export class LatencyRecorder {
  readonly values: Float64Array;
  count = 0;
  dropped = 0;

  constructor(capacity: number) {
    this.values = new Float64Array(capacity);
  }

  /** Installs itself on `clients` (the sender excluded by the caller). */
  attach(clients: readonly BenchClient[]): void {
    const listener: ChatListener = (client, frame) => {
      const text = BenchClient.chatText(client.dialect, frame);
      if (!text || !text.startsWith('lat:')) return;
      const latency = performance.now() - Number(text.slice(4));
      if (this.count < this.values.length) this.values[this.count++] = latency;
      else this.dropped++;
    };
    for (const c of clients) c.onChat = listener;
  }

  p(pct: number): number {
    return percentile(Float64Array.from(this.values.subarray(0, this.count)), this.count, pct);
  }
}

const LAT_MARK = Buffer.from('lat:');
const DOT = 0x2e;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

/**
 * Send → receive latency (ms) of chats stamped by a {@link Pump} with `stampLatency`, taken on
 * the clients it is attached to while it is recording. Reads the stamp straight from the frame
 * bytes (no JSON parse), so it can sit on many receivers of a fast fan-out without making the
 * load generator the bottleneck. Bounded: at most `capacity` samples, the rest counted as dropped.
 */
export class StampLatency {
  readonly #values: Float64Array;
  #count = 0;
  dropped = 0;
  #recording = false;

  constructor(capacity: number) {
    this.#values = new Float64Array(capacity);
  }

  get count(): number {
    return this.#count;
  }

  /** Installs itself on `clients` (replaces their `onChat`). */
  attach(clients: readonly BenchClient[]): void {
    const listener: ChatListener = (_client, frame) => {
      if (!this.#recording) return;
      const at = frame.indexOf(LAT_MARK);
      if (at < 0) return;
      const sentAt = parseStamp(frame, at + LAT_MARK.length);
      if (Number.isNaN(sentAt)) return;
      if (this.#count < this.#values.length) this.#values[this.#count++] = performance.now() - sentAt;
      else this.dropped++;
    };
    for (const c of clients) c.onChat = listener;
  }

  /** Forgets earlier samples and records from now on. */
  start(): void {
    this.#count = 0;
    this.dropped = 0;
    this.#recording = true;
  }

  stop(): void {
    this.#recording = false;
  }

  /** Nearest-rank percentile of the samples so far; NaN without samples. */
  p(pct: number): number {
    return percentile(Float64Array.from(this.#values.subarray(0, this.#count)), this.#count, pct);
  }
}

/** The decimal number (digits and one dot) at `offset` of `frame`; NaN when there is none. */
function parseStamp(frame: Buffer, offset: number): number {
  let whole = 0;
  let fraction = 0;
  let scale = 1;
  let seenDot = false;
  let digits = 0;
  for (let i = offset; i < frame.length && i < offset + 24; i++) {
    const b = frame[i] as number;
    if (b === DOT && !seenDot) {
      seenDot = true;
      continue;
    }
    if (b < DIGIT_0 || b > DIGIT_9) break;
    digits++;
    if (seenDot) {
      scale /= 10;
      fraction += (b - DIGIT_0) * scale;
    } else whole = whole * 10 + (b - DIGIT_0);
  }
  return digits === 0 ? Number.NaN : whole + fraction;
}
