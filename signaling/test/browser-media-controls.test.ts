/**
 * The SDK's media controls in a real browser, on the demo page: muting a publication pauses its
 * producer on the server (viewers are told, and their inbound media starts again on unmute), the
 * loudest participant arrives as `activespeaker`, and a browser that cannot decode the room's
 * video gets a `CodecMismatchError` instead of a black video.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemoPage, launchChromium } from '../../test-support/browser.js';
import { startTestNode, type TestNode } from '../../test-support/harness.js';

/** What the tests read from `window.tradingRoom` (the demo page's hooks) and add to the page. */
interface PageHooks {
  tradingRoom: {
    client: {
      joined?: { participantId: string };
      onEvent(event: string, listener: (data: { producerId?: string }) => void): () => void;
    };
    media: {
      publishCamera(): Promise<{ producerId?: string }>;
      publishMicrophone(): Promise<{ producerId?: string }>;
      mute(source: string): Promise<void>;
      unmute(source: string): Promise<void>;
      watch(producerId: string, element: HTMLMediaElement): Promise<unknown>;
      on(event: string, listener: (...args: unknown[]) => void): () => void;
      remoteTracks: readonly {
        kind: string;
        source: string;
        producerId: string;
        getStats(): Promise<RTCStatsReport>;
      }[];
    };
  };
  seen: string[];
  errors: { name: string; code: string; kind: string }[];
}

describe('media SDK controls on the demo page', () => {
  let browser: Browser;
  let t: TestNode;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    buildDemoPage();
    browser = await launchChromium();
    t = await startTestNode({ MEDIA_ENABLED: 'true', MEDIASOUP_NUM_WORKERS: '1', RTC_BASE_PORT: '0' });
    expect(t.node.media, 'media must be up for this test').toBeDefined();
  }, 120_000);

  afterAll(async () => {
    for (const context of contexts) await context.close();
    await browser?.close();
    await t?.close();
  });

  /** Opens the demo page joined to `roomId`, recording its media events in `window.seen`/`errors`. */
  async function open(userId: string, role: 'presenter' | 'trader', roomId: string, initScript?: string) {
    const context = await browser.newContext();
    contexts.push(context);
    if (initScript) await context.addInitScript(initScript);
    const page = await context.newPage();
    const token = await t.token(userId, { role, name: userId, roomId });
    await page.goto(`${t.httpUrl}/?token=${token}`);
    await page.waitForSelector('#state[data-state="joined"]', { timeout: 15_000 });
    await page.evaluate(() => {
      const w = window as unknown as PageHooks;
      w.seen = [];
      w.errors = [];
      const { client, media } = w.tradingRoom;
      for (const event of ['producer.paused', 'producer.resumed'])
        client.onEvent(event, (data) => w.seen.push(`${event} ${data.producerId}`));
      media.on('activespeaker', (participantId) => w.seen.push(`activespeaker ${String(participantId)}`));
      media.on('error', (error) => {
        const e = error as { name: string; code: string; kind: string };
        w.errors.push({ name: e.name, code: e.code, kind: e.kind });
      });
    });
    const participantId = await page.evaluate(
      () => (window as unknown as PageHooks).tradingRoom.client.joined?.participantId ?? '',
    );
    return { page, participantId };
  }

  const seen = (page: Page): Promise<string[]> => page.evaluate(() => (window as unknown as PageHooks).seen);

  /** RTP packets the page received so far for its remote `source` (counted as they arrive). */
  const received = (page: Page, source: string): Promise<number> =>
    page.evaluate(async (source) => {
      const track = (window as unknown as PageHooks).tradingRoom.media.remoteTracks.find((r) => r.source === source);
      let best = 0;
      (await track?.getStats())?.forEach((s: { type: string; packetsReceived?: number }) => {
        if (s.type === 'inbound-rtp') best = Math.max(best, s.packetsReceived ?? 0);
      });
      return best;
    }, source);

  /** Waits until the page's inbound `source` grows past `than` by a margin. */
  async function growing(page: Page, source: string, than = 0): Promise<number> {
    await expect.poll(() => received(page, source), { timeout: 20_000, interval: 200 }).toBeGreaterThan(than + 5);
    return received(page, source);
  }

  /** Waits until the page's inbound `source` stops growing (packets in flight at a pause arrive); returns it. */
  async function settled(page: Page, source: string): Promise<number> {
    let last = -1;
    await expect
      .poll(
        async () => {
          const now = await received(page, source);
          const same = now === last;
          last = now;
          return same;
        },
        { timeout: 10_000, interval: 300 },
      )
      .toBe(true);
    return last;
  }

  const serverPaused = (roomId: string, producerId: string): boolean | undefined =>
    t.node.media?.service.listProducers(roomId).find((p) => p.producerId === producerId)?.paused;

  it(
    'mute pauses the producer on the server and viewers see it; unmute resumes their media',
    { timeout: 60_000 },
    async () => {
      const room = 'controls-mute';
      const presenter = await open('presenter-mute', 'presenter', room);
      const trader = await open('trader-mute', 'trader', room);
      const ids = await presenter.page.evaluate(async () => {
        const { media } = (window as unknown as PageHooks).tradingRoom;
        const camera = await media.publishCamera();
        const microphone = await media.publishMicrophone();
        return { camera: camera.producerId ?? '', microphone: microphone.producerId ?? '' };
      });
      await growing(trader.page, 'camera');
      await growing(trader.page, 'microphone');

      const control = async (action: 'mute' | 'unmute', source: 'camera' | 'microphone'): Promise<void> => {
        const producerId = ids[source];
        expect(serverPaused(room, producerId)).toBe(action === 'unmute');
        await presenter.page.evaluate(([a, s]) => (window as unknown as PageHooks).tradingRoom.media[a](s), [
          action,
          source,
        ] as const);
        // The request has been answered: the server's producer is paused (resumed), and the viewer is told.
        expect(serverPaused(room, producerId)).toBe(action === 'mute');
        const event = `producer.${action === 'mute' ? 'paused' : 'resumed'} ${producerId}`;
        await expect.poll(() => seen(trader.page), { timeout: 10_000 }).toContain(event);
      };

      // The camera is paused: once the packets in flight are in, what the trader received of it
      // no longer grows, measured across the next server-side event (the microphone's pause).
      await control('mute', 'camera');
      const cameraPaused = await settled(trader.page, 'camera');
      await control('mute', 'microphone');
      expect(await received(trader.page, 'camera')).toBe(cameraPaused);
      // The same for the microphone, across the camera's resume; then both grow again.
      const microphonePaused = await settled(trader.page, 'microphone');
      await control('unmute', 'camera');
      expect(await received(trader.page, 'microphone')).toBe(microphonePaused);
      await growing(trader.page, 'camera', cameraPaused);
      await control('unmute', 'microphone');
      await growing(trader.page, 'microphone', microphonePaused);
      // The publications stayed the same producers (paused, not re-published).
      const local = await presenter.page.evaluate(() =>
        (
          window as unknown as { tradingRoom: { media: { localTracks: { source: string; muted: boolean }[] } } }
        ).tradingRoom.media.localTracks.map((l) => `${l.source}:${l.muted}`),
      );
      expect(local.sort()).toEqual(['camera:false', 'microphone:false']);
      expect(
        t.node.media?.service
          .listProducers(room)
          .map((p) => p.producerId)
          .sort(),
      ).toEqual([ids.camera, ids.microphone].sort());
    },
  );

  it(
    "the presenter's (beeping fake) microphone makes it the trader's active speaker",
    { timeout: 60_000 },
    async () => {
      const room = 'controls-speaker';
      const presenter = await open('presenter-speaker', 'presenter', room);
      const trader = await open('trader-speaker', 'trader', room);
      await presenter.page.evaluate(() => (window as unknown as PageHooks).tradingRoom.media.publishMicrophone());
      await expect
        .poll(() => seen(trader.page), { timeout: 30_000, interval: 200 })
        .toContain(`activespeaker ${presenter.participantId}`);
    },
  );

  it(
    'a browser that cannot decode the presenter’s video gets a CodecMismatchError, not a black video',
    { timeout: 60_000 },
    async () => {
      const room = 'controls-codec';
      const presenter = await open('presenter-codec', 'presenter', room);
      // This browser "has" no VP8 or H264: the codec probe mediasoup-client's Device makes (an
      // offer it never applies) comes back with both renamed, so its capabilities lack them.
      const noVp8 = `(() => {
        const createOffer = RTCPeerConnection.prototype.createOffer;
        RTCPeerConnection.prototype.createOffer = async function (...args) {
          const offer = await createOffer.apply(this, args);
          return { type: offer.type, sdp: offer.sdp.replace(/ VP8\\/90000/g, ' X-VP8/90000').replace(/ H264\\/90000/g, ' X-H264/90000') };
        };
      })();`;
      const trader = await open('trader-codec', 'trader', room, noVp8);
      const cameraId = await presenter.page.evaluate(
        async () => (await (window as unknown as PageHooks).tradingRoom.media.publishCamera()).producerId ?? '',
      );
      // Subscribed by itself: the failure arrives as a typed error event and on the page.
      await expect
        .poll(() => trader.page.evaluate(() => (window as unknown as PageHooks).errors), { timeout: 15_000 })
        .toContainEqual({ name: 'CodecMismatchError', code: 'codec-mismatch', kind: 'video' });
      await expect.poll(() => trader.page.textContent('#error'), { timeout: 10_000 }).toMatch(/no common video codec/);
      // Asked for explicitly: `watch` rejects with it.
      const outcome = await trader.page.evaluate(async (producerId) => {
        const { media } = (window as unknown as PageHooks).tradingRoom;
        return media.watch(producerId, document.createElement('video')).then(
          () => 'watching',
          (error: { name: string; code: string }) => `${error.name} ${error.code}`,
        );
      }, cameraId);
      expect(outcome).toBe('CodecMismatchError codec-mismatch');
      expect(await trader.page.locator('video.remote').count()).toBe(0);
    },
  );
});
