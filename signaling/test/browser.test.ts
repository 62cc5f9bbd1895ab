/**
 * The proof that media works end to end with this machine's worker: headless Chromium opens the
 * demo page as a presenter (fake camera) and as a trader; the trader's page decodes the
 * presenter's video (framesDecoded > 0 and growing) and sees a chat message and an alert.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestNode, type TestNode } from '../../test-support/harness.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';

describe('demo page in a real browser', () => {
  let t: TestNode;
  let browser: Browser;

  beforeAll(async () => {
    // Debian's chromium is installed by scripts/test.sh; a missing browser fails here, loudly.
    execFileSync(process.execPath, ['--import', 'tsx', 'scripts/build-web.ts'], { cwd: ROOT, stdio: 'ignore' });
    t = await startTestNode({ MEDIA_ENABLED: 'true', MEDIASOUP_NUM_WORKERS: '1', RTC_BASE_PORT: '0' });
    expect(t.node.media, 'media must be up for this test').toBeDefined();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--use-fake-device-for-media-stream',
        '--use-fake-ui-for-media-stream',
      ],
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  async function open(userId: string, role: 'presenter' | 'trader'): Promise<Page> {
    const page = await (await browser.newContext()).newPage();
    page.on('pageerror', (error) => console.error(`[${userId}] page error`, error));
    const token = await t.token(userId, { role, name: userId, roomId: 'browser-room' });
    await page.goto(`${t.httpUrl}/?token=${token}`);
    await page.waitForSelector('#state[data-state="joined"]', { timeout: 15_000 });
    return page;
  }

  const framesDecoded = (page: Page): Promise<number> =>
    page.evaluate(() =>
      (window as unknown as { tradingRoom: { framesDecoded(): Promise<number> } }).tradingRoom.framesDecoded(),
    );

  it('plays the presenter camera on the trader page and shows chat and alerts', { timeout: 90_000 }, async () => {
    const presenter = await open('presenter-1', 'presenter');
    const trader = await open('trader-1', 'trader');
    expect(await trader.isHidden('#publish')).toBe(true);

    await presenter.click('#share-camera');
    await trader.waitForSelector('video[data-producer-id]', { timeout: 15_000 });

    let first = 0;
    await expect
      .poll(async () => (first = await framesDecoded(trader)), { timeout: 20_000, interval: 500 })
      .toBeGreaterThan(0);
    await expect.poll(() => framesDecoded(trader), { timeout: 10_000, interval: 500 }).toBeGreaterThan(first + 10);

    // Simulcast: the trader is told which layers it gets, and can ask for the lowest one.
    type Layers = { spatialLayer: number; temporalLayer: number };
    const layerEvents = (): Promise<Layers[]> =>
      trader.evaluate(() => (window as unknown as { tradingRoom: { layerEvents: Layers[] } }).tradingRoom.layerEvents);
    await expect
      .poll(async () => Math.max(-1, ...(await layerEvents()).map((l) => l.spatialLayer)), { timeout: 15_000 })
      .toBeGreaterThan(0);
    await trader.evaluate(() =>
      (
        window as unknown as { tradingRoom: { preferSpatialLayer(n: number): Promise<void> } }
      ).tradingRoom.preferSpatialLayer(0),
    );
    await expect.poll(async () => (await layerEvents()).at(-1)?.spatialLayer, { timeout: 15_000 }).toBe(0);

    await trader.fill('#chat-form input[name=text]', 'hello from the trader');
    await trader.click('#chat-form button');
    await presenter.waitForSelector('#chat li:has-text("hello from the trader")', { timeout: 5000 });

    await presenter.fill('#alert-form input[name=symbol]', 'AAPL');
    await presenter.selectOption('#alert-form select[name=action]', 'buy');
    await presenter.fill('#alert-form input[name=price]', '191.25');
    await presenter.click('#alert-form button');
    const alert = await trader.waitForSelector('#alerts li.alert.buy', { timeout: 5000 });
    expect(await alert.textContent()).toContain('BUY AAPL @ 191.25');
  });
});
