/**
 * The operator console (`/ops`) in headless Chromium against two node processes on one real
 * Redis: a wrong token shows an error (not a blank page); the admin token opens the console,
 * kept in session storage only; both nodes and a room with participants on both show up and
 * update without a reload; the room opens with its participants and media health (a presenter
 * publishing opus over plain RTP, a moderator's tap); a killed media worker shows as degraded;
 * a node drained from the console (after a confirmation) turns draining at once, even while the
 * node list answers slowly, then leaves the list.
 * Screenshots go to `test-artifacts/ops-console/` (git-ignored).
 */
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemoPage, launchChromium } from '../../test-support/browser.js';
import { useCluster } from '../../test-support/cluster.js';
import { ADMIN_TOKEN } from '../../test-support/harness.js';
import { consumeToSink, MEDIA_ENV, publishOpus } from '../../test-support/media-flow.js';
import { RtpSender, type RtpSink } from '../../test-support/rtp.js';
import type { NodeDetail } from '../src/http/admin-rpc.js';

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/ops-console/', import.meta.url));
const ROOM = 'ops-room';

describe('operator console in a real browser', { timeout: 120_000 }, () => {
  const cluster = useCluster({
    nodes: 2,
    nodeTtlMs: 1500,
    env: { ...MEDIA_ENV, MEDIASOUP_NUM_WORKERS: '1', DRAIN_TIMEOUT_MS: '4000', SESSION_RESUME_GRACE_MS: '0' },
  });
  let browser: Browser;
  let page: Page;
  let sender: RtpSender;
  const sinks: RtpSink[] = [];
  const problems: string[] = [];

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    buildDemoPage();
    browser = await launchChromium();
    page = await (await browser.newContext({ viewport: { width: 1440, height: 900 } })).newPage();
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error' && !/status of 401/.test(message.text()))
        problems.push(`console error: ${message.text()}`);
    });
    sender = new RtpSender(0x0b5e);
  }, 120_000);

  afterAll(async () => {
    sender?.close();
    for (const sink of sinks) sink.close();
    await browser?.close();
  });

  const shot = (name: string): Promise<Buffer> => page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });

  it('shows an error for a wrong token, not a blank page', async () => {
    await page.goto(`${cluster().node(0).httpUrl}/ops?refreshMs=500`);
    await page.fill('#token', 'not-the-admin-token');
    await page.click('#login button[type=submit]');
    const error = page.locator('#login-error');
    await error.waitFor({ state: 'visible', timeout: 10_000 });
    expect(await error.textContent()).toMatch(/refused/i);
    expect(await page.locator('#console').isHidden()).toBe(true);
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await shot('wrong-token');
  });

  it('lists both nodes and a room with participants on both, live', async () => {
    const c = cluster();
    const presenter = await c.joined('ops-presenter', { node: 0, roomId: ROOM, role: 'presenter', name: 'Ada' });
    await c.joined('ops-trader', { node: 1, roomId: ROOM, name: 'Grace' });

    await page.fill('#token', ADMIN_TOKEN);
    await page.click('#login button[type=submit]');
    await page.locator('#console').waitFor({ state: 'visible', timeout: 10_000 });
    for (const nodeId of ['node-1', 'node-2']) {
      await page.locator(`#nodes tr[data-node="${nodeId}"][data-state="running"]`).waitFor({ timeout: 10_000 });
    }
    const room = page.locator(`#rooms tr[data-room="${ROOM}"]`);
    await expect.poll(() => room.textContent(), { timeout: 10_000 }).toMatch(/node-1: 1, node-2: 1/);

    // A newcomer on node 2 and a published microphone show up without a reload.
    const { client: moderatorClient, join: moderatorJoin } = await c.joined('ops-moderator', {
      node: 0,
      roomId: ROOM,
      role: 'moderator',
      name: 'Linus',
    });
    const { producerId } = await publishOpus(presenter, sender);
    await consumeToSink({ client: moderatorClient, join: moderatorJoin }, producerId, sinks);
    await expect.poll(() => room.textContent(), { timeout: 10_000 }).toMatch(/node-1: 2, node-2: 1/);
    expect(await page.evaluate(() => [sessionStorage.length, localStorage.length, document.cookie])).toEqual([
      1,
      0,
      '',
    ]);
    await shot('nodes-and-rooms');
  });

  it('opens the room with its participants and media health', async () => {
    await page.click(`button[data-open="${ROOM}"]`);
    await page.locator('#room').waitFor({ state: 'visible', timeout: 10_000 });
    const participants = page.locator('#participants tbody tr');
    await expect.poll(() => participants.count(), { timeout: 10_000 }).toBe(3);
    const text = await page.locator('#participants').textContent();
    for (const expected of ['Ada', 'Grace', 'Linus', 'node-1', 'node-2']) expect(text).toContain(expected);
    // The producer's bitrate is measured by the worker within a few seconds of RTP flowing.
    await expect
      .poll(() => page.locator('#media tbody').textContent(), { timeout: 15_000 })
      .toMatch(/producer.*microphone\s*\d+ kb\/s/s);
    expect(await page.locator('#media tbody').textContent()).toMatch(/consumer/);
    await shot('room-detail');
  });

  it('shows a media worker restart as degraded', async () => {
    const node = (await cluster().adminNodes(0)).find((n) => n.nodeId === 'node-2');
    const worker = (node?.detail as NodeDetail | undefined)?.media.workers[0];
    if (!worker) throw new Error('node-2 reports no media worker');
    process.kill(worker.pid, 'SIGKILL');
    await expect
      .poll(() => page.locator('#degraded').textContent(), { timeout: 15_000 })
      .toMatch(/node-2: 1 media worker restart/);
    expect(await page.locator('#summary').textContent()).toMatch(/degraded/);
    await shot('worker-restart');
  });

  it('drains a node after a confirmation and shows its state change', async () => {
    const drainButton = page.locator('button[data-drain="node-2"]');
    await drainButton.click();
    const dialog = page.locator('#confirm');
    await dialog.waitFor({ state: 'visible' });
    expect(await page.locator('#confirm-text').textContent()).toContain('node-2');
    await shot('drain-confirmation');
    // The drain shows as soon as the node accepts it, not at a refresh: a loaded admin API (every
    // node list held back 6 s here) must not hide it, nor a drain that ends before a refresh lands.
    const nodeList = (url: URL): boolean => url.pathname === '/admin/nodes';
    await page.route(nodeList, async (route) => {
      const response = await route.fetch();
      await new Promise((resolve) => setTimeout(resolve, 6000));
      await route.fulfill({ response }).catch(() => {}); // the page may have moved on
    });
    await page.click('#confirm-ok');
    await page.locator('#nodes tr[data-node="node-2"][data-state="draining"]').waitFor({ timeout: 4000 });
    await page.unroute(nodeList);
    expect(await cluster().node(1).waitForExit(30_000)).toMatchObject({ code: 0 });
    // A drained node deregisters cleanly: it leaves the list (a crashed one would show as down).
    await expect.poll(() => page.locator('#nodes tr[data-node="node-2"]').count(), { timeout: 20_000 }).toBe(0);
    await expect.poll(() => page.locator('#summary').textContent(), { timeout: 10_000 }).toMatch(/1 node up/);
    await shot('node-drained');
    expect(problems).toEqual([]);
  });
});
