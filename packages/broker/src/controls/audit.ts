import { readFile } from 'node:fs/promises';
import { BastionError } from '@bastion/core';
import type { PublishPacket } from '@bastion/core';
import { audit } from '@bastion/detect';
import type { Audit } from '@bastion/detect';
import type { ControlFactory } from '../controls.js';

/**
 * PR.PT-1 / PR.IP-4 from `audit`: the hash-chained audit log (a middleware, so it sees the broker's
 * last events as it closes) and, for receipt topics, a listener on Aedes' `publish` event.
 */
export const auditControl: ControlFactory = async ({ profile }) => {
  const a = profile.audit;
  if (!a) return undefined;
  let key: Buffer | undefined;
  if (a.hmacKey !== undefined) {
    if ('value' in a.hmacKey) key = Buffer.from(a.hmacKey.value, 'utf8');
    else {
      try {
        key = Buffer.from((await readFile(a.hmacKey.file, 'utf8')).trim(), 'utf8');
      } catch (err) {
        throw new BastionError('BASTION_ERR_AUDIT', `audit.hmacKey: cannot read ${a.hmacKey.file}: ${(err as Error).message}`, { cause: err });
      }
    }
    if (key.length < 16) throw new BastionError('BASTION_ERR_AUDIT', 'audit.hmacKey: the key must be at least 16 bytes');
  }
  const mw = audit({
    file: a.file,
    maxSize: a.maxSize,
    maxFiles: a.maxFiles,
    key,
    fsync: a.fsync,
    exclude: a.exclude,
    receipts: a.receipts,
    start: { profile: profile.name ?? profile.source, tier: profile.tier },
  });
  let off: (() => void) | undefined;
  return {
    phase: 'observe',
    middleware: [mw],
    services:
      a.receipts.length === 0
        ? []
        : [
            {
              name: 'audit-receipts',
              controls: ['PR.IP-4'],
              start(broker) {
                const auditMw = broker.controls.get<Audit>('audit');
                if (!auditMw) return;
                // on every PUBLISH: one topic test; the client is looked up only for a receipt topic
                const onPublish = (packet: PublishPacket, client: { id: string } | null) => {
                  if (client !== null && auditMw.wantsReceipt(packet.topic)) auditMw.receipt(broker.client(client.id), packet);
                };
                broker.aedes.on('publish', onPublish as never);
                off = () => broker.aedes.off('publish', onPublish as never);
              },
              stop() {
                off?.();
              },
            },
          ],
  };
};
