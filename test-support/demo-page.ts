/**
 * The demo page in headless Chromium, for the media page tests: open it joined with a token,
 * collect what went wrong on it, and read its receiving videos' statistics through the hooks it
 * exposes (`window.tradingRoom`).
 */
import { expect } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';

/** One receiving video of the page: its producer, consumer and the frames it decoded. */
export interface PageVideo {
  readonly producerId: string;
  readonly consumerId: string;
  readonly source: string;
  readonly framesDecoded: number;
}

/** A demo page joined to a room. */
export interface DemoPage {
  readonly page: Page;
  readonly context: BrowserContext;
  /** Page errors and console errors (WebSocket noise of a reconnect aside), tagged with the user. */
  readonly problems: string[];
}

/**
 * Opens `${baseUrl}/?token=…` in a new browser context and waits until the page has joined.
 * `initScript` runs in the page before its own code.
 */
export async function openDemoPage(
  browser: Browser,
  baseUrl: string,
  token: string,
  options: { label: string; initScript?: string; joinTimeoutMs?: number },
): Promise<DemoPage> {
  const context = await browser.newContext();
  if (options.initScript) await context.addInitScript(options.initScript);
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`[${options.label}] page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().includes('WebSocket'))
      problems.push(`[${options.label}] console error: ${message.text()}`);
  });
  await page.goto(`${baseUrl}/?token=${token}`);
  await page.waitForSelector('#state[data-state="joined"]', { timeout: options.joinTimeoutMs ?? 15_000 });
  return { page, context, problems };
}

/** The page's receiving videos (`tradingRoom.videos()`). */
export function pageVideos(page: Page): Promise<PageVideo[]> {
  return page.evaluate(() =>
    (window as unknown as { tradingRoom: { videos(): Promise<PageVideo[]> } }).tradingRoom.videos(),
  );
}

/** The media session's states the page went through, oldest first. */
export function pageMediaStates(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as { tradingRoom: { mediaStates: string[] } }).tradingRoom.mediaStates);
}

/**
 * Waits until the page's `source` video decodes frames on a consumer other than `before`'s (any
 * consumer when omitted), of `producerId` when given, and keeps decoding (5 frames more);
 * returns it as first seen decoding.
 */
export async function decoding(
  page: Page,
  source: string,
  options: { before?: PageVideo; producerId?: string; timeoutMs?: number } = {},
): Promise<PageVideo> {
  let found: PageVideo | undefined;
  await expect
    .poll(
      async () => {
        found = (await pageVideos(page)).find(
          (v) =>
            v.source === source &&
            v.consumerId !== options.before?.consumerId &&
            (options.producerId === undefined || v.producerId === options.producerId) &&
            v.framesDecoded > 0,
        );
        return found !== undefined;
      },
      { timeout: options.timeoutMs ?? 30_000, interval: 100 },
    )
    .toBe(true);
  const first = found as PageVideo;
  await expect
    .poll(async () => (await pageVideos(page)).find((v) => v.consumerId === first.consumerId)?.framesDecoded ?? 0, {
      timeout: 10_000,
      interval: 200,
    })
    .toBeGreaterThan(first.framesDecoded + 5);
  return first;
}

/** One sample of a page's receiving video: when, on which consumer/producer, frames decoded so far. */
interface VideoSample {
  readonly at: number;
  readonly consumerId: string;
  readonly producerId: string;
  readonly frames: number;
}

/**
 * Samples the page's `source` video every 50 ms (in the page, `Date.now()` clock) from now on,
 * for {@link videoGap}; a second call starts the samples afresh.
 */
export async function sampleVideo(page: Page, source: string): Promise<void> {
  await page.evaluate((source) => {
    const w = window as unknown as {
      videoSamples: VideoSample[];
      videoSampling?: boolean;
      tradingRoom: { videos(): Promise<PageVideo[]> };
    };
    w.videoSamples = [];
    if (w.videoSampling) return;
    w.videoSampling = true;
    const tick = async (): Promise<void> => {
      const video = (await w.tradingRoom.videos()).find((v) => v.source === source);
      w.videoSamples.push({
        at: Date.now(),
        consumerId: video?.consumerId ?? '',
        producerId: video?.producerId ?? '',
        frames: video?.framesDecoded ?? 0,
      });
      setTimeout(() => void tick(), 50);
    };
    void tick();
  }, source);
}

/** The longest stretch without a new decoded frame since `since`, and the frames around it. */
export interface VideoGap {
  /** Longest time between two samples that saw new frames, ms. */
  readonly gapMs: number;
  /** The last sample with new frames before the gap, and the first after it. */
  readonly lastFrameAt: number;
  readonly resumedAt: number;
  /** The producer decoding after the gap. */
  readonly resumedProducerId: string;
}

/** The longest pause in decoded frames the page saw since `since` ({@link sampleVideo} must run). */
export async function videoGap(page: Page, since: number): Promise<VideoGap> {
  const samples = await page.evaluate(() => (window as unknown as { videoSamples: VideoSample[] }).videoSamples);
  const framed: VideoSample[] = [];
  for (let i = 1; i < samples.length; i++) {
    const [previous, sample] = [samples[i - 1] as VideoSample, samples[i] as VideoSample];
    const newFrames = sample.consumerId === previous.consumerId ? sample.frames > previous.frames : sample.frames > 0;
    if (newFrames && sample.at >= since) framed.push(sample);
  }
  let best: VideoGap = { gapMs: 0, lastFrameAt: since, resumedAt: since, resumedProducerId: '' };
  for (let i = 1; i < framed.length; i++) {
    const [before, after] = [framed[i - 1] as VideoSample, framed[i] as VideoSample];
    if (after.at - before.at > best.gapMs)
      best = {
        gapMs: after.at - before.at,
        lastFrameAt: before.at,
        resumedAt: after.at,
        resumedProducerId: after.producerId,
      };
  }
  return best;
}
