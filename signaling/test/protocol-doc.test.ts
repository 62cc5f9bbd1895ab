import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderProtocolDoc } from '../../scripts/protocol-doc.js';
import { METHODS } from '../src/protocol/index.js';
import { CONTRACT_METHODS } from '../../test-support/contract.js';

describe('docs/protocol.md', () => {
  it('matches the schemas (run `npm run docs:protocol` when this fails)', () => {
    const onDisk = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
    expect(onDisk).toBe(renderProtocolDoc());
  });

  it('documents every method of the contract', () => {
    const doc = renderProtocolDoc();
    for (const method of Object.keys(METHODS)) expect(doc).toContain(`### \`${method}\``);
    expect(Object.keys(METHODS).sort()).toEqual([...CONTRACT_METHODS].sort());
  });
});

describe('docs/configuration.md', () => {
  it('documents every configuration variable', async () => {
    const { CONFIG_VARIABLES } = await import('../src/config.js');
    const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    const missing = CONFIG_VARIABLES.filter((name) => !doc.includes(`\`${name}\``));
    expect(missing).toEqual([]);
  });
});
