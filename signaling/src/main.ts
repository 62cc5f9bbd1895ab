/**
 * Entry point: parses the configuration, starts a node, prints development credentials when
 * it made them up, and drains on SIGTERM / SIGINT (a second signal does not restart the drain).
 */
import { loadConfig, type Config } from './config.js';
import { ConfigError } from './errors.js';
import { TradingRoomNode } from './node.js';
import { signAccessToken } from './auth/tokens.js';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`trading-room: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }

  const node = new TradingRoomNode(config);
  process.on('unhandledRejection', (reason) => node.log.error({ err: reason }, 'unhandled rejection'));
  process.on('uncaughtException', (error) => {
    node.log.fatal({ err: error }, 'uncaught exception');
    process.exitCode = 1;
    void node.close().finally(() => process.exit(1));
  });

  await node.start();

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    node.log.info(
      { signal, signals },
      signals === 1 ? 'signal received: draining' : 'signal received: already draining',
    );
    if (signals > 1) return;
    node.drain().then(
      () => process.exit(0),
      (error: unknown) => {
        node.log.error({ err: error }, 'drain failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  node.drainController.on('closed', () => setTimeout(() => process.exit(0), 50).unref());

  if (config.jwt.secretGenerated && config.jwt.secret) await printDevelopmentAccess(config, node.port);
}

async function printDevelopmentAccess(config: Config, port: number): Promise<void> {
  const secret = config.jwt.secret as string;
  const roomId = 'demo';
  const presenter = await signAccessToken(secret, {
    userId: 'presenter-1',
    roomId,
    role: 'presenter',
    name: 'Presenter',
  });
  const trader = await signAccessToken(secret, { userId: 'trader-1', roomId, role: 'trader', name: 'Trader' });
  const moderator = await signAccessToken(secret, {
    userId: 'moderator-1',
    roomId,
    role: 'moderator',
    name: 'Moderator',
  });
  const base = `http://localhost:${port}`;
  const lines = [
    '',
    '  trading-room is running (development: a random JWT secret was generated for this run)',
    '',
    `  demo page (presenter):  ${base}/?token=${presenter}`,
    `  demo page (trader):     ${base}/?token=${trader}`,
    '',
    `  WebSocket:  ws://localhost:${port}/ws?token=<token>`,
    `  presenter token:  ${presenter}`,
    `  trader token:     ${trader}`,
    `  moderator token:  ${moderator}`,
    config.adminTokenGenerated
      ? `  admin token:      ${config.adminToken ?? ''}   (curl -H "Authorization: Bearer …" ${base}/admin/rooms)`
      : '',
    `  health: ${base}/health   metrics: ${base}/metrics`,
    '',
    '  Try it:  npx wscat -c "ws://localhost:' +
      port +
      '/ws?token=<trader token>"  then  {"id":1,"method":"room.join","data":{}}',
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

void main();
