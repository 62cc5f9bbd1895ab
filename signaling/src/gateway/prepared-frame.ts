/**
 * A text frame built once and written as-is to many sockets: the fan-out's write path. `ws`
 * frames every `ws.send` anew (a header per socket, a corked two-buffer write); a room event
 * goes out identical to every member, so the header and payload are joined into one buffer
 * once (ws's public `Sender.frame`: unmasked, FIN, opcode 1, no RSV1 — never compressed,
 * which is valid whether or not permessage-deflate was negotiated) and each socket gets that
 * buffer through its own sender's `sendFrame`, the way Socket.IO writes its pre-encoded frames.
 *
 * It relies on three internals of `ws` (8.x): the static `Sender.frame`, a WebSocket's
 * `_sender` with `sendFrame(list)`, and the sender's `_state` (0 when no compression or blob
 * read is in progress) and `_queue` (sends waiting behind one). A socket whose sender does not
 * look like that, or is busy, gets `ws.send(payload)` instead — always correct, never out of
 * order. `signaling/test/prepared-frame.test.ts` fails when an upgrade of `ws` changes any of
 * them. The written bytes count in `ws.bufferedAmount` (it reads the socket's write queue), so
 * the slow-consumer bound sees them.
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

/** The parts of ws's `Sender` this module uses (absent from @types/ws). */
interface SenderInternals {
  readonly _state?: unknown;
  readonly _queue?: unknown;
  sendFrame?: (list: readonly Buffer[], cb?: () => void) => void;
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

/** The sender of `ws` when a pre-built frame may be written through it now; undefined → use `ws.send`. */
function idleSender(ws: WebSocket): SenderInternals | undefined {
  if (!FRAME_ONCE_AVAILABLE || ws.readyState !== WebSocket.OPEN) return undefined;
  const sender = (ws as unknown as { _sender?: SenderInternals })._sender;
  if (
    sender === undefined ||
    typeof sender.sendFrame !== 'function' ||
    sender._state !== SENDER_IDLE ||
    !Array.isArray(sender._queue) ||
    sender._queue.length !== 0
  ) {
    return undefined;
  }
  return sender;
}

/** Whether a frame written to `ws` now would take the frame-once path (for tests and diagnostics). */
export function writesPreparedFrames(ws: WebSocket): boolean {
  return idleSender(ws) !== undefined;
}

/** One text message, framed on first write and shared by every socket it is written to. */
export class PreparedFrame {
  /** The message itself (UTF-8 JSON). */
  readonly payload: Buffer;
  #frame: Buffer | undefined;

  constructor(payload: string | Buffer) {
    this.payload = typeof payload === 'string' ? Buffer.from(payload) : payload;
  }

  /** Header and payload in one buffer (built once). */
  get frame(): Buffer | undefined {
    this.#frame ??= frameOnce(this.payload);
    return this.#frame;
  }

  /** Writes the message to `ws`: the shared frame when its sender is idle, else `ws.send`. */
  writeTo(ws: WebSocket): void {
    const sender = idleSender(ws);
    const frame = sender && this.frame;
    if (sender?.sendFrame && frame) sender.sendFrame([frame]);
    else ws.send(this.payload, TEXT_SEND);
  }
}
