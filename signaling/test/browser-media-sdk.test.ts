/**
 * The SDK's media layer in a real browser, on the demo page (built only on the SDK): a presenter
 * publishes camera and screen, a trader watches both; then the trader's connection is cut, and
 * later the presenter's, and each time the trader's videos come back by themselves — the
 * transports, producers and consumers recreated by the SDK. How long each gap was is printed.
 *
 * The node runs with `SESSION_RESUME_GRACE_MS=0`, so a dropped connection removes its
 * participant and closes its media at once: every recovery has to rebuild (the presenter
 * publishes again under new producer ids). A second node with the default grace shows the
 * other path: a resume keeps the server's media, and the SDK keeps (ICE-restarts) its own.
 *
 * Connections are cut for real in the network path: each page reaches the node through its own
 * TCP relay, and the test resets the relay's sockets (both ends see the connection die).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemoPage, launchChromium } from '../../test-support/browser.js';
import { decoding, openDemoPage, pageMediaStates, pageVideos, type DemoPage } from '../../test-support/demo-page.js';
import { startTestNode, type TestNode } from '../../test-support/harness.js';

/** A TCP relay to the node whose connections can be reset. */
class Relay {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  constructor(target: number) {
    this.#server = createServer((inbound) => {
      const outbound = connect(target, '127.0.0.1');
      for (const [a, b] of [
        [inbound, outbound],
        [outbound, inbound],
      ] as const) {
        this.#sockets.add(a);
        a.pipe(b);
        a.on('error', () => b.destroy());
        a.on('close', () => {
          this.#sockets.delete(a);
          b.destroy();
        });
      }
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** Resets every connection through the relay (the page's WebSocket among them). */
  cut(): void {
    for (const socket of this.#sockets) socket.resetAndDestroy();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

describe('media SDK on the demo page: publish, watch, recover', () => {
  let browser: Browser;
  const relays: Relay[] = [];
  const nodes: TestNode[] = [];
  const pages: DemoPage[] = [];
  /** What went wrong on every page opened. */
  const problems = (): string[] => pages.flatMap((p) => p.problems);

  beforeAll(async () => {
    buildDemoPage();
    browser = await launchChromium({ extraArgs: ['--auto-select-desktop-capture-source=Entire screen'] });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    for (const relay of relays) await relay.close();
    for (const node of nodes) await node.close();
  });

  async function node(env: Record<string, string> = {}): Promise<TestNode> {
    const t = await startTestNode({ MEDIA_ENABLED: 'true', MEDIASOUP_NUM_WORKERS: '1', RTC_BASE_PORT: '0', ...env });
    nodes.push(t);
    expect(t.node.media, 'media must be up for this test').toBeDefined();
    return t;
  }

  async function open(t: TestNode, userId: string, role: 'presenter' | 'trader', roomId: string) {
    const relay = new Relay(t.port);
    relays.push(relay);
    const base = await relay.listen();
    const token = await t.token(userId, { role, name: userId, roomId });
    const demo = await openDemoPage(browser, base, token, { label: userId });
    pages.push(demo);
    return { page: demo.page, relay };
  }

  it(
    'a trader watches camera and screen, and both come back by themselves after either side drops',
    { timeout: 180_000 },
    async () => {
      const t = await node({ SESSION_RESUME_GRACE_MS: '0' });
      const presenter = await open(t, 'presenter-m', 'presenter', 'sdk-room');
      const trader = await open(t, 'trader-m', 'trader', 'sdk-room');
      expect(await trader.page.textContent('#waiting')).toBe('Waiting for the presenter…');

      await presenter.page.click('#share-camera');
      await presenter.page.click('#share-screen');
      let camera = await decoding(trader.page, 'camera');
      let screen = await decoding(trader.page, 'screen');
      expect(await pageMediaStates(trader.page)).toEqual(['connecting', 'live']);

      // The trader's connection dies: the node drops it (no grace) and its consumers with it.
      let cutAt = Date.now();
      trader.relay.cut();
      await trader.page.waitForSelector('#state[data-state="reconnecting"]', { timeout: 10_000 });
      camera = await decoding(trader.page, 'camera', { before: camera });
      const traderGapMs = Date.now() - cutAt;
      screen = await decoding(trader.page, 'screen', { before: screen });
      console.log(`trader's connection cut: video back after ${traderGapMs} ms`);
      expect((await pageMediaStates(trader.page)).slice(-2)).toEqual(['recovering', 'live']);

      // The presenter's connection dies: its producers close; it publishes again, the trader follows.
      cutAt = Date.now();
      presenter.relay.cut();
      await presenter.page.waitForSelector('#state[data-state="reconnecting"]', { timeout: 10_000 });
      const newCamera = await decoding(trader.page, 'camera', { before: camera });
      const presenterGapMs = Date.now() - cutAt;
      const newScreen = await decoding(trader.page, 'screen', { before: screen });
      console.log(`presenter's connection cut: video back after ${presenterGapMs} ms (re-published)`);
      expect(newCamera.producerId).not.toBe(camera.producerId);
      expect(newScreen.producerId).not.toBe(screen.producerId);
      expect((await pageMediaStates(presenter.page)).slice(-2)).toEqual(['recovering', 'live']);
      // The stale tiles went with the old producers: one per source.
      expect(await trader.page.locator('video.remote').count()).toBe(2);
      expect(problems()).toEqual([]);
    },
  );

  it('after a resume the media the server kept goes on, without new producers', { timeout: 120_000 }, async () => {
    const t = await node({ SESSION_RESUME_GRACE_MS: '10000' });
    const presenter = await open(t, 'presenter-r', 'presenter', 'resume-room');
    const trader = await open(t, 'trader-r', 'trader', 'resume-room');
    await presenter.page.click('#share-camera');
    const camera = await decoding(trader.page, 'camera');

    const cutAt = Date.now();
    trader.relay.cut();
    await trader.page.waitForSelector('#state[data-state="reconnecting"]', { timeout: 10_000 });
    await trader.page.waitForSelector('#state[data-state="joined"]', { timeout: 15_000 });
    const resumed = await trader.page.evaluate(
      () =>
        (window as unknown as { tradingRoom: { client: { joined?: { resumed: boolean } } } }).tradingRoom.client.joined
          ?.resumed,
    );
    expect(resumed).toBe(true);
    await expect.poll(async () => (await pageMediaStates(trader.page)).at(-1), { timeout: 15_000 }).toBe('live');
    // Same consumer, still decoding.
    const after = (await pageVideos(trader.page)).find((v) => v.source === 'camera');
    expect(after?.consumerId).toBe(camera.consumerId);
    await expect
      .poll(async () => (await pageVideos(trader.page)).find((v) => v.source === 'camera')?.framesDecoded ?? 0, {
        timeout: 10_000,
      })
      .toBeGreaterThan((after?.framesDecoded ?? 0) + 5);
    // A second session on the same client with `presenterVideo`: the camera lands in that element by itself.
    const size = await trader.page.evaluate(async () => {
      const { client, MediaSession } = (
        window as unknown as {
          tradingRoom: {
            client: unknown;
            MediaSession: new (client: unknown, options: { presenterVideo: HTMLVideoElement }) => unknown;
          };
        }
      ).tradingRoom;
      const video = document.createElement('video');
      document.body.append(video);
      new MediaSession(client, { presenterVideo: video });
      await new Promise((resolve) => video.addEventListener('resize', resolve, { once: true }));
      return video.videoWidth;
    });
    expect(size).toBeGreaterThan(0);
    console.log(
      `trader's connection cut and resumed: the same consumer kept decoding (checked ${Date.now() - cutAt} ms after the cut)`,
    );
    expect(problems()).toEqual([]);
  });

  it('a refused camera is a PermissionDeniedError the page shows, not a black video', { timeout: 60_000 }, async () => {
    const t = await node();
    // The same browser flags, but the (fake) permission prompt answers "deny".
    const denying = await launchChromium({ permission: 'deny' });
    try {
      const page = await (await denying.newContext()).newPage();
      const token = await t.token('presenter-d', { role: 'presenter', name: 'presenter-d', roomId: 'deny-room' });
      await page.goto(`${t.httpUrl}/?token=${token}`);
      await page.waitForSelector('#state[data-state="joined"]', { timeout: 15_000 });
      const outcome = await page.evaluate(async () => {
        const { media } = (window as unknown as { tradingRoom: { media: { publishCamera(): Promise<unknown> } } })
          .tradingRoom;
        return media.publishCamera().then(
          () => 'published',
          (error: { name: string; code: string; source: string }) => [error.name, error.code, error.source],
        );
      });
      expect(outcome).toEqual(['PermissionDeniedError', 'permission-denied', 'camera']);
      await page.click('#share-camera');
      await expect
        .poll(() => page.textContent('#error'), { timeout: 10_000 })
        .toBe('permission to capture the camera was denied');
    } finally {
      await denying.close();
    }
  });
});
