/** Writes the client SDK's protocol types and error catalogue from the server's (`npm run generate:client`). */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderClientProtocol } from './client-protocol.js';

const root = fileURLToPath(new URL('..', import.meta.url));
for (const [file, source] of Object.entries(await renderClientProtocol())) {
  writeFileSync(`${root}${file}`, source);
  console.log(`wrote ${file}`);
}
