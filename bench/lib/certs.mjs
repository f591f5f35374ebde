/**
 * TLS material for the TLS targets, made fresh for each run in a private temp directory (never in
 * the repository): a CA and a server certificate for localhost / 127.0.0.1 from @bastion/pki.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export async function makeTlsDir() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bastion-bench-'));
  const files = {
    dir,
    certFile: path.join(dir, 'cert.pem'),
    keyFile: path.join(dir, 'key.pem'),
    caFile: path.join(dir, 'ca.pem'),
    // a client certificate (CN = the bench user) for targets that require one (tier 3 mTLS)
    clientCertFile: path.join(dir, 'client.pem'),
    clientKeyFile: path.join(dir, 'client-key.pem'),
  };
  let source;
  try {
    const pki = await import('@bastion/pki');
    if (typeof pki.createCA !== 'function' || typeof pki.issueServerCert !== 'function') {
      throw new Error('@bastion/pki does not export createCA/issueServerCert');
    }
    // P-256 keys, as a field deployment would choose for handshake cost (the CLI's default is
    // RSA-2048); every TLS target gets the same certificate, so the ratios do not depend on it
    const keyType = 'ec-p256';
    const ca = pki.createCA({ commonName: 'bench CA', keyType });
    const srv = pki.issueServerCert(ca, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], keyType });
    await writeFile(files.caFile, ca.certPem, { mode: 0o600 });
    await writeFile(files.certFile, srv.certPem, { mode: 0o600 });
    await writeFile(files.keyFile, srv.keyPem, { mode: 0o600 });
    if (typeof pki.issueClientCert === 'function') {
      const cli = pki.issueClientCert(ca, { commonName: 'bench', keyType });
      await writeFile(files.clientCertFile, cli.certPem, { mode: 0o600 });
      await writeFile(files.clientKeyFile, cli.keyPem, { mode: 0o600 });
    }
    source = '@bastion/pki (CA, server and client certificates, EC P-256)';
  } catch (err) {
    // Safety net only, so a broken @bastion/pki build does not stop the TCP/TLS comparison:
    // a throwaway self-signed certificate (it is its own CA). The run records which one was used.
    const r = spawnSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-days', '1', '-keyout', files.keyFile, '-out', files.certFile],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    if (r.status !== 0) {
      await rm(dir, { recursive: true, force: true });
      throw new Error(`cannot make TLS certificates: @bastion/pki failed (${err.message}) and openssl failed (${r.stderr?.toString().trim() || r.error?.message})`);
    }
    await copyFile(files.certFile, files.caFile);
    source = `openssl self-signed fallback (@bastion/pki unusable: ${err.message})`;
  }
  return {
    ...files,
    source,
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
