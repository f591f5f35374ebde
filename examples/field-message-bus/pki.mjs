// The field bus PKI: one CA per plane, made with the project's own @bastion/pki.
//
// The control listener trusts only the control-plane CA and the data listener only the data-plane
// CA, so the planes are kept apart by the TLS handshake itself: a data-plane certificate (a meter's)
// can never open a connection to the control listener. EC P-256 keys throughout: small and cheap for
// constrained field devices.
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { clientPaths, initDevPki, pkiPaths } from '@bastion/pki';

/** The certificates (CN = client id = identity in the ACL) of each plane. */
export const PLANES = {
  control: ['tablet-ui-ctl', 'power-supply-ctl', 'dms-ctl', 'capbank-ctl'],
  data: ['tablet-ui', 'smart-meter', 'dms', 'capbank'],
};

/** Make both PKIs under `dir` (`dir/control`, `dir/data`), as the profile's paths expect. */
export async function makeFieldBusPki(dir) {
  for (const [plane, clients] of Object.entries(PLANES)) {
    await initDevPki(path.join(dir, plane), {
      clients,
      serverNames: ['localhost', '127.0.0.1'],
      caKeyType: 'ec-p256',
      keyType: 'ec-p256',
      force: true,
    });
  }
  return { dir, control: pkiPaths(path.join(dir, 'control')), data: pkiPaths(path.join(dir, 'data')) };
}

/** mqtt.js TLS options for one party's certificate: its plane's CA, its certificate and key. */
export async function tlsFor(dir, plane, name) {
  const planeDir = path.join(dir, plane);
  const { certPath, keyPath } = clientPaths(planeDir, name);
  return {
    ca: await readFile(pkiPaths(planeDir).caCert),
    cert: await readFile(certPath),
    key: await readFile(keyPath),
    rejectUnauthorized: true,
  };
}
