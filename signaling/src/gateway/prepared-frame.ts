/**
 * A text frame built once and written as-is to many sockets: the fan-out's write path. `ws`
 * frames every `ws.send` anew (a header per socket, a corked two-buffer write); a room event
 * goes out identical to every member, so the header and payload are joined into one buffer
 * once (ws's public `Sender.frame`: unmasked, FIN, opcode 1, no RSV1 — never compressed,
 * which is valid whether or not permessage-deflate was negotiated) and each socket gets that
 * buffer written onto its TCP socket, as the sender's own `sendFrame` would (the way Socket.IO
 * writes its pre-encoded frames), without a per-socket call chain: a connection's
 * `FrameWriter` finds the sender once.
 *
 * It relies on internals of `ws` (8.x): the static `Sender.frame`, a WebSocket's `_sender`
 * writing to the same `_socket`, and the sender's `_state` (0 when no compression or blob read
 * is in progress) and `_queue` (sends waiting behind one). A socket whose sender does not look
 * like that, or is busy, gets `ws.send(payload)` instead — always correct, never out of order.
 * `signaling/test/prepared-frame.test.ts` fails when an upgrade of `ws` changes any of them.
 * The written bytes count in `ws.bufferedAmount` (it reads the socket's write queue), so the
 * slow-consumer bound sees them.
 */
import * as wsModule from 'ws';
import { WebSocket } from 'ws';

interface FrameOptions {
  readonly fin: boolean;
  readonly opcode: number;
  readonly mask: boolean;
  readonly readOnly: boolean;
  readonly rsv1: boolean;
}

const TEXT_OPCODE = 1;
const TEXT_FRAME_OPTIONS: FrameOptions = { fin: true, opcode: TEXT_OPCODE, mask: false, readOnly: true, rsv1: false };
/** `ws.send` options on the fallback path. */
const TEXT_SEND = { binary: false } as const;
/** The sender's idle state in ws 8 (`DEFAULT`: not deflating, not reading a blob). */
const SENDER_IDLE = 0;

const frameBuilder = (wsModule as unknown as { Sender?: { frame?: unknown } }).Sender?.frame;

/** Frames `payload` with ws's `Sender.frame` into one buffer; undefined when the builder is missing or changed. */
function frameOnce(payload: Buffer): Buffer | undefined {
  if (typeof frameBuilder !== 'function') return undefined;
  const parts = (frameBuilder as (data: Buffer, options: FrameOptions) => unknown)(payload, TEXT_FRAME_OPTIONS);
  if (!Array.isArray(parts) || !parts.every((p): p is Buffer => Buffer.isBuffer(p))) return undefined;
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}

/** ws's `Sender.frame` builds the bytes RFC 6455 prescribes for a small and a 16-bit-length text frame. */
function framingWorks(): boolean {
  const small = frameOnce(Buffer.from('ok'));
  const medium = frameOnce(Buffer.alloc(300, 0x61));
  return (
    small !== undefined &&
    small.equals(Buffer.from([0x81, 2, 0x6f, 0x6b])) &&
    medium !== undefined &&
    medium.length === 304 &&
    medium.subarray(0, 4).equals(Buffer.from([0x81, 126, 0x01, 0x2c]))
  );
}

/** Whether this build of `ws` frames as expected (checked once at start-up). */
export const FRAME_ONCE_AVAILABLE = framingWorks();

/** The parts of ws's `Sender` the direct write reads on every frame. */
interface IdleCheckedSender {
  readonly _state: unknown;
  readonly _queue: readonly unknown[];
  readonly _socket: { write(chunk: Buffer): boolean; readonly writableHighWaterMark?: unknown };
}

/** The sender of `ws` when its internals look as expected (checked once per connection); else undefined. */
function senderOf(ws: WebSocket): IdleCheckedSender | undefined {
  if (!FRAME_ONCE_AVAILABLE) return undefined;
  const sender = (ws as unknown as { _sender?: { _state?: unknown; _queue?: unknown; _socket?: unknown } })._sender;
  const socket = (ws as unknown as { _socket?: unknown })._socket;
  if (
    sender === undefined ||
    typeof sender._state !== 'number' ||
    !Array.isArray(sender._queue) ||
    sender._socket === undefined ||
    sender._socket !== socket ||
    typeof (socket as { write?: unknown }).write !== 'function'
  ) {
    return undefined;
  }
  return sender as unknown as IdleCheckedSender;
}

/**
 * Writes prepared frames to one socket. The sender and its TCP socket are looked up once; each
 * write then costs what a bare server's `socket.write(frame)` costs, plus three reads that keep
 * it correct: the socket is open, and the sender neither compresses nor holds queued sends.
 */
export class FrameWriter {
  readonly #ws: WebSocket;
  readonly #sender: IdleCheckedSender | undefined;

  constructor(ws: WebSocket) {
    this.#ws = ws;
    this.#sender = senderOf(ws);
  }

  /** Whether a frame written now would take the frame-once path (for tests and diagnostics). */
  get direct(): boolean {
    return this.#idleSender() !== undefined;
  }

  /**
   * Bytes the socket may hold before a direct write reports it full (its writable high-water
   * mark); Infinity when unknown, so a caller bounding the backlog always looks.
   */
  get highWaterMark(): number {
    const mark = this.#sender?._socket.writableHighWaterMark;
    return typeof mark === 'number' ? mark : Number.POSITIVE_INFINITY;
  }

  /**
   * The shared frame straight onto the TCP socket when the sender is idle, else `ws.send`.
   * True when it was written directly and the socket holds less than `highWaterMark` bytes.
   */
  write(message: PreparedFrame): boolean {
    const sender = this.#idleSender();
    if (sender === undefined || message.frame === undefined) {
      this.#ws.send(message.payload, TEXT_SEND);
      return false;
    }
    return sender._socket.write(message.frame);
  }

  #idleSender(): IdleCheckedSender | undefined {
    const sender = this.#sender;
    return sender !== undefined &&
      sender._state === SENDER_IDLE &&
      sender._queue.length === 0 &&
      this.#ws.readyState === WebSocket.OPEN
      ? sender
      : undefined;
  }
}

/** One text message, framed once (when built) and shared by every socket it is written to. */
export class PreparedFrame {
  /** The message itself (UTF-8 JSON). */
  readonly payload: Buffer;
  /** Header and payload in one buffer; undefined when this build of `ws` frames differently. */
  readonly frame: Buffer | undefined;

  constructor(payload: string | Buffer) {
    this.payload = typeof payload === 'string' ? Buffer.from(payload) : payload;
    this.frame = FRAME_ONCE_AVAILABLE ? frameOnce(this.payload) : undefined;
  }
}
