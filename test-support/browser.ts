/**
 * Headless Chromium for the page tests: Debian's `chromium` (installed by `scripts/test.sh`)
 * driven by playwright-core with the flags that let WebRTC run against a loopback node, and the
 * demo page built once before a test file uses it.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { build, type BuildOptions, type BuildResult } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';

/** The flags every page test needs; a fake camera and microphone the page may use without asking. */
const BASE_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
];

/**
 * Launches Chromium. `permission` is how the fake permission prompt answers (`deny` makes
 * getUserMedia refuse); `extraArgs` go after the base flags. A missing browser fails loudly.
 */
export function launchChromium(
  options: { permission?: 'accept' | 'deny'; extraArgs?: readonly string[] } = {},
): Promise<Browser> {
  const prompt =
    options.permission === 'deny' ? '--use-fake-ui-for-media-stream=deny' : '--use-fake-ui-for-media-stream';
  return chromium.launch({ executablePath: CHROMIUM, args: [...BASE_ARGS, prompt, ...(options.extraArgs ?? [])] });
}

/** Builds the demo page (`dist/web`) from the current sources. */
export function buildDemoPage(): void {
  execFileSync(process.execPath, ['--import', 'tsx', 'scripts/build-web.ts'], { cwd: ROOT, stdio: 'ignore' });
}

/** What a browser bundle built in memory gives back: its output files and its inputs. */
export type BrowserBundle = BuildResult<{ write: false; metafile: true }>;

/** Bundles an entry (a file, or `stdin` code) for the browser in memory, as an integrator's bundler would. */
export function bundleForBrowser(
  entry: Pick<BuildOptions, 'absWorkingDir' | 'entryPoints' | 'stdin'>,
): Promise<BrowserBundle> {
  return build({
    ...entry,
    bundle: true,
    platform: 'browser',
    format: 'esm',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
}
