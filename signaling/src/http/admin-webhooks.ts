/**
 * The admin API of the webhook dead letters (behind the admin token, like every `/admin/` route):
 *
 * - `GET /admin/webhooks/dead-letters?limit=N` (1–1000, default 100): the newest dead letters,
 *   `{deadLetters: [{deadLetterId, webhookId, roomId, type, body, attempts, lastError, deadAt}]}`.
 * - `POST /admin/webhooks/dead-letters/replay` with `{"ids": [deadLetterId, …]}` (or `{}`: the 100
 *   oldest): sends each once more, with its `webhook-id` and a fresh signature; those the backend
 *   acknowledges are removed. Answers `{replayed: [ids], failed: [{deadLetterId, error}]}`.
 *
 * Webhooks off: `404`. With Redis the dead letters are the cluster's (any node lists and replays).
 */
import type { IncomingMessage } from 'node:http';
import { z } from 'zod';
import type { WebhookOutbox } from '../../../backend-bridge/src/index.js';
import { HTTP_STATUS, type HttpErrorCode } from '../errors.js';

/** An answer for the HTTP API to send as JSON. */
export interface AdminAnswer {
  readonly status: number;
  readonly body: unknown;
  /** `Allow`, for a method that is not allowed. */
  readonly allow?: string;
}

const replaySchema = z.object({ ids: z.array(z.string().min(1).max(200)).min(1).max(100).optional() }).strict();

/** Larger replay bodies are refused. */
const MAX_BODY_BYTES = 64 * 1024;

/** Answers `/admin/webhooks/…`; `rest` is the path's segments after `webhooks`. */
export async function adminWebhooks(
  request: IncomingMessage,
  url: URL,
  rest: readonly string[],
  outbox: WebhookOutbox | undefined,
): Promise<AdminAnswer> {
  const method = request.method ?? 'GET';
  if (rest[0] !== 'dead-letters' || rest.length > 2 || (rest.length === 2 && rest[1] !== 'replay')) {
    return error('NOT_FOUND', `no admin route ${method} ${url.pathname}`);
  }
  if (!outbox) return error('NOT_FOUND', 'webhooks are off: set BACKEND_URL and BACKEND_WEBHOOK_SECRET');
  if (rest.length === 1) {
    if (method !== 'GET') return { ...error('METHOD_NOT_ALLOWED', 'method not allowed; use GET'), allow: 'GET' };
    const limit = Number(url.searchParams.get('limit') ?? 100);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      return error('BAD_REQUEST', 'limit must be an integer from 1 to 1000');
    }
    return { status: 200, body: { deadLetters: await outbox.deadLetters(limit) } };
  }
  if (method !== 'POST') return { ...error('METHOD_NOT_ALLOWED', 'method not allowed; use POST'), allow: 'POST' };
  const text = await readBody(request);
  if (text === undefined) return error('BAD_REQUEST', `the body is larger than ${MAX_BODY_BYTES} bytes`);
  let parsed: unknown;
  try {
    parsed = text.trim() === '' ? {} : JSON.parse(text);
  } catch {
    return error('BAD_REQUEST', 'the body is not JSON');
  }
  const body = replaySchema.safeParse(parsed);
  if (!body.success) return error('BAD_REQUEST', 'expected {"ids": [deadLetterId, …]} (1 to 100 ids) or {}');
  return { status: 200, body: await outbox.replayDeadLetters(body.data.ids) };
}

function error(code: HttpErrorCode, message: string): AdminAnswer {
  return { status: HTTP_STATUS[code], body: { error: { code, message } } };
}

async function readBody(request: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
