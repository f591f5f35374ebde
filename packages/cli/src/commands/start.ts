import { rmSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { createBroker } from '@bastion/broker';

export function register(program: Command): void {
  program
    .command('start')
    .description('start the broker (without --profile: the embedded development default — loopback, TLS with dev certificates, passwords); SIGHUP reloads the profile, SIGINT/SIGTERM stop it')
    .option('-p, --profile <file>', 'framework-profile file (YAML or JSON)')
    .option('--pid-file <file>', 'write the process id here (for `bastion reload --pid-file`); removed on exit')
    .action(async (opts: { profile?: string; pidFile?: string }) => {
      // SIGHUP re-reads the whole profile, applied whole or not at all (Bastion.reload)
      const broker = await createBroker({ profile: opts.profile, reloadOnSighup: true });
      for (const [name, a] of Object.entries(broker.addresses())) {
        process.stdout.write(`bastion: ${name} listening on ${a.transport}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}\n`);
      }
      broker.events.on((e) => process.stdout.write(`bastion: ${e.type}: ${e.message ?? ''}\n`), { types: ['profile.reloaded', 'profile.reload.failed'] });
      if (opts.pidFile !== undefined) writeFileSync(opts.pidFile, `${process.pid}\n`, { mode: 0o644 });
      const removePid = () => {
        if (opts.pidFile === undefined) return;
        try {
          rmSync(opts.pidFile, { force: true });
        } catch {
          /* best effort: a stale pid file names a dead process, which `bastion reload` reports */
        }
      };
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        broker.logger.info({ signal }, 'shutting down');
        broker.close().then(
          () => {
            removePid();
            process.exit(0);
          },
          () => {
            removePid();
            process.exit(1);
          },
        );
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));
    });
}
