/**
 * Media across nodes in real browsers, on the demo page (built only on the SDK), behind the
 * test cluster's load balancer: a presenter on node 1 and traders on nodes 2 and 3 watch it
 * through the nodes' pipes. Then node 1 drains: the presenter's page reconnects through the
 * balancer to node 2 or 3 and publishes again; each trader's video keeps its element (the
 * producer is announced as migrating) and decodes again by itself. Then the node of the trader
 * not sharing a node with the presenter drains: that trader reconnects to the presenter's node
 * and its video resumes by itself. Every gap is measured from frames decoded (sampled every 50 ms
 * in the page) and printed.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemoPage, launchChromium } from '../../test-support/browser.js';
import { useCluster } from '../../test-support/cluster.js';
import {
  decoding,
  openDemoPage,
  pageMediaStates,
  sampleVideo,
  videoGap,
  type DemoPage,
} from '../../test-support/demo-page.js';
import { MEDIA_ENV } from '../../test-support/media-flow.js';

const ROOM = 'cluster-media';

/** What the tests read from the demo page's hooks (`window.tradingRoom`). */
interface Hooks {
  tradingRoom: {
    client: { joined?: { participantId: string } };
    media: { publishCamera(): Promise<{ producerId?: string }> };
    trackEvents: string[];
  };
  published?: { at: number; producerId: string }[];
}

describe('media across nodes in the browser: a presenter and a trader survive their nodes’ drains', () => {
  const cluster = useCluster({
    nodes: 3,
    env: {
      ...MEDIA_ENV,
      MEDIASOUP_NUM_WORKERS: '1',
      // Clients are told to reconnect within the first half of the window: within 2 s.
      DRAIN_TIMEOUT_MS: '4000',
    },
  });
  let browser: Browser;
  const pages: DemoPage[] = [];
  let presenter: DemoPage;
  /** Traders by the index of the node they joined. */
  const traders = new Map<number, DemoPage>();

  beforeAll(async () => {
    buildDemoPage();
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    for (const page of pages) await page.context.close();
    await browser?.close();
  });

  /** The demo page through the balancer's entry for node `index` (it reconnects there too). */
  async function open(index: number, userId: string, role: 'presenter' | 'trader'): Promise<DemoPage> {
    const base = cluster().entryUrl(index).replace(/^ws:/, 'http:').replace(/\/ws$/, '');
    const token = await cluster().token(userId, { role, name: userId, roomId: ROOM });
    // The presenter's page notes when each of its publications went out (first and again).
    const initScript = `window.published = [];`;
    const page = await openDemoPage(browser, base, token, { label: userId, initScript });
    pages.push(page);
    return page;
  }

  const trackEvents = (page: DemoPage): Promise<string[]> =>
    page.page.evaluate(() => (window as unknown as Hooks).tradingRoom.trackEvents);

  const participantId = (page: DemoPage): Promise<string> =>
    page.page.evaluate(() => (window as unknown as Hooks).tradingRoom.client.joined?.participantId ?? '');

  /** The index of the node the page's participant is on now (presence in Redis). */
  async function nodeOf(page: DemoPage): Promise<number> {
    const id = await participantId(page);
    const nodeId = (await cluster().presence(ROOM)).get(id)?.nodeId;
    return Number(nodeId?.replace('node-', '')) - 1;
  }

  it(
    'the presenter’s node drains: it re-publishes elsewhere and every trader’s video comes back by itself',
    { timeout: 240_000 },
    async () => {
      presenter = await open(0, 'presenter-x', 'presenter');
      traders.set(1, await open(1, 'trader-b', 'trader'));
      traders.set(2, await open(2, 'trader-c', 'trader'));
      await presenter.page.evaluate(() => {
        const w = window as unknown as Hooks & {
          tradingRoom: { media: { on(e: string, l: (t: { source: string; producerId?: string }) => void): void } };
        };
        w.tradingRoom.media.on('localtrackpublished', (local) => {
          if (local.source === 'camera') w.published?.push({ at: Date.now(), producerId: local.producerId ?? '' });
        });
      });
      const { producerId: first } = await presenter.page.evaluate(() =>
        (window as unknown as Hooks).tradingRoom.media.publishCamera(),
      );
      expect(first).toBeTruthy();
      // Both traders decode the presenter's camera, each on another node than the presenter's.
      for (const trader of traders.values()) {
        const video = await decoding(trader.page, 'camera');
        expect(video.producerId).toBe(first);
        await sampleVideo(trader.page, 'camera');
      }
      expect(await nodeOf(presenter)).toBe(0);

      const drainAt = Date.now();
      const drained = cluster().drain(0);
      // The presenter publishes again from its new node.
      await expect
        .poll(() => presenter.page.evaluate(() => (window as unknown as Hooks).published?.length ?? 0), {
          timeout: 30_000,
          interval: 100,
        })
        .toBe(2);
      const [, republished] = await presenter.page.evaluate(() => (window as unknown as Hooks).published ?? []);
      expect(republished?.producerId).not.toBe(first);
      const presenterNode = await nodeOf(presenter);
      expect([1, 2]).toContain(presenterNode);

      for (const [index, trader] of traders) {
        // The same tile decodes the new producer: no trackremoved, the element kept its place.
        await decoding(trader.page, 'camera', { producerId: republished?.producerId, timeoutMs: 30_000 });
        const gap = await videoGap(trader.page, drainAt);
        const sinceRepublish = gap.resumedAt - (republished?.at ?? 0);
        console.log(
          `presenter's node drained: trader on node-${index + 1} (presenter now on node-${presenterNode + 1}): ` +
            `video gap ${gap.gapMs} ms, frames again ${sinceRepublish} ms after the re-publish`,
        );
        expect(gap.resumedProducerId).toBe(republished?.producerId);
        expect(sinceRepublish).toBeLessThan(5000);
        const events = await trackEvents(trader);
        expect(events).toEqual([
          `added camera ${first}`,
          `migrating camera ${first}`,
          `migrated camera ${republished?.producerId}`,
        ]);
        expect(await trader.page.locator('video.remote').count()).toBe(1);
        expect(await trader.page.getAttribute('video.remote', 'data-producer-id')).toBe(republished?.producerId);
      }
      expect((await pageMediaStates(presenter.page)).slice(-2)).toEqual(['recovering', 'live']);
      expect((await drained).code).toBe(0);
      expect([presenter, ...traders.values()].flatMap((p) => p.problems)).toEqual([]);
    },
  );

  it(
    'a trader’s node drains: it reconnects to another node and its video resumes by itself',
    { timeout: 120_000 },
    async () => {
      expect(presenter, 'the presenter of the previous test').toBeDefined();
      const presenterNode = await nodeOf(presenter);
      // The trader not on the presenter's node moves; its only way is to the presenter's node.
      const index = presenterNode === 1 ? 2 : 1;
      const trader = traders.get(index) as DemoPage;
      expect(await nodeOf(trader)).toBe(index);
      const before = await decoding(trader.page, 'camera');
      const eventsBefore = await trackEvents(trader);
      await sampleVideo(trader.page, 'camera');

      const drainAt = Date.now();
      const drained = cluster().drain(index);
      const after = await decoding(trader.page, 'camera', { before, timeoutMs: 30_000 });
      expect(after.producerId).toBe(before.producerId);
      expect(await nodeOf(trader)).toBe(presenterNode);
      const gap = await videoGap(trader.page, drainAt);
      console.log(
        `trader's node-${index + 1} drained: it moved to node-${presenterNode + 1}; video gap ${gap.gapMs} ms ` +
          `(back ${gap.resumedAt - drainAt} ms after the drain began)`,
      );
      // The same track and element, consumed again: no track added or removed.
      expect(await trackEvents(trader)).toEqual(eventsBefore);
      expect(await trader.page.locator('video.remote').count()).toBe(1);
      expect((await pageMediaStates(trader.page)).slice(-2)).toEqual(['recovering', 'live']);
      expect((await drained).code).toBe(0);
      expect(trader.problems).toEqual([]);
    },
  );
});
