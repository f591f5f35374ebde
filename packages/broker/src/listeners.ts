import { promises as fs } from 'node:fs';
import type { ListenerOptions, ProxyProtocolOptions, TlsOptions } from '@bastion/core';
import { BastionError } from '@bastion/core';
import { CidrSet } from '@bastion/middleware';
import type { Listener, ListenerProxyProtocol, ListenerTls } from '@bastion/profile';

async function read(file: string, what: string, listener: string): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new BastionError('BASTION_ERR_TLS_CONFIG', `listener ${listener}: cannot read ${what} ${file} (${code === 'ENOENT' ? 'file not found' : code})`, { cause: err });
  }
}

export async function loadTls(t: ListenerTls, listener: string): Promise<TlsOptions> {
  return {
    cert: await read(t.cert, 'tls.cert', listener),
    key: await read(t.key, 'tls.key', listener),
    ca: await Promise.all(t.ca.map((f) => read(f, 'tls.ca', listener))),
    crl: await Promise.all(t.crl.map((f) => read(f, 'tls.crl', listener))),
    minVersion: t.minVersion,
    ciphers: t.ciphers,
    clientCertificate: t.clientCertificate,
    handshakeTimeout: t.handshakeTimeout,
  };
}

/** The profile's trusted balancers, matched like the access lists (one space for IPv4 and IPv4-mapped IPv6). */
export function proxyProtocolOptions(pp: ListenerProxyProtocol): ProxyProtocolOptions {
  const trusted = new CidrSet(pp.trusted);
  return { trusted: (address) => trusted.has(address), required: pp.required, timeout: pp.timeout };
}

export async function listenerOptions(l: Listener): Promise<ListenerOptions> {
  // an automatic name for port 0 would read "mqtt:0": let the core name it after the bound port
  const name = l.port === 0 && l.name === `${l.protocol}:0` ? undefined : l.name;
  const proxyProtocol = l.proxyProtocol === undefined ? undefined : proxyProtocolOptions(l.proxyProtocol);
  const base = { name, transport: l.protocol, host: l.host, port: l.port, proxyProtocol };
  switch (l.protocol) {
    case 'mqtt':
      return base;
    case 'ws':
      return { ...base, path: l.path };
    case 'mqtts':
      return { ...base, tls: await loadTls(l.tls, l.name) };
    case 'wss':
      return { ...base, path: l.path, tls: await loadTls(l.tls, l.name) };
  }
}
