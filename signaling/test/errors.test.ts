/**
 * The error catalogue: the contract's codes and close codes, a status for every code, the wire
 * shape of errors, and an SDK that takes its codes from the catalogue without pulling in
 * server code.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { bundleForBrowser } from '../../test-support/browser.js';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import {
  CLIENT_ERROR_CODES,
  ClientCloseCode,
  CloseCode,
  ConfigError,
  ERROR_CODES,
  HTTP_ONLY_ERROR_CODES,
  HTTP_STATUS,
  ProtocolError,
  isErrorCode,
  toErrorBody,
} from '../src/errors.js';
import { CONTRACT_CLOSE_CODES, CONTRACT_ERROR_CODES } from '../../test-support/contract.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SDK = 'signaling/client/index.ts';

describe('error catalogue', () => {
  it('holds exactly the contract codes', () => {
    expect([...ERROR_CODES].sort()).toEqual([...CONTRACT_ERROR_CODES].sort());
    for (const code of CONTRACT_ERROR_CODES) expect(isErrorCode(code)).toBe(true);
    for (const code of [...HTTP_ONLY_ERROR_CODES, ...CLIENT_ERROR_CODES, 'code', undefined]) {
      expect(isErrorCode(code)).toBe(false);
    }
  });

  it.each([
    ['BAD_REQUEST', 400],
    ['UNKNOWN_METHOD', 404],
    ['NOT_JOINED', 409],
    ['ALREADY_JOINED', 409],
    ['FORBIDDEN', 403],
    ['NOT_FOUND', 404],
    ['RATE_LIMITED', 429],
    ['ROOM_FULL', 409],
    ['UNAVAILABLE', 503],
    ['INTERNAL', 500],
    ['UNAUTHORIZED', 401],
    ['METHOD_NOT_ALLOWED', 405],
  ] as const)('maps %s to HTTP %i', (code, status) => {
    expect(HTTP_STATUS[code]).toBe(status);
  });

  it('gives every code an HTTP status, and the client-only codes none', () => {
    for (const code of [...ERROR_CODES, ...HTTP_ONLY_ERROR_CODES]) {
      expect(HTTP_STATUS[code], code).toBeGreaterThanOrEqual(400);
      expect(HTTP_STATUS[code], code).toBeLessThan(600);
    }
    expect(Object.keys(HTTP_STATUS).sort()).toEqual([...ERROR_CODES, ...HTTP_ONLY_ERROR_CODES].sort());
    for (const code of CLIENT_ERROR_CODES) expect(Object.hasOwn(HTTP_STATUS, code)).toBe(false);
    expect(Object.isFrozen(HTTP_STATUS)).toBe(true);
  });

  it('holds every close code of the contract, and the client-only ones apart', () => {
    const catalogue = new Set<number>(Object.values(CloseCode));
    for (const [meaning, code] of Object.entries(CONTRACT_CLOSE_CODES)) expect(catalogue.has(code), meaning).toBe(true);
    for (const code of Object.values(ClientCloseCode)) expect(catalogue.has(code)).toBe(false);
    expect(Object.isFrozen(CloseCode)).toBe(true);
    expect(Object.isFrozen(ClientCloseCode)).toBe(true);
  });
});

describe('the SDK and the catalogue', () => {
  it('bundles for the browser with nothing but itself and its copy of the catalogue', async () => {
    const result = await bundleForBrowser({
      absWorkingDir: ROOT,
      entryPoints: [SDK],
    });
    expect(Object.keys(result.metafile.inputs).sort()).toEqual([
      'signaling/client/error-codes.generated.ts',
      'signaling/client/history.ts',
      SDK,
    ]);
  });

  it('writes no close code, HTTP status or unknown error code as a literal', () => {
    const source = ts.createSourceFile(SDK, readFileSync(`${ROOT}${SDK}`, 'utf8'), ts.ScriptTarget.Latest, true);
    const closeCodes = new Set<number>([...Object.values(CloseCode), ...Object.values(ClientCloseCode)]);
    const known = new Set<string>([...ERROR_CODES, ...CLIENT_ERROR_CODES]);
    const isStatus = (node: ts.Node): boolean => ts.isPropertyAccessExpression(node) && node.name.text === 'status';
    const found: string[] = [];
    const visit = (node: ts.Node): void => {
      if (ts.isNumericLiteral(node) && (closeCodes.has(Number(node.text)) || /^4\d{3}$/.test(node.text))) {
        found.push(node.getText());
      }
      if (ts.isBinaryExpression(node) && (isStatus(node.left) || isStatus(node.right))) {
        if (ts.isNumericLiteral(node.left) || ts.isNumericLiteral(node.right)) found.push(node.getText());
      }
      if (ts.isStringLiteral(node) && /^[A-Z][A-Z_]{3,}$/.test(node.text) && !known.has(node.text)) {
        found.push(node.getText());
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
    expect(found).toEqual([]);
  });
});

describe('ProtocolError', () => {
  it('is an Error with a code', () => {
    const error = new ProtocolError('NOT_FOUND', 'no such participant');
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('ProtocolError');
    expect(error.code).toBe('NOT_FOUND');
    expect(error.message).toBe('no such participant');
  });

  it('serializes to the wire shape without optional fields', () => {
    expect(new ProtocolError('FORBIDDEN', 'not allowed').toBody()).toStrictEqual({
      code: 'FORBIDDEN',
      message: 'not allowed',
    });
  });

  it('carries retryAfterMs as a whole, non-negative number of ms', () => {
    expect(new ProtocolError('RATE_LIMITED', 'slow down', { retryAfterMs: 1200 }).toBody()).toStrictEqual({
      code: 'RATE_LIMITED',
      message: 'slow down',
      retryAfterMs: 1200,
    });
    expect(new ProtocolError('RATE_LIMITED', 'x', { retryAfterMs: 10.2 }).toBody().retryAfterMs).toBe(11);
    expect(new ProtocolError('RATE_LIMITED', 'x', { retryAfterMs: -5 }).toBody().retryAfterMs).toBe(0);
    expect(new ProtocolError('RATE_LIMITED', 'x', { retryAfterMs: 0 }).toBody().retryAfterMs).toBe(0);
  });

  it('carries details', () => {
    const details = [{ path: 'text', message: 'too long' }];
    expect(new ProtocolError('BAD_REQUEST', 'invalid data', { details }).toBody()).toStrictEqual({
      code: 'BAD_REQUEST',
      message: 'invalid data',
      details,
    });
  });

  it('survives JSON encoding unchanged', () => {
    const body = new ProtocolError('UNAVAILABLE', 'draining', { retryAfterMs: 1000 }).toBody();
    expect(JSON.parse(JSON.stringify(body))).toStrictEqual(body);
  });
});

describe('toErrorBody', () => {
  it('passes protocol errors through', () => {
    expect(toErrorBody(new ProtocolError('ROOM_FULL', 'full'))).toStrictEqual({ code: 'ROOM_FULL', message: 'full' });
  });

  it.each([
    ['an Error', new Error('database password is hunter2')],
    ['a TypeError', new TypeError('cannot read x of undefined')],
    ['a string', 'oops'],
    ['undefined', undefined],
    ['null', null],
    ['a look-alike object', { code: 'FORBIDDEN', message: 'fake' }],
  ])('turns %s into INTERNAL without leaking its message', (_what, thrown) => {
    expect(toErrorBody(thrown)).toStrictEqual({ code: 'INTERNAL', message: 'internal error' });
  });
});

describe('programmer errors', () => {
  it('are named classes', () => {
    expect(new ConfigError('bad PORT').name).toBe('ConfigError');
    expect(new ConfigError('x')).toBeInstanceOf(Error);
  });
});
