/**
 * Issuing end-entity certificates (TLS server and TLS client) from a CA.
 */
import { openCA } from './ca.js';
import { PkiError } from './errors.js';
import { generateKey, type KeyType } from './keys.js';
import { ipToBytes } from './names.js';
import { describeIssued, signCertificate, type SubjectAttribute } from './sign.js';
import type { CertificateAuthority, Issued } from './types.js';
import { resolveValidity } from './validity.js';

export interface ServerCertOptions {
  commonName: string;
  /** DNS subjectAltNames. When neither dnsNames nor ipAddresses is given, commonName is used. */
  dnsNames?: string[];
  /** IPv4 or IPv6 literals, e.g. '127.0.0.1', '::1'. */
  ipAddresses?: string[];
  /** Default 825. */
  validityDays?: number;
  notBefore?: Date;
  notAfter?: Date;
  /** Default 'rsa-2048'. */
  keyType?: KeyType;
}

export interface ClientCertOptions {
  commonName: string;
  dnsNames?: string[];
  uris?: string[];
  emails?: string[];
  organizationalUnit?: string;
  /** Default 365. */
  validityDays?: number;
  notBefore?: Date;
  notAfter?: Date;
  /** Default 'rsa-2048'. */
  keyType?: KeyType;
}

export const SERVER_DEFAULT_DAYS = 825;
export const CLIENT_DEFAULT_DAYS = 365;
export const LEAF_DEFAULT_KEY_TYPE: KeyType = 'rsa-2048';

const DNS_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

function badInput(message: string): PkiError {
  return new PkiError('BASTION_ERR_PKI_BAD_INPUT', message);
}

function checkDnsName(name: string): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 253) throw badInput(`Invalid DNS name ${JSON.stringify(name)}.`);
  if (ipToBytes(name)) throw badInput(`${JSON.stringify(name)} is an IP address; pass it in ipAddresses, not dnsNames.`);
  const labels = name.replace(/\.$/, '').split('.');
  labels.forEach((label, i) => {
    if (i === 0 && label === '*' && labels.length > 1) return; // left-most wildcard
    if (!DNS_LABEL.test(label)) throw badInput(`Invalid DNS name ${JSON.stringify(name)}: use letters, digits, '-' and '.' only.`);
  });
  return name;
}

function checkIp(ip: string): Buffer {
  const bytes = typeof ip === 'string' ? ipToBytes(ip) : undefined;
  if (!bytes) throw badInput(`Invalid IP address ${JSON.stringify(ip)}: pass an IPv4 or IPv6 literal such as '127.0.0.1' or '::1' (no zone id).`);
  return bytes;
}

function checkUri(uri: string): string {
  let ok = typeof uri === 'string' && /^[\x21-\x7e]+$/.test(uri);
  if (ok) {
    try {
      new URL(uri);
    } catch {
      ok = false;
    }
  }
  if (!ok) throw badInput(`Invalid URI ${JSON.stringify(uri)}: pass an absolute ASCII URI such as 'spiffe://bastion/device-1'.`);
  return uri;
}

function checkEmail(email: string): string {
  if (typeof email !== 'string' || !/^[\x21-\x3f\x41-\x7e]+@[A-Za-z0-9.-]+$/.test(email)) {
    throw badInput(`Invalid email address ${JSON.stringify(email)}: pass an ASCII address such as 'ops@example.com'.`);
  }
  return email;
}

interface AltNameInput {
  dnsNames?: string[];
  ipAddresses?: string[];
  uris?: string[];
  emails?: string[];
}

/** node-forge altNames: 1 rfc822Name, 2 dNSName, 6 URI, 7 iPAddress (raw address bytes). */
function subjectAltName(input: AltNameInput): object | undefined {
  const altNames: Array<{ type: number; value: string }> = [
    ...(input.dnsNames ?? []).map((v) => ({ type: 2, value: checkDnsName(v) })),
    ...(input.ipAddresses ?? []).map((v) => ({ type: 7, value: checkIp(v).toString('binary') })),
    ...(input.uris ?? []).map((v) => ({ type: 6, value: checkUri(v) })),
    ...(input.emails ?? []).map((v) => ({ type: 1, value: checkEmail(v) })),
  ];
  return altNames.length > 0 ? { name: 'subjectAltName', altNames } : undefined;
}

function issue(
  ca: CertificateAuthority,
  subject: SubjectAttribute[],
  validity: { notBefore: Date; notAfter: Date },
  keyType: KeyType,
  extensions: Array<object | undefined>,
): Issued {
  const signer = openCA(ca);
  if (validity.notAfter.getTime() > signer.cert.notAfter.getTime()) {
    throw badInput(
      `The certificate would outlive its CA (CA expires ${signer.cert.notAfter.toISOString()}). Use a shorter validity or renew the CA.`,
    );
  }
  const { spkiDer, keyPem } = generateKey(keyType);
  const ec = keyType.startsWith('ec-');
  const { der, pem } = signCertificate(
    {
      subject,
      spkiDer,
      ...validity,
      // keyEncipherment is RSA key transport; an EC key only signs (ECDHE).
      extensions: extensions
        .filter((e): e is object => e !== undefined)
        .map((e) => ((e as { name?: string }).name === 'keyUsage' && ec ? { ...e, keyEncipherment: false } : e)),
    },
    { key: signer.key, issuerNameDer: signer.cert.subjectDer, keyIdentifier: signer.keyIdentifier },
  );
  return describeIssued(der, pem, keyPem);
}

/** TLS server certificate: keyUsage digitalSignature+keyEncipherment, extKeyUsage serverAuth, SAN DNS/IP. */
export function issueServerCert(ca: CertificateAuthority, opts: ServerCertOptions): Issued {
  const validity = resolveValidity(opts, SERVER_DEFAULT_DAYS);
  let { dnsNames, ipAddresses } = opts;
  if ((dnsNames ?? []).length === 0 && (ipAddresses ?? []).length === 0) {
    if (ipToBytes(opts.commonName)) ipAddresses = [opts.commonName];
    else dnsNames = [opts.commonName];
  }
  return issue(ca, [{ shortName: 'CN', value: opts.commonName }], validity, opts.keyType ?? LEAF_DEFAULT_KEY_TYPE, [
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    subjectAltName({ dnsNames: dnsNames ?? [], ipAddresses: ipAddresses ?? [] }),
  ]);
}

/** TLS client certificate: keyUsage digitalSignature, extKeyUsage clientAuth, optional SAN DNS/URI/email. */
export function issueClientCert(ca: CertificateAuthority, opts: ClientCertOptions): Issued {
  const validity = resolveValidity(opts, CLIENT_DEFAULT_DAYS);
  const subject: SubjectAttribute[] = [];
  if (opts.organizationalUnit !== undefined) subject.push({ shortName: 'OU', value: opts.organizationalUnit });
  subject.push({ shortName: 'CN', value: opts.commonName });
  return issue(ca, subject, validity, opts.keyType ?? LEAF_DEFAULT_KEY_TYPE, [
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true },
    subjectAltName({ dnsNames: opts.dnsNames ?? [], uris: opts.uris ?? [], emails: opts.emails ?? [] }),
  ]);
}
