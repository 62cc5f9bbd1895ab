/**
 * One attempt at delivering a webhook: `POST {BACKEND_URL}/webhooks` signed per the Standard
 * Webhooks specification by the `standardwebhooks` library (`webhook-id`, `webhook-timestamp`,
 * `webhook-signature` = `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`). Any 2xx
 * acknowledges; everything else — another status, a timeout, a refused or reset connection — is
 * a failure the caller retries. Each attempt is counted in the bridge's request metrics. Plain
 * `node:http(s)` with a keep-alive agent: a webhook costs a fraction of a `fetch`'s CPU.
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Webhook } from 'standardwebhooks';
import type { BackendMetrics, RequestOutcome } from '../backend-metrics.js';
import type { WebhookMessage } from './webhook-message.js';

export interface WebhookSenderOptions {
  /** `BACKEND_URL`: webhooks go to `{backendUrl}/webhooks`. */
  readonly backendUrl: string;
  /** `BACKEND_WEBHOOK_SECRET` (`whsec_` + base64). */
  readonly secret: string;
  /** One attempt's time budget. */
  readonly timeoutMs: number;
  readonly metrics?: BackendMetrics | undefined;
}

/** How one attempt ended. */
export interface AttemptResult {
  readonly ok: boolean;
  readonly outcome: RequestOutcome;
  /** The HTTP status, when the backend answered. */
  readonly status?: number;
  /** What went wrong, for logs and dead letters. */
  readonly error?: string;
}

export class WebhookSender {
  readonly #url: URL;
  /** Connections kept alive between webhooks (idle ones do not hold the process open). */
  readonly #agent: HttpAgent;
  readonly #signer: Webhook;
  readonly #timeoutMs: number;
  readonly #metrics: BackendMetrics | undefined;

  constructor(options: WebhookSenderOptions) {
    this.#url = new URL(`${options.backendUrl.replace(/\/+$/, '')}/webhooks`);
    this.#agent =
      this.#url.protocol === 'https:' ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
    this.#signer = new Webhook(options.secret);
    this.#timeoutMs = options.timeoutMs;
    this.#metrics = options.metrics;
  }

  /** The headers of one attempt, signed now. */
  headers(message: Pick<WebhookMessage, 'id' | 'body'>, now = new Date()): Record<string, string> {
    return {
      'content-type': 'application/json',
      'webhook-id': message.id,
      'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': this.#signer.sign(message.id, now, message.body),
    };
  }

  /** One attempt; never throws. */
  async send(message: Pick<WebhookMessage, 'id' | 'body'>): Promise<AttemptResult> {
    const startedAt = performance.now();
    const result = await this.#post(message);
    this.#metrics?.requests.inc({ endpoint: 'webhooks', outcome: result.outcome });
    this.#metrics?.requestSeconds.observe({ endpoint: 'webhooks' }, (performance.now() - startedAt) / 1000);
    return result;
  }

  /** One POST on a kept-alive connection; resolves how it ended, never rejects. */
  #post(message: Pick<WebhookMessage, 'id' | 'body'>): Promise<AttemptResult> {
    return new Promise((resolve) => {
      let settled = false;
      const done = (result: AttemptResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(result);
      };
      const headers = { ...this.headers(message), 'content-length': String(Buffer.byteLength(message.body)) };
      const request = (this.#url.protocol === 'https:' ? httpsRequest : httpRequest)(
        this.#url,
        { method: 'POST', headers, agent: this.#agent },
        (response) => {
          const status = response.statusCode ?? 0;
          // The body is not needed; reading it to the end frees the connection for the next request.
          response.resume();
          response.once('end', () => {
            if (status >= 200 && status < 300) done({ ok: true, outcome: 'ok', status });
            else {
              const outcome = status >= 500 ? 'http_5xx' : 'http_4xx';
              done({ ok: false, outcome, status, error: `the backend answered ${status}` });
            }
          });
          response.once('error', (error) => done({ ok: false, outcome: 'network', error: error.message }));
        },
      );
      const timer = setTimeout(() => {
        done({ ok: false, outcome: 'timeout', error: `no answer within ${this.#timeoutMs} ms` });
        request.destroy();
      }, this.#timeoutMs);
      request.once('error', (error) => done({ ok: false, outcome: 'network', error: error.message }));
      request.end(message.body);
    });
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.#agent.destroy();
  }
}
