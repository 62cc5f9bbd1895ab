/**
 * A transport that cannot connect, in a real browser: the node announces an address nothing
 * answers on (it listens on 127.0.0.1 and announces 127.0.0.2, both loopback), so the browser's
 * ICE checks go unanswered. Instead of a silent black video the application gets a
 * `TransportFailedError` — for the presenter's send transport and the trader's receive
 * transport — with a hint and the addresses tried, within the session's `connectTimeoutMs`
 * (Chromium itself would declare ICE failed only after about 30 s), and the session says
 * `recovering`, not `live`, while it keeps trying.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemoPage, launchChromium } from '../../test-support/browser.js';
import { openDemoPage, type DemoPage } from '../../test-support/demo-page.js';
import { startTestNode, type TestNode } from '../../test-support/harness.js';

/** What the page reports of the first media error of a session made with a short connect timeout. */
interface ErrorReport {
  name: string;
  code: string;
  direction: string;
  hint: string;
  message: string;
  candidates: string[];
  state: string;
  afterMs: number;
}

describe('a transport that cannot connect', () => {
  let browser: Browser;
  let t: TestNode;
  const pages: DemoPage[] = [];

  beforeAll(async () => {
    buildDemoPage();
    browser = await launchChromium();
    t = await startTestNode({
      MEDIA_ENABLED: 'true',
      MEDIASOUP_NUM_WORKERS: '1',
      RTC_BASE_PORT: '0',
      RTC_LISTEN_IP: '127.0.0.1',
      RTC_ANNOUNCED_ADDRESS: '127.0.0.2',
    });
    expect(t.node.media, 'media must be up for this test').toBeDefined();
  }, 120_000);

  afterAll(async () => {
    for (const p of pages) await p.context.close();
    await browser?.close();
    await t?.close();
  });

  async function open(userId: string, role: 'presenter' | 'trader'): Promise<DemoPage> {
    const token = await t.token(userId, { role, name: userId, roomId: 'unreachable-room' });
    const page = await openDemoPage(browser, t.httpUrl, token, { label: userId });
    pages.push(page);
    return page;
  }

  /**
   * In the page: a second MediaSession on the page's client with `connectTimeoutMs` 2 s, which
   * keeps its first error (and its state then) in `window.firstError`; the presenter publishes
   * its camera on it.
   */
  function startSession(page: DemoPage, publish: boolean): Promise<void> {
    return page.page.evaluate(async (publish) => {
      type Session = {
        state: string;
        on(event: 'error', listener: (error: Record<string, unknown>) => void): () => void;
        publishCamera(): Promise<unknown>;
      };
      const w = window as unknown as {
        firstError?: Promise<ErrorReport>;
        tradingRoom: {
          client: unknown;
          MediaSession: new (client: unknown, options: { connectTimeoutMs: number }) => Session;
        };
      };
      const session = new w.tradingRoom.MediaSession(w.tradingRoom.client, { connectTimeoutMs: 2000 });
      const started = performance.now();
      w.firstError = new Promise((resolve) =>
        session.on('error', (e) =>
          resolve({
            name: String(e.name),
            code: String(e.code),
            direction: String(e.direction),
            hint: String(e.hint),
            message: String(e.message),
            candidates: (e.candidates as string[] | undefined) ?? [],
            state: session.state,
            afterMs: Math.round(performance.now() - started),
          }),
        ),
      );
      if (publish) await session.publishCamera();
    }, publish);
  }

  /** The first error of the session {@link startSession} made, or undefined when none came within `waitMs`. */
  function firstError(page: DemoPage, waitMs: number): Promise<ErrorReport | undefined> {
    return page.page.evaluate(async (waitMs) => {
      const none = new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), waitMs));
      return Promise.race([(window as unknown as { firstError: Promise<ErrorReport> }).firstError, none]);
    }, waitMs);
  }

  it(
    'the presenter and the trader each get a TransportFailedError with a hint, not a black video',
    { timeout: 90_000 },
    async () => {
      const presenter = await open('presenter-unreachable', 'presenter');
      const trader = await open('trader-unreachable', 'trader');

      // The trader's session consumes the presenter's camera by itself once it is published.
      await startSession(trader, false);
      await startSession(presenter, true);
      // 8 s is four times the 2 s asked for, and well below Chromium's own ICE failure (15–30 s).
      const sent = await firstError(presenter, 8_000);
      expect(sent, 'the presenter got no error: its camera would be silently missing').toBeDefined();
      expect(sent).toMatchObject({ name: 'TransportFailedError', code: 'transport-failed', direction: 'send' });
      expect(sent?.hint).toMatch(/RTC_ANNOUNCED_ADDRESS/);
      expect(sent?.message).toContain(sent?.hint);
      // The addresses the browser tried are named: the announced one, never reached.
      expect(sent?.candidates.length).toBeGreaterThan(0);
      for (const candidate of sent?.candidates ?? []) expect(candidate).toMatch(/^127\.0\.0\.2:\d+\/(udp|tcp)$/);
      expect(sent?.message).toContain(sent?.candidates[0]);
      expect(sent?.state).toBe('recovering');

      // The trader's receive side fails alike.
      const received = await firstError(trader, 8_000);
      expect(received, 'the trader got no error: a black video').toBeDefined();
      expect(received).toMatchObject({ name: 'TransportFailedError', code: 'transport-failed', direction: 'recv' });
      expect(received?.state).toBe('recovering');
      console.log(
        `TransportFailedError after ${sent?.afterMs} ms (send) and ${received?.afterMs} ms (recv) with connectTimeoutMs 2000`,
      );

      // The demo page's own session (the default timeout) shows it to the user too.
      await expect
        .poll(() => trader.page.textContent('#error'), { timeout: 30_000, interval: 250 })
        .toMatch(/the recv transport could not connect/);
      expect(await trader.page.getAttribute('#state', 'data-media')).toBe('recovering');
      expect([...presenter.problems, ...trader.problems]).toEqual([]);
    },
  );
});
