/**
 * Auto-TLS: a self-signed EC certificate for the advertise address. The agent
 * serves HTTPS with it and sends the PEM as agent_verify_ca, which the conductor then pins.
 */
import { isIP } from 'node:net';
import { readFileSync } from 'node:fs';
import { ConfigError, errorMessage } from '../common/errors.js';
import type { TlsMaterial } from './server.js';

/** IPA: validity starts auto_tls_allowed_clock_skew (3600 s) in the past, against skewed ramdisk clocks. */
const CLOCK_SKEW_MS = 3600 * 1000;
const VALIDITY_MS = 365 * 24 * 3600 * 1000;

export interface GeneratedCert extends TlsMaterial {
  fingerprint: string;
}

export async function generateSelfSigned(advertiseHost: string): Promise<GeneratedCert> {
  const now = Date.now();
  const ip = isIP(advertiseHost) !== 0;
  // Loaded here, not at agent start: selfsigned and its ASN.1/X.509 modules are a quarter of the agent's module
  // start-up cost (seconds in an emulated ramdisk) and only auto-TLS needs them, after the lookup.
  const { generate } = await import('selfsigned');
  const r = await generate([{ name: 'commonName', value: advertiseHost }], {
    keyType: 'ec',
    curve: 'P-384',
    algorithm: 'sha384',
    notBeforeDate: new Date(now - CLOCK_SKEW_MS),
    notAfterDate: new Date(now + VALIDITY_MS),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [ip ? { type: 7, ip: advertiseHost } : { type: 2, value: advertiseHost }] },
    ],
  });
  return { key: r.private, cert: r.cert, fingerprint: r.fingerprint };
}

/** ipa-listen-tls with operator-provided files. */
export function readTlsFiles(certFile: string, keyFile: string): TlsMaterial {
  try {
    return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
  } catch (e) {
    throw new ConfigError(`cannot read ipa-tls-cert-file/ipa-tls-key-file: ${errorMessage(e).split('\n')[0]}`);
  }
}
