/**
 * Bundles the browser page (signaling/client/browser) into dist/web and the operator console
 * (signaling/ops) into dist/web/ops with esbuild.
 */
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const outdir = `${root}dist/web`;
mkdirSync(outdir, { recursive: true });
await build({
  entryPoints: [`${root}signaling/client/browser/app.ts`],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome120', 'firefox120', 'safari17'],
  sourcemap: true,
  minify: true,
  outfile: `${outdir}/app.js`,
  logLevel: 'warning',
});
for (const file of ['index.html', 'favicon.svg'])
  copyFileSync(`${root}signaling/client/browser/${file}`, `${outdir}/${file}`);
mkdirSync(`${outdir}/ops`, { recursive: true });
await build({
  entryPoints: [`${root}signaling/ops/ops.ts`],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome120', 'firefox120', 'safari17'],
  sourcemap: true,
  minify: true,
  outfile: `${outdir}/ops/ops.js`,
  logLevel: 'warning',
});
for (const file of ['index.html', 'ops.css']) copyFileSync(`${root}signaling/ops/${file}`, `${outdir}/ops/${file}`);
console.log(`built ${outdir}`);
