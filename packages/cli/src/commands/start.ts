import type { Command } from 'commander';
import { createBroker } from '@bastion/broker';

export function register(program: Command): void {
  program
    .command('start')
    .description('start the broker (without --profile: the embedded development default — loopback, TLS with dev certificates, passwords)')
    .option('-p, --profile <file>', 'framework-profile file (YAML or JSON)')
    .action(async (opts: { profile?: string }) => {
      const broker = await createBroker({ profile: opts.profile });
      for (const [name, a] of Object.entries(broker.addresses())) {
        process.stdout.write(`bastion: ${name} listening on ${a.transport}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}\n`);
      }
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        broker.logger.info({ signal }, 'shutting down');
        broker.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));
    });
}
