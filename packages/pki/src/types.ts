/** Result of issuing a certificate. All PEM strings. `keyPem` is secret: never log it. */
export interface Issued {
  certPem: string;
  /** PKCS#8 "PRIVATE KEY" PEM. */
  keyPem: string;
  /** Lowercase hex, leading zero bytes stripped (see normalizeSerial). */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** RFC 4514 form, most specific first, e.g. "CN=device-1,OU=devices". */
  subject: string;
}

/** A CA certificate and its private key, both PEM. */
export interface CertificateAuthority {
  certPem: string;
  /** Plain or encrypted ("ENCRYPTED PRIVATE KEY") PKCS#8 PEM. */
  keyPem: string;
  /** Passphrase of an encrypted `keyPem`. Never logged. */
  passphrase?: string;
}
