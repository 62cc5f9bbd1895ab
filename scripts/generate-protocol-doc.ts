/** Writes docs/protocol.md from the schemas (`npm run docs:protocol`). */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderProtocolDoc } from './protocol-doc.js';

const target = fileURLToPath(new URL('../docs/protocol.md', import.meta.url));
writeFileSync(target, renderProtocolDoc());
console.log(`wrote ${target}`);
