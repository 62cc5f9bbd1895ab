/** Bundles the browser page (signaling/client/browser) into dist/web with esbuild. */
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
copyFileSync(`${root}signaling/client/browser/index.html`, `${outdir}/index.html`);
console.log(`built ${outdir}`);
