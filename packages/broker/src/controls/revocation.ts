import { BastionError } from '@bastion/core';
import { revocation } from '@bastion/middleware';
import type { ControlFactory, Service } from '../controls.js';
import { sighupService } from './tls-reload.js';

/**
 * RS.RP-1 / PR.AC-1 from `revocation`: the CRL check as a gate before CONNECT, on every TLS
 * listener. The CRLs are loaded (and verified) here, so a broken CRL stops the broker from
 * starting rather than letting it run without revocation.
 */
export const revocationControl: ControlFactory = async ({ profile, logger }) => {
  const r = profile.revocation;
  if (!r) return undefined;
  const tlsListeners = profile.listeners.filter((l) => l.protocol === 'mqtts' || l.protocol === 'wss');
  const ca = r.ca ?? [...new Set(tlsListeners.flatMap((l) => l.tls.ca))];
  if (ca.length === 0) {
    throw new BastionError('BASTION_ERR_REVOCATION', 'revocation: no CA certificate to verify the CRLs with; set revocation.ca, or tls.ca on the TLS listeners');
  }
  if (!tlsListeners.some((l) => l.tls.clientCertificate !== 'none')) {
    logger.warn('revocation is configured but no TLS listener asks for client certificates (tls.clientCertificate): nothing will be checked');
  }
  const doubled = tlsListeners.filter((l) => l.tls.crl.some((f) => r.crl.includes(f)));
  if (doubled.length > 0 && r.stale === 'warn') {
    logger.warn(
      { listeners: doubled.map((l) => l.name) },
      'a revocation CRL is also in tls.crl: OpenSSL will refuse every client once it is stale, whatever revocation.stale says',
    );
  }
  const mw = revocation({ crl: r.crl, ca, stale: r.stale, unknownIssuer: r.unknownIssuer, watch: r.watch, logger });
  await mw.load();
  const services: Service[] = profile.certificates.sighup ? [sighupService('revocation-sighup', () => mw.reload(), logger, ['RS.RP-1'])] : [];
  return { phase: 'gate', middleware: [mw], services };
};
