/**
 * RMCP+ cryptography (IPMI 2.0 §13.28–13.31): the RAKP key-exchange auth codes, the session keys (SIK, K1, K2),
 * the per-packet integrity code and AES-CBC-128 confidentiality. Pure functions over Buffers so that the known
 * answers of cipher suite 17 (which Debian's ipmi_sim cannot speak) are checked byte for byte in unit tests.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export interface CipherSuite {
  id: 3 | 17;
  /** RAKP authentication algorithm number (table 13-17): 1 = RAKP-HMAC-SHA1, 3 = RAKP-HMAC-SHA256. */
  authAlg: 1 | 3;
  /** Integrity algorithm number (table 13-18): 1 = HMAC-SHA1-96, 4 = HMAC-SHA256-128. */
  integrityAlg: 1 | 4;
  /** Confidentiality algorithm number (table 13-19): 1 = AES-CBC-128. */
  confidentialityAlg: 1;
  hash: 'sha1' | 'sha256';
  /** Length of the RAKP 4 integrity check value and of each packet's AuthCode (96 or 128 bits). */
  icvLength: 12 | 16;
}

export const CIPHER_SUITES: Readonly<Record<3 | 17, CipherSuite>> = {
  3: { id: 3, authAlg: 1, integrityAlg: 1, confidentialityAlg: 1, hash: 'sha1', icvLength: 12 },
  17: { id: 17, authAlg: 3, integrityAlg: 4, confidentialityAlg: 1, hash: 'sha256', icvLength: 16 },
};

export function cipherSuite(id: number): CipherSuite | undefined {
  return id === 3 || id === 17 ? CIPHER_SUITES[id] : undefined;
}

/** IPMI 2.0 passwords are at most 20 bytes; the spec's Kuid is the password zero-padded to 20. */
export const MAX_PASSWORD_BYTES = 20;
export const MAX_USERNAME_BYTES = 16;

function hmac(hash: CipherSuite['hash'], key: Buffer, ...parts: Buffer[]): Buffer {
  const h = createHmac(hash, key);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Kuid: the user's password as the HMAC key (zero padding to 20 bytes changes nothing in HMAC, so none is added). */
export function userKey(password: string): Buffer {
  const b = Buffer.from(password, 'utf8');
  if (b.length > MAX_PASSWORD_BYTES) throw new RangeError(`IPMI 2.0 passwords are at most ${MAX_PASSWORD_BYTES} bytes`);
  return b;
}

function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}

/** The values both ends hash during RAKP. Session ids as numbers (sent little-endian), the rest as sent. */
export interface RakpInputs {
  /** SIDm: the remote console's (our) session id. */
  consoleSessionId: number;
  /** SIDc: the managed system's (BMC's) session id. */
  bmcSessionId: number;
  /** Rm: our 16 random bytes (RAKP 1). */
  consoleRandom: Buffer;
  /** Rc: the BMC's 16 random bytes (RAKP 2). */
  bmcRandom: Buffer;
  /** GUIDc: the BMC's GUID (RAKP 2). */
  bmcGuid: Buffer;
  /** ROLEm: the whole requested-role byte of RAKP 1 (privilege level | name-only lookup bit). */
  role: number;
  username: Buffer;
}

/** RAKP 2 key exchange auth code, HMAC_Kuid(SIDm, SIDc, Rm, Rc, GUIDc, ROLEm, ULENGTHm, UNAMEm): full digest. */
export function rakp2AuthCode(suite: CipherSuite, kuid: Buffer, i: RakpInputs): Buffer {
  return hmac(suite.hash, kuid, u32le(i.consoleSessionId), u32le(i.bmcSessionId), i.consoleRandom, i.bmcRandom,
    i.bmcGuid, Buffer.from([i.role, i.username.length]), i.username);
}

/** RAKP 3 key exchange auth code, HMAC_Kuid(Rc, SIDm, ROLEm, ULENGTHm, UNAMEm): full digest. */
export function rakp3AuthCode(suite: CipherSuite, kuid: Buffer, i: RakpInputs): Buffer {
  return hmac(suite.hash, kuid, i.bmcRandom, u32le(i.consoleSessionId), Buffer.from([i.role, i.username.length]), i.username);
}

/** SIK = HMAC_Kg(Rm, Rc, ROLEm, ULENGTHm, UNAMEm); Kg is Kuid unless the BMC has a separate key (not truncated). */
export function sessionIntegrityKey(suite: CipherSuite, kg: Buffer, i: RakpInputs): Buffer {
  return hmac(suite.hash, kg, i.consoleRandom, i.bmcRandom, Buffer.from([i.role, i.username.length]), i.username);
}

/** RAKP 4 integrity check value, HMAC_SIK(Rm, SIDc, GUIDc) truncated to 12 (SHA1-96) or 16 (SHA256-128) bytes. */
export function rakp4Icv(suite: CipherSuite, sik: Buffer, i: RakpInputs): Buffer {
  return hmac(suite.hash, sik, i.consoleRandom, u32le(i.bmcSessionId), i.bmcGuid).subarray(0, suite.icvLength);
}

/** The additional keys K1 (integrity) and K2 (confidentiality): HMAC_SIK(const), const = 20 bytes of 01h / 02h. */
export function additionalKey(suite: CipherSuite, sik: Buffer, n: 1 | 2): Buffer {
  return hmac(suite.hash, sik, Buffer.alloc(20, n));
}

export interface SessionKeys {
  sik: Buffer;
  k1: Buffer;
  /** AES-CBC-128 key: the first 16 bytes of K2. */
  aesKey: Buffer;
}

export function deriveSessionKeys(suite: CipherSuite, kg: Buffer, i: RakpInputs): SessionKeys {
  const sik = sessionIntegrityKey(suite, kg, i);
  return { sik, k1: additionalKey(suite, sik, 1), aesKey: additionalKey(suite, sik, 2).subarray(0, 16) };
}

/** AuthCode of one session packet: HMAC_K1 over AuthType .. Next Header, truncated to the suite's length. */
export function integrityCode(suite: CipherSuite, k1: Buffer, data: Buffer): Buffer {
  return hmac(suite.hash, k1, data).subarray(0, suite.icvLength);
}

/** Constant-time comparison that is false (not a throw) for different lengths. */
export function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Table 13-20: IV, then AES-CBC(payload, pad 01h 02h .. N, N) with the total a multiple of 16; no PKCS padding. */
export function encryptPayload(aesKey: Buffer, payload: Buffer, iv: Buffer = randomBytes(16)): Buffer {
  const padLen = (16 - ((payload.length + 1) % 16)) % 16;
  const pad = Buffer.alloc(padLen + 1);
  for (let k = 0; k < padLen; k++) pad[k] = k + 1;
  pad[padLen] = padLen;
  const c = createCipheriv('aes-128-cbc', aesKey, iv).setAutoPadding(false);
  return Buffer.concat([iv, c.update(Buffer.concat([payload, pad])), c.final()]);
}

/** Inverse of encryptPayload; throws a RangeError on a length or pad that does not follow table 13-20. */
export function decryptPayload(aesKey: Buffer, data: Buffer): Buffer {
  if (data.length < 32 || data.length % 16 !== 0) throw new RangeError(`encrypted payload of ${data.length} bytes is not IV + n*16`);
  const d = createDecipheriv('aes-128-cbc', aesKey, data.subarray(0, 16)).setAutoPadding(false);
  const plain = Buffer.concat([d.update(data.subarray(16)), d.final()]);
  const padLen = plain[plain.length - 1] as number;
  if (padLen > 15 || padLen + 1 > plain.length) throw new RangeError(`bad confidentiality pad length ${padLen}`);
  const body = plain.length - padLen - 1;
  for (let k = 0; k < padLen; k++) if (plain[body + k] !== k + 1) throw new RangeError('bad confidentiality pad');
  return plain.subarray(0, body);
}
