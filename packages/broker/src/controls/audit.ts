import { readFile } from 'node:fs/promises';
import { BastionError } from '@bastion/core';
import type { Middleware, PublishPacket } from '@bastion/core';
import { audit } from '@bastion/detect';
import type { Audit, AuditChange } from '@bastion/detect';
import type { ControlFactory, Reconfigurable, Service } from '../controls.js';

const isAudit = (x: Middleware | Service | undefined): x is Audit => typeof (x as Partial<Audit> | undefined)?.prepareChange === 'function';

/**
 * PR.PT-1 / PR.IP-4 from `audit`: the hash-chained audit log (a middleware, so it sees the broker's
 * last events as it closes) and, for receipt topics, a listener on Aedes' `publish` event.
 *
 * A reload takes the new settings through `prepareChange`: a new file is opened while the reload is
 * planned (it cannot be opened: the reload fails, nothing changes), then switched to; the same file
 * changes its settings in place. The key file is re-read by every reload (`outdated`).
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
  const live: Reconfigurable = {
    outdated: (replacement) => isAudit(replacement) && mw.differs(replacement),
    prepare(_next, change) {
      const to = change.replacement;
      // turning the log off is refused before (reload.ts)
      return isAudit(to) && mw.differs(to) ? mw.prepareChange(to) : undefined;
    },
    reconfigure(_next, change) {
      (change.prepared as AuditChange | undefined)?.commit();
      receipts.follow();
    },
  };
  const mw = Object.assign(
    audit({
      file: a.file,
      maxSize: a.maxSize,
      maxFiles: a.maxFiles,
      key,
      fsync: a.fsync,
      exclude: a.exclude,
      receipts: a.receipts,
      start: { profile: profile.name ?? profile.source, tier: profile.tier },
    }),
    live,
  );
  const receipts = receiptService(mw);
  return { phase: 'observe', middleware: [mw], services: [receipts] };
};

/**
 * Publish receipts: on every PUBLISH, one topic test; the client is looked up only for a receipt
 * topic. Listening only while there are receipt topics (a reload may add or drop them: `follow`).
 */
function receiptService(auditMw: Audit): Service & { follow(): void } {
  let broker: Parameters<Service['start']>[0] | undefined;
  let off: (() => void) | undefined;
  const follow = () => {
    const want = broker !== undefined && auditMw.receiptTopics.length > 0;
    if (want && off === undefined && broker !== undefined) {
      const b = broker;
      const onPublish = (packet: PublishPacket, client: { id: string } | null) => {
        if (client !== null && auditMw.wantsReceipt(packet.topic)) auditMw.receipt(b.client(client.id), packet);
      };
      b.aedes.on('publish', onPublish as never);
      off = () => b.aedes.off('publish', onPublish as never);
    } else if (!want && off !== undefined) {
      off();
      off = undefined;
    }
  };
  return {
    name: 'audit-receipts',
    get controls() {
      return auditMw.receiptTopics.length > 0 ? ['PR.IP-4'] : [];
    },
    start(b) {
      broker = b;
      follow();
    },
    stop() {
      broker = undefined;
      follow();
    },
    reconfigure() {}, // follows the audit middleware's receipt topics (its hook calls follow)
    follow,
  };
}
