/**
 * The proof that media works end to end with this machine's worker: headless Chromium opens the
 * demo page as a presenter (fake camera and microphone) and as a trader. The trader's page waits
 * for the presenter, decodes the presenter's video (framesDecoded > 0 and growing) at the
 * simulcast layer that fits its element or the one the viewer picks, offers a click to unmute
 * blocked audio, and sees a chat message and an alert; a trader who joins late sees the last
 * alerts and chat marked as earlier. Neither page logs an error or gets a 4xx.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemoPage, launchChromium } from '../../test-support/browser.js';
import { startTestNode, type TestNode } from '../../test-support/harness.js';
import { joinRaw } from '../../test-support/room-helpers.js';

describe('demo page in a real browser', () => {
  let t: TestNode;
  let browser: Browser;
  /** Console errors, page errors and failed responses, per page, as `[user] what`. */
  const problems: string[] = [];

  beforeAll(async () => {
    // Debian's chromium is installed by scripts/test.sh; a missing browser fails here, loudly.
    buildDemoPage();
    t = await startTestNode({ MEDIA_ENABLED: 'true', MEDIASOUP_NUM_WORKERS: '1', RTC_BASE_PORT: '0' });
    expect(t.node.media, 'media must be up for this test').toBeDefined();
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  async function open(
    userId: string,
    role: 'presenter' | 'trader',
    roomId: string,
    initScript?: () => void,
  ): Promise<Page> {
    const page = await (await browser.newContext()).newPage();
    if (initScript) await page.addInitScript(initScript);
    page.on('pageerror', (error) => problems.push(`[${userId}] page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`[${userId}] console error: ${message.text()}`);
    });
    page.on('response', (response) => {
      if (response.status() >= 400) problems.push(`[${userId}] ${response.status()} ${response.url()}`);
    });
    const token = await t.token(userId, { role, name: userId, roomId });
    await page.goto(`${t.httpUrl}/?token=${token}`);
    await page.waitForSelector('#state[data-state="joined"]', { timeout: 15_000 });
    return page;
  }

  const framesDecoded = (page: Page): Promise<number> =>
    page.evaluate(() =>
      (window as unknown as { tradingRoom: { framesDecoded(): Promise<number> } }).tradingRoom.framesDecoded(),
    );

  /** The trader's remote video: layers it has, asks for and receives (from its data attributes). */
  const layers = (page: Page): Promise<{ count: number; requested: number; received: number }> =>
    page.$eval('video.remote', (el) => ({
      count: Number((el as HTMLElement).dataset.layerCount),
      requested: Number((el as HTMLElement).dataset.requestedLayer),
      received: Number((el as HTMLElement).dataset.receivedLayer ?? -1),
    }));

  it('plays the presenter camera on the trader page and shows chat and alerts', { timeout: 120_000 }, async () => {
    const presenter = await open('presenter-1', 'presenter', 'browser-room');
    const trader = await open('trader-1', 'trader', 'browser-room');
    expect(await trader.isHidden('#publish')).toBe(true);
    expect(await trader.textContent('#waiting')).toBe('Waiting for the presenter…');
    expect(await trader.isVisible('#waiting')).toBe(true);
    expect(await trader.isHidden('#quality-picker')).toBe(true);

    await presenter.click('#share-camera');
    await trader.waitForSelector('video[data-producer-id]', { timeout: 15_000 });
    await trader.waitForSelector('#waiting', { state: 'hidden', timeout: 5000 });

    let first = 0;
    await expect
      .poll(async () => (first = await framesDecoded(trader)), { timeout: 20_000, interval: 500 })
      .toBeGreaterThan(0);
    await expect.poll(() => framesDecoded(trader), { timeout: 10_000, interval: 500 }).toBeGreaterThan(first + 10);

    // Auto: the stage is wide (about 890 px), so the top simulcast layer is the one that fits.
    const { count } = await layers(trader);
    expect(count).toBe(3);
    await expect
      .poll(() => layers(trader), { timeout: 30_000, interval: 250 })
      .toMatchObject({
        requested: 2,
        received: 2,
      });
    await trader.waitForSelector('.layer-status:has-text("High")');

    // A narrow window leaves a small element: auto steps down to a layer that still covers it.
    await trader.setViewportSize({ width: 300, height: 600 });
    await expect.poll(async () => (await layers(trader)).requested, { timeout: 10_000 }).toBeLessThan(2);
    const narrow = (await layers(trader)).requested;
    await expect.poll(async () => (await layers(trader)).received, { timeout: 15_000 }).toBe(narrow);

    // The viewer's choice wins over the fit, and the server follows it.
    type Layers = { spatialLayer: number; temporalLayer: number };
    const lastLayerEvent = async (): Promise<Layers | undefined> =>
      (
        await trader.evaluate(
          () => (window as unknown as { tradingRoom: { layerEvents: Layers[] } }).tradingRoom.layerEvents,
        )
      ).at(-1);
    await trader.selectOption('#quality', 'low');
    await expect.poll(async () => (await lastLayerEvent())?.spatialLayer, { timeout: 15_000 }).toBe(0);
    expect((await layers(trader)).requested).toBe(0);
    await trader.selectOption('#quality', 'high');
    await expect.poll(async () => (await lastLayerEvent())?.spatialLayer, { timeout: 15_000 }).toBe(2);
    expect((await layers(trader)).requested).toBe(2);
    await trader.selectOption('#quality', 'auto');
    await expect.poll(async () => (await layers(trader)).requested, { timeout: 10_000 }).toBe(narrow);
    await trader.setViewportSize({ width: 1280, height: 720 });

    await trader.fill('#chat-form input[name=text]', 'hello from the trader');
    await trader.click('#chat-form button');
    await presenter.waitForSelector('#chat li:has-text("hello from the trader")', { timeout: 5000 });

    for (const symbol of ['EUR/USD', 'AAPL']) {
      await presenter.fill('#alert-form input[name=symbol]', symbol);
      await presenter.selectOption('#alert-form select[name=action]', 'buy');
      await presenter.fill('#alert-form input[name=price]', '191.25');
      expect(await presenter.$eval('#alert-form', (form) => (form as HTMLFormElement).checkValidity())).toBe(true);
      await presenter.click('#alert-form button');
    }
    const alert = await trader.waitForSelector('#alerts li.alert.buy:has-text("AAPL")', { timeout: 5000 });
    expect(await alert.textContent()).toContain('BUY AAPL @ 191.25');
    await presenter.fill('#alert-form input[name=symbol]', 'aapl');
    expect(await presenter.$eval('#alert-form', (form) => (form as HTMLFormElement).checkValidity())).toBe(false);

    // When the presenter stops, the trader's stage says it waits again.
    await presenter.click('#stop-all');
    await trader.waitForSelector('#waiting', { state: 'visible', timeout: 10_000 });
    expect(problems).toEqual([]);
  });

  it('plays sound at once where allowed, and offers a click to unmute where blocked', { timeout: 60_000 }, async () => {
    const presenter = await open('presenter-2', 'presenter', 'audio-room');
    // Chromium lets a MediaStream play with sound before any click, so this page plays it at once.
    const allowed = await open('trader-2', 'trader', 'audio-room');
    // Safari and Firefox refuse sound until the user clicks; Chromium cannot be told to, so this
    // page's play() refuses the same way until a real (trusted) click. (Not `userActivation`:
    // Playwright's evaluate counts as a gesture.)
    const blocked = await open('trader-3', 'trader', 'audio-room', () => {
      let clicked = false;
      addEventListener('pointerdown', (event) => (clicked ||= event.isTrusted), { capture: true });
      const play = HTMLMediaElement.prototype.play;
      HTMLMediaElement.prototype.play = function (this: HTMLMediaElement) {
        if (this.muted || clicked) return play.call(this);
        return Promise.reject(new DOMException('play() needs a user gesture', 'NotAllowedError'));
      };
    });
    await presenter.click('#share-mic');
    const audio = (page: Page) =>
      page.$eval('audio', (el) => ({ playing: !el.paused && !el.muted, shown: el.checkVisibility() }));

    await expect.poll(() => audio(allowed), { timeout: 15_000 }).toEqual({ playing: true, shown: false });
    expect(await allowed.isHidden('#unmute')).toBe(true);

    const unmute = await blocked.waitForSelector('#unmute', { state: 'visible', timeout: 15_000 });
    expect(await audio(blocked)).toEqual({ playing: false, shown: false });
    await unmute.click();
    await blocked.waitForSelector('#unmute', { state: 'hidden' });
    await expect.poll(() => audio(blocked), { timeout: 5000 }).toEqual({ playing: true, shown: false });
    expect(problems).toEqual([]);
  });

  it(
    'shows the last alerts and chat on join, marked as earlier, then live ones below',
    { timeout: 60_000 },
    async () => {
      const { raw: desk } = await joinRaw(t, 'desk', { roomId: 'history-room', role: 'presenter', name: 'Desk' });
      for (const symbol of ['TSLA', 'NVDA']) {
        expect(await desk.request('alert.publish', { symbol, action: 'sell', note: 'earlier call' })).toMatchObject({
          ok: true,
        });
      }
      expect(await desk.request('chat.send', { text: 'good morning' })).toMatchObject({ ok: true });

      const trader = await open('late-trader', 'trader', 'history-room');
      await trader.waitForSelector('#alerts li.separator:has-text("Earlier")', { timeout: 10_000 });
      const earlierAlerts = await trader.$$eval('#alerts li.alert.earlier', (items) =>
        items.map((li) => li.textContent),
      );
      expect(earlierAlerts).toEqual(['SELL TSLA — earlier call (Desk)', 'SELL NVDA — earlier call (Desk)']);
      expect(await trader.$$eval('#chat li.earlier', (items) => items.map((li) => li.textContent))).toEqual([
        'Desk: good morning',
      ]);

      expect(await desk.request('alert.publish', { symbol: 'AMD', action: 'buy' })).toMatchObject({ ok: true });
      const live = await trader.waitForSelector('#alerts li.alert.buy:has-text("AMD")', { timeout: 5000 });
      expect(await live.evaluate((li) => li.classList.contains('earlier'))).toBe(false);
      expect(await trader.$$eval('#alerts li', (items) => items.map((li) => li.textContent))).toEqual([
        'Earlier',
        'SELL TSLA — earlier call (Desk)',
        'SELL NVDA — earlier call (Desk)',
        'BUY AMD (Desk)',
      ]);
      expect(problems).toEqual([]);
    },
  );
});
