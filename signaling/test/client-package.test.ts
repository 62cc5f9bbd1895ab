/**
 * The SDK as an integrator gets it: `npm pack` of `@trading-room/client`, installed offline from
 * the tarball into a fresh project outside the repository, a strict TypeScript program on the
 * core and `./node` entries type-checked with the repository's compiler and run against a real
 * node, a browser program on the `./media` entry type-checked, and the core and the media entry
 * bundled for the browser without Node built-ins.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { bundleForBrowser } from '../../test-support/browser.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestNode, type TestNode } from '../../test-support/harness.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PACKAGE_DIR = join(ROOT, 'signaling/client');
/** npm and the programs it starts run on the Node running this test. */
const ENV = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` };

const MAIN_TS = `
import { PROTOCOL_VERSION, RequestError, TradingRoomClient, type ConnectionState, type EventData } from '@trading-room/client';
import { nodeSocketFactory } from '@trading-room/client/node';

const version: 'v1' = PROTOCOL_VERSION;

export interface Outcome {
  protocol: typeof version;
  states: ConnectionState[];
  alert: EventData<'alert.published'>;
  alertSeq: number | undefined;
  messageId: string;
  errorCode: RequestError['code'] | undefined;
}

/** Joins, publishes an alert, receives it, chats, and reads a typed error. */
export async function main(url: string, token: string): Promise<Outcome> {
  const client = new TradingRoomClient({ url, token, createSocket: nodeSocketFactory });
  const states: ConnectionState[] = [];
  client.on('state', (state) => states.push(state));
  const alert = new Promise<[EventData<'alert.published'>, number | undefined]>((resolve) => {
    client.onEvent('alert.published', (data, seq) => resolve([data, seq]));
  });
  const joined = await client.connect();
  const role: 'presenter' | 'moderator' | 'trader' = joined.role;
  await client.request('alert.publish', { symbol: 'AAPL', action: role === 'presenter' ? 'buy' : 'watch', price: 1.5 });
  const [published, alertSeq] = await alert;
  const { messageId } = await client.request('chat.send', { text: 'hello' });
  const errorCode = await client
    .request('moderation.kick', { participantId: joined.participantId })
    .then(() => undefined, (error: unknown) => (error instanceof RequestError ? error.code : undefined));
  client.close();
  return { protocol: version, states, alert: published, alertSeq, messageId, errorCode };
}

/** Never called: each line must be a type error, or the SDK's types are too loose. */
export function misuse(client: TradingRoomClient): void {
  // @ts-expect-error an unknown method
  void client.request('chat.shout', { text: 'x' });
  // @ts-expect-error a misspelt field
  void client.request('chat.send', { txt: 'x' });
  // @ts-expect-error an action outside the contract
  void client.request('alert.publish', { symbol: 'AAPL', action: 'hold' });
  // @ts-expect-error an unknown event
  client.onEvent('alert.deleted', () => {});
  // @ts-expect-error notifications' data is typed
  client.onEvent('chat.message', (data) => data.body);
}
`;

/** A browser page on the media entry: type-checked only (WebRTC runs in the browser tests). */
const MEDIA_TS = `
import { TradingRoomClient } from '@trading-room/client';
import {
  MediaSession,
  PermissionDeniedError,
  TransportFailedError,
  type MediaState,
  type Quality,
  type RemoteTrack,
} from '@trading-room/client/media';

export async function page(url: string, token: () => Promise<string>, stage: HTMLVideoElement): Promise<MediaState> {
  const client = new TradingRoomClient({ url, token });
  const media = new MediaSession(client, { quality: 'auto' });
  media.on('trackadded', (track: RemoteTrack) => {
    if (track.kind === 'video') track.attach(stage);
    else track.attach();
  });
  media.on('qualitychanged', (track) => console.log(track.layers?.requestedLayer, track.layers?.receivedLayer));
  media.on('error', (error) => {
    if (error instanceof TransportFailedError) console.log(error.hint);
  });
  const joined = await client.connect();
  if (joined.role === 'presenter') {
    const camera = await media.publishCamera().catch((error: unknown) => {
      if (error instanceof PermissionDeniedError) return undefined;
      throw error;
    });
    if (camera) await media.mute(camera.source);
  }
  const quality: Quality = 'low';
  media.setQuality(quality);
  // @ts-expect-error not a quality
  media.setQuality('ultra');
  // @ts-expect-error not a media event
  media.on('trackgone', () => {});
  return media.state;
}
`;

const RUN_MJS = `
import { main } from './main.ts';
console.log(JSON.stringify(await main(process.argv[2], process.argv[3])));
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2023',
    lib: ['ES2023', 'DOM'],
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    noEmit: true,
    skipLibCheck: false,
    verbatimModuleSyntax: true,
    allowImportingTsExtensions: true,
    types: [],
  },
  files: ['main.ts', 'quick-start.ts', 'media.ts'],
};

/** The first TypeScript block of a README's quick start. */
function quickStart(readme: string): string {
  const match = /## (?:Quick start|The client SDK)\n[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme);
  if (!match) throw new Error('no quick start in the README');
  return match[1]!;
}

/**
 * Packs `name` and its dependencies, transitively, from the repository's node_modules into
 * `into`; returns install specs (`<name as depended on>@file:./<tarball>`, so aliases resolve).
 */
async function dependencyTarballs(into: string, name: string): Promise<string[]> {
  const seen: string[] = [];
  const queue = [name];
  while (queue.length > 0) {
    const next = queue.shift()!;
    if (seen.includes(next)) continue;
    seen.push(next);
    const manifest = JSON.parse(await readFile(join(ROOT, 'node_modules', next, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    queue.push(...Object.keys(manifest.dependencies ?? {}));
  }
  const packed = JSON.parse(
    await npm(
      into,
      'pack',
      ...seen.map((dep) => join(ROOT, 'node_modules', dep)),
      '--json',
      '--ignore-scripts',
      '--pack-destination',
      into,
    ),
  ) as { filename: string }[];
  return packed.map((p, i) => `${seen[i]}@file:./${p.filename}`);
}

let project: string;
let tarballFiles: string[];

async function npm(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, env: ENV });
  return stdout;
}

beforeAll(async () => {
  project = await mkdtemp(join(tmpdir(), 'trading-room-client-'));
  // `prepack` builds the package; `--json` lists what the tarball holds.
  const [packed] = JSON.parse(await npm(PACKAGE_DIR, 'pack', '--json', '--pack-destination', project)) as {
    filename: string;
    files: { path: string }[];
  }[];
  tarballFiles = packed!.files.map((file) => file.path).sort();
  // `ws`, the Node entry's optional peer, from the repository's copy: the fresh project reaches no registry.
  const [ws] = JSON.parse(
    await npm(
      project,
      'pack',
      join(ROOT, 'node_modules/ws'),
      '--json',
      '--ignore-scripts',
      '--pack-destination',
      project,
    ),
  ) as { filename: string }[];
  // The media entry's dependency and what it needs, from the repository's copies as well.
  const dependencies = await dependencyTarballs(project, 'mediasoup-client');
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'integrator', private: true, type: 'module' }));
  await npm(
    project,
    'install',
    `./${packed!.filename}`,
    `./${ws!.filename}`,
    ...dependencies,
    '--offline',
    '--ignore-scripts',
  );
  await writeFile(join(project, 'media.ts'), MEDIA_TS);
  await writeFile(join(project, 'main.ts'), MAIN_TS);
  await writeFile(join(project, 'run.mjs'), RUN_MJS);
  const readme = await readFile(join(PACKAGE_DIR, 'README.md'), 'utf8');
  await writeFile(join(project, 'quick-start.ts'), quickStart(readme));
  await writeFile(join(project, 'tsconfig.json'), JSON.stringify(TSCONFIG));
}, 120_000);

afterAll(async () => {
  if (project) await rm(project, { recursive: true, force: true });
});

describe('the @trading-room/client package', () => {
  it('ships built ESM and declarations, no sources, at the version of the server', async () => {
    const root = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const installed = JSON.parse(
      await readFile(join(project, 'node_modules/@trading-room/client/package.json'), 'utf8'),
    ) as { version: string; dependencies?: Record<string, string> };
    expect(installed.version).toBe(root.version);
    // Only the media entry has a dependency; the core and `./node` use none of it.
    expect(installed.dependencies ?? {}).toEqual({ 'mediasoup-client': '3.24.1' });
    expect(tarballFiles).toContain('dist/media.js');
    expect(tarballFiles).toContain('dist/media.d.ts');
    expect(tarballFiles).toContain('dist/index.js');
    expect(tarballFiles).toContain('dist/index.d.ts');
    expect(tarballFiles).toContain('dist/node.js');
    expect(tarballFiles).toContain('README.md');
    const unexpected = tarballFiles.filter(
      (file) => !/^dist\/[\w.-]+\.(js|d\.ts)$/.test(file) && !['README.md', 'package.json'].includes(file),
    );
    expect(unexpected).toEqual([]);
  });

  it('has one quick start, in its README and in the repository README', async () => {
    const own = quickStart(await readFile(join(PACKAGE_DIR, 'README.md'), 'utf8'));
    expect(quickStart(await readFile(join(ROOT, 'README.md'), 'utf8'))).toBe(own);
    expect(own).toContain("from '@trading-room/client'");
  });

  it('type-checks a strict program and the quick start on the core, the Node and the media entries, without Node types', async () => {
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const result = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: project, env: ENV }).catch(
      (error: { stdout: string; code: number }) => ({ stdout: error.stdout, code: error.code }),
    );
    expect(result.stdout).toBe('');
  });

  describe('against a node', () => {
    let node: TestNode;
    beforeAll(async () => {
      node = await startTestNode();
    });
    afterAll(async () => {
      await node?.close();
    });

    it('runs the program from the installed package', async () => {
      const token = await node.token('integrator', { role: 'presenter', roomId: 'package-room' });
      const { stdout } = await run(process.execPath, ['run.mjs', node.wsUrl, token], { cwd: project, env: ENV });
      const outcome = JSON.parse(stdout) as Record<string, unknown>;
      expect(outcome).toMatchObject({
        protocol: 'v1',
        states: ['connecting', 'joined', 'closed'],
        alert: { symbol: 'AAPL', action: 'buy', price: 1.5, from: { userId: 'integrator' } },
        alertSeq: expect.any(Number),
        messageId: expect.any(String),
        errorCode: 'FORBIDDEN',
      });
    });
  });

  it('bundles its core for the browser without Node built-ins', async () => {
    const result = await bundleForBrowser({
      absWorkingDir: project,
      stdin: {
        contents:
          "import { TradingRoomClient, PROTOCOL_VERSION } from '@trading-room/client'; console.log(TradingRoomClient, PROTOCOL_VERSION);",
        resolveDir: project,
        loader: 'ts',
      },
    });
    expect(result.errors).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs).filter((input) => input !== '<stdin>');
    expect(inputs.length).toBeGreaterThan(0);
    for (const input of inputs) expect(input).toMatch(/^node_modules\/@trading-room\/client\/dist\/[\w.-]+\.js$/);
    const code = result.outputFiles[0]!.text;
    expect(code).not.toMatch(/\brequire\(|["']node:/);
    expect(code).toContain('"v1"');
  });
});

describe('the media entry in a browser bundle', () => {
  it('bundles with mediasoup-client and without Node built-ins', async () => {
    const result = await bundleForBrowser({
      absWorkingDir: project,
      stdin: {
        contents: "import { MediaSession } from '@trading-room/client/media'; console.log(MediaSession);",
        resolveDir: project,
        loader: 'ts',
      },
    });
    expect(result.errors).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((input) => input.startsWith('node_modules/mediasoup-client/'))).toBe(true);
    expect(result.outputFiles[0]!.text).not.toMatch(/["']node:/);
  });
});
