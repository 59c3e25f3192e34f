/**
 * HTTPS for the conductor API. `tls.cert_file` + `tls.key_file`: the operator's certificate (and `tls.ca_file`,
 * the bundle ramdisks verify it with). Otherwise (`tls.mode: auto`, the default) a private CA and a server
 * certificate signed by it live in `<data_dir>/tls/`: made on first start, reused after, the server certificate
 * re-issued by the same CA when it nears expiry or lacks a name it must carry (listen host, api_url host,
 * public_endpoint host, 127.0.0.1, localhost, tls.extra_sans). The CA's PEM is what the boot interface hands
 * the ramdisk (ipa-cafile) and what `baremetal --os-cacert` takes. `tls.mode: off` serves plain HTTP (labs).
 */
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { ConfigError, errorMessage } from '../common/errors.js';
import { getLogger } from '../common/logger.js';
import type { ConductorConfig } from './config.js';

const log = getLogger('api-tls');

export interface ApiTls {
  cert: string;
  key: string;
  /** PEM bundle clients verify the API with (ramdisks, CLI); undefined: the system's trust store. */
  caPem: string | undefined;
  caFile: string | undefined;
  /** Where generated material lives (auto mode only). */
  dir: string | undefined;
}

/** Agents' clocks may lag (no RTC sync before DHCP): validity starts an hour back, as IPA's auto-TLS does. */
const CLOCK_SKEW_MS = 3600 * 1000;
const DAY_MS = 24 * 3600 * 1000;
const CA_VALIDITY_MS = 10 * 365 * DAY_MS;
const CERT_VALIDITY_MS = 2 * 365 * DAY_MS;
const RENEW_BEFORE_MS = 30 * DAY_MS;

function hostOf(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    return new URL(url).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return undefined;
  }
}

/** The names the server certificate must carry. Wildcard listen addresses name no host and are skipped. */
export function wantedSans(cfg: ConductorConfig): string[] {
  const names = [cfg.host, hostOf(cfg.api_url), hostOf(cfg.public_endpoint), '127.0.0.1', 'localhost',
    ...cfg.tls.extra_sans];
  const out: string[] = [];
  for (const n of names) {
    if (!n || n === '0.0.0.0' || n === '::' || out.includes(n.toLowerCase())) continue;
    out.push(n.toLowerCase());
  }
  return out;
}

function sansOf(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '').split(/,\s*/).map((s) => s.replace(/^(DNS|IP Address):/, '').toLowerCase())
    .filter(Boolean);
}

async function writePrivate(path: string, content: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, content, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

/**
 * selfsigned (with its X.509 and crypto code, ~3 MiB of heap once loaded) is imported when a certificate is made,
 * not by every conductor: configured certificates and tls.mode off never need it.
 */
async function generate(...args: Parameters<typeof import('selfsigned').generate>): ReturnType<typeof import('selfsigned').generate> {
  return (await import('selfsigned')).generate(...args);
}

async function makeCa(): Promise<{ cert: string; key: string }> {
  const now = Date.now();
  const r = await generate([{ name: 'commonName', value: 'baremetal-ts conductor CA' }], {
    keyType: 'ec', curve: 'P-256', algorithm: 'sha256',
    notBeforeDate: new Date(now - CLOCK_SKEW_MS), notAfterDate: new Date(now + CA_VALIDITY_MS),
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
  return { cert: r.cert, key: r.private };
}

async function makeServerCert(ca: { cert: string; key: string }, sans: string[]): Promise<{ cert: string; key: string }> {
  const now = Date.now();
  const r = await generate([{ name: 'commonName', value: sans[0] ?? 'baremetal-ts conductor' }], {
    keyType: 'ec', curve: 'P-256', algorithm: 'sha256', ca,
    notBeforeDate: new Date(now - CLOCK_SKEW_MS), notAfterDate: new Date(now + CERT_VALIDITY_MS),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: sans.map((n) => (isIP(n) ? { type: 7 as const, ip: n } : { type: 2 as const, value: n })) },
    ],
  });
  return { cert: r.cert, key: r.private };
}

/** Why an existing server certificate cannot be kept, or undefined when it can. */
function staleReason(certPem: string, caPem: string, sans: string[]): string | undefined {
  let cert: X509Certificate;
  let ca: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
    ca = new X509Certificate(caPem);
  } catch (e) {
    return `unreadable: ${errorMessage(e)}`;
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return 'not issued by the current CA';
  if (Date.parse(cert.validTo) - Date.now() < RENEW_BEFORE_MS) return 'expires soon';
  const have = sansOf(cert);
  const missing = sans.filter((n) => !have.includes(n));
  return missing.length ? `lacks ${missing.join(', ')}` : undefined;
}

/** The generated CA + server certificate in `dir`, created or renewed as needed. */
async function autoTls(cfg: ConductorConfig): Promise<ApiTls> {
  const dir = join(cfg.data_dir, 'tls');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const f = { ca: join(dir, 'ca.pem'), caKey: join(dir, 'ca-key.pem'), cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
  let ca: { cert: string; key: string };
  if (existsSync(f.ca) && existsSync(f.caKey)) {
    ca = { cert: await readFile(f.ca, 'utf8'), key: await readFile(f.caKey, 'utf8') };
  } else {
    ca = await makeCa();
    await writePrivate(f.caKey, ca.key);
    await writeFile(f.ca, ca.cert, { mode: 0o644 });
    log.info({ file: f.ca }, 'generated the API CA');
  }
  const sans = wantedSans(cfg);
  let cert = existsSync(f.cert) ? await readFile(f.cert, 'utf8') : '';
  let key = existsSync(f.key) ? await readFile(f.key, 'utf8') : '';
  const why = cert && key ? staleReason(cert, ca.cert, sans) : 'none yet';
  if (why) {
    ({ cert, key } = await makeServerCert(ca, sans));
    await writePrivate(f.key, key);
    await writeFile(f.cert, cert, { mode: 0o644 });
    log.info({ file: f.cert, sans, reason: why }, 'issued the API server certificate');
  }
  return { cert, key, caPem: ca.cert, caFile: f.ca, dir };
}

export async function prepareApiTls(cfg: ConductorConfig): Promise<ApiTls | undefined> {
  const t = cfg.tls;
  if (t.mode === 'off') return undefined;
  if (t.cert_file || t.key_file) {
    if (!t.cert_file || !t.key_file) throw new ConfigError('tls.cert_file and tls.key_file go together');
    const read = async (what: string, file: string): Promise<string> => {
      try {
        return await readFile(file, 'utf8');
      } catch (e) {
        throw new ConfigError(`cannot read ${what} ${file}: ${errorMessage(e)}`);
      }
    };
    return { cert: await read('tls.cert_file', t.cert_file), key: await read('tls.key_file', t.key_file),
      caPem: t.ca_file ? await read('tls.ca_file', t.ca_file) : undefined, caFile: t.ca_file, dir: undefined };
  }
  return autoTls(cfg);
}
