/** Certificates for tests, made by the project's own PKI code into a temp dir. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createCA, issueClientCert, issueServerCert, type Issued } from '@bastion/pki';

export interface TestPki {
  dir: string;
  ca: Issued;
  server: Issued;
  /** Write a client cert + key into the dir, return their contents. */
  client(name: string, opts?: Parameters<typeof issueClientCert>[1] extends infer O ? Partial<O> : never): Issued;
  /** Path of a file written into the dir. */
  write(name: string, data: string): string;
}

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(path.join(tmpdir(), 'bastion-pki-'));
  const ca = createCA({ commonName: 'Test CA' });
  const server = issueServerCert(ca, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'] });
  const write = (name: string, data: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, data, { mode: 0o600 });
    return p;
  };
  write('ca.pem', ca.certPem);
  write('server.pem', server.certPem);
  write('server-key.pem', server.keyPem);
  return {
    dir,
    ca,
    server,
    client: (name, opts = {}) => issueClientCert(ca, { commonName: name, ...opts }),
    write,
  };
}
