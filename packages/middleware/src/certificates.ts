/**
 * Client-certificate identity (PR.AC-1, PR.AC-3): the verified certificate names the client, by
 * its CN or a SAN (DNS, URI or email). Optionally the MQTT client id must equal that name, so a
 * device cannot connect under another device's client id.
 */
import type { AuthVerdict, ClientCertificate, ClientInfo, Middleware } from '@bastion/core';
import { accept, deny, denyWith } from '@bastion/core';

export type CertificateIdentity = 'cn' | 'san-dns' | 'san-uri' | 'san-email';

export interface CertificateAuthOptions {
  identity?: CertificateIdentity;
  clientIdMustMatch?: boolean;
}

export function certificateIdentity(cert: ClientCertificate, identity: CertificateIdentity): string | undefined {
  switch (identity) {
    case 'cn':
      return cert.commonName;
    case 'san-dns':
      return cert.dnsNames[0];
    case 'san-uri':
      return cert.uris[0];
    case 'san-email':
      return cert.emails[0];
  }
}

export function certificateAuth(opts: CertificateAuthOptions = {}): Middleware {
  const identity = opts.identity ?? 'cn';
  const noIdentity = deny('not-authorized', `the client certificate has no ${identity} to name the client`);
  return {
    name: 'certificates',
    controls: ['PR.AC-1', 'PR.AC-3'],
    authenticate(client: ClientInfo): AuthVerdict {
      const cert = client.certificate;
      if (!cert) return undefined; // no certificate on this connection: this factor was not presented
      const name = certificateIdentity(cert, identity);
      if (name === undefined || name === '') return noIdentity;
      if (opts.clientIdMustMatch && client.id !== name) {
        return denyWith('client-id-rejected', `client id "${client.id}" does not match certificate identity "${name}"`);
      }
      return accept('certificate', name);
    },
  };
}
