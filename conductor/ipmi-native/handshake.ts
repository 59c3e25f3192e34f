/**
 * RMCP+ session establishment (IPMI 2.0 §13.15–13.31): Get Channel Authentication Capabilities (is there an IPMI 2.0
 * BMC at all), Open Session with the suite's algorithms, then RAKP 1–4 with mutual authentication: the BMC proves
 * it knows the password (RAKP 2 HMAC), we prove it (RAKP 3) and the BMC proves it derived the same SIK (RAKP 4).
 * Answers that are not for the current request are skipped while waiting; a lost datagram restarts the exchange
 * with a new Open Session, since BMCs dislike a repeated RAKP 1 or 3.
 */
import { randomBytes, randomInt } from 'node:crypto';
import {
  type CipherSuite, type RakpInputs, deriveSessionKeys, rakp2AuthCode, rakp3AuthCode, rakp4Icv, sameBytes, userKey,
} from './crypto.js';
import type { IpmiError, IpmiErrorKind } from './errors.js';
import {
  type DecodedPacket, decodeIpmiResponse, decodeOpenSessionResponse, decodeRakp2, decodeRakp4, encodeIpmiRequest,
  encodeOpenSessionRequest, encodeRakp1, encodeRakp3, encodeV15Packet, encodeV2Packet, type OpenSessionResponse,
  type PacketKeys, PayloadType, type Rakp2, RMCP_STATUS,
} from './packet.js';

/** What the handshake needs from its session: the retrying send/receive and the sequence/tag counters. */
export interface HandshakeIo {
  transact<T>(build: () => Buffer, accept: (p: DecodedPacket) => T | undefined, deadline: number, attempts?: number):
    Promise<{ value: T | undefined; tries: number }>;
  nextRqSeq(): number;
  nextTag(): number;
  fail(kind: IpmiErrorKind, what: string): IpmiError;
}

export interface HandshakeTarget {
  username: string;
  password: string;
  /** Privilege level number (table 6-2). */
  priv: number;
  kg?: Buffer;
}

export interface Handshake {
  keys: PacketKeys;
  consoleSid: number;
  bmcSid: number;
}

const NETFN_APP = 0x06;

function tryParse<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

function tryResponse(payload: Buffer) {
  return tryParse(() => decodeIpmiResponse(payload));
}

export async function rmcpPlusHandshake(io: HandshakeIo, suite: CipherSuite, target: HandshakeTarget, deadline: number,
  callTimeoutMs: number): Promise<Handshake> {
  const priv = target.priv;
  // 1. Is there an IPMI 2.0 BMC at all? (also the cheapest "unreachable" signal)
  const capSeq = io.nextRqSeq();
  const capReq = encodeV15Packet(encodeIpmiRequest({ netFn: NETFN_APP, cmd: 0x38, rqSeq: capSeq, data: Buffer.from([0x8e, priv]) }));
  const cap = await io.transact(() => capReq, (p) => {
    if (p.version !== '1.5') return undefined;
    const r = tryResponse(p.payload);
    return r && r.cmd === 0x38 && r.rqSeq === capSeq ? r : undefined;
  }, deadline);
  if (!cap.value) {
    throw io.fail('unreachable', `no response from the BMC after ${cap.tries} attempt(s) within ${Math.round(callTimeoutMs / 1000)} s; ` +
      'check ipmi_address/ipmi_port and that IPMI over LAN is enabled');
  }
  const c = cap.value;
  if (c.completionCode !== 0 || c.data.length < 4 || ((c.data[1] as number) & 0x80) === 0 || ((c.data[3] as number) & 0x02) === 0) {
    throw io.fail('cipher', 'the BMC does not offer IPMI 2.0 (RMCP+) on this channel');
  }
  // 2–4. Open Session and RAKP; a lost datagram restarts the exchange (BMCs dislike a repeated RAKP 1 or 3).
  const username = Buffer.from(target.username, 'utf8');
  const kuid = userKey(target.password);
  const role = priv | 0x10; // name-only lookup
  for (let round = 1; ; round++) {
    if (Date.now() >= deadline) throw io.fail('unreachable', `session set-up timed out after ${round - 1} attempt(s)`);
    const consoleSid = randomInt(1, 0xffffffff);
    const openTag = io.nextTag();
    // Answers that are not for this request (stale tag, other session) are skipped while waiting, so late
    // datagrams of an earlier round can't restart the exchange over and over.
    let otherAlgs: OpenSessionResponse | undefined;
    const open = await io.transact(
      () => encodeV2Packet({ payloadType: PayloadType.OPEN_SESSION_REQUEST, sessionId: 0, sessionSeq: 0, payload: encodeOpenSessionRequest(openTag, consoleSid, suite) }),
      (p) => {
        if (p.version !== '2.0' || p.payloadType !== PayloadType.OPEN_SESSION_RESPONSE) return undefined;
        const r = tryParse(() => decodeOpenSessionResponse(p.payload));
        if (!r || r.tag !== openTag) return undefined;
        if (r.status !== 0) return r;
        if (r.consoleSessionId !== consoleSid) return undefined;
        if (r.authAlg === suite.authAlg && r.integrityAlg === suite.integrityAlg && r.confidentialityAlg === suite.confidentialityAlg) return r;
        otherAlgs = r;
        return undefined;
      },
      deadline, 3);
    if (!open.value) {
      if (otherAlgs) {
        throw io.fail('cipher', `the BMC answered with other algorithms (auth ${otherAlgs.authAlg}, integrity ${otherAlgs.integrityAlg}, ` +
          `confidentiality ${otherAlgs.confidentialityAlg})`);
      }
      continue;
    }
    const o = open.value;
    if (o.status !== 0) {
      const text = RMCP_STATUS[o.status] ?? `status 0x${o.status.toString(16)}`;
      if (o.status === 0x01 || o.status === 0x0b) throw io.fail('busy', `Open Session refused: ${text}`);
      if ([0x09, 0x0a, 0x0d].includes(o.status)) throw io.fail('auth', `Open Session refused: ${text}`);
      throw io.fail('cipher', `Open Session refused: ${text}; check ipmi_cipher_suite`);
    }
    const consoleRandom = randomBytes(16);
    const rakp1Tag = io.nextTag();
    const rakp1 = encodeRakp1(rakp1Tag, o.bmcSessionId, consoleRandom, role, username);
    const digestLen = suite.hash === 'sha1' ? 20 : 32;
    const inputsOf = (r: Rakp2): RakpInputs => ({
      consoleSessionId: consoleSid, bmcSessionId: o.bmcSessionId, consoleRandom, bmcRandom: r.bmcRandom, bmcGuid: r.bmcGuid, role, username,
    });
    // RAKP messages carry no integrity trailer: a corrupted or forged RAKP 2 must not pass for a wrong password
    // while the genuine one may still arrive, so a bad HMAC only counts once the attempt has timed out.
    let badHmac = false;
    const r2 = await io.transact(
      () => encodeV2Packet({ payloadType: PayloadType.RAKP1, sessionId: 0, sessionSeq: 0, payload: rakp1 }),
      (p) => {
        if (p.version !== '2.0' || p.payloadType !== PayloadType.RAKP2) return undefined;
        const r = tryParse(() => decodeRakp2(p.payload, digestLen));
        if (!r || r.tag !== rakp1Tag) return undefined;
        if (r.status !== 0) return r;
        if (r.consoleSessionId !== consoleSid) return undefined;
        if (sameBytes(rakp2AuthCode(suite, kuid, inputsOf(r)), r.authCode)) return r;
        badHmac = true;
        return undefined;
      },
      deadline, 1);
    if (!r2.value) {
      if (badHmac) throw io.fail('auth', 'authentication rejected: the RAKP 2 HMAC is invalid (wrong ipmi_password for this user)');
      continue;
    }
    const rakp2 = r2.value;
    if (rakp2.status !== 0) {
      const text = RMCP_STATUS[rakp2.status] ?? `status 0x${rakp2.status.toString(16)}`;
      if (rakp2.status === 0x02 || rakp2.status === 0x08) continue;
      if (rakp2.status === 0x01 || rakp2.status === 0x0b) throw io.fail('busy', `RAKP 2: ${text}`);
      throw io.fail('auth', `authentication rejected in RAKP 2: ${text}; check ipmi_username and ipmi_priv_level`);
    }
    const inputs = inputsOf(rakp2);
    const keys = deriveSessionKeys(suite, target.kg ?? kuid, inputs);
    const rakp3Tag = io.nextTag();
    const rakp3 = encodeRakp3(rakp3Tag, 0, o.bmcSessionId, rakp3AuthCode(suite, kuid, inputs));
    let badIcv = false;
    const r4 = await io.transact(
      () => encodeV2Packet({ payloadType: PayloadType.RAKP3, sessionId: 0, sessionSeq: 0, payload: rakp3 }),
      (p) => {
        if (p.version !== '2.0' || p.payloadType !== PayloadType.RAKP4) return undefined;
        const r = tryParse(() => decodeRakp4(p.payload, suite.icvLength));
        if (!r || r.tag !== rakp3Tag) return undefined;
        if (r.status !== 0) return r;
        if (r.consoleSessionId !== consoleSid) return undefined;
        if (sameBytes(rakp4Icv(suite, keys.sik, inputs), r.icv)) return r;
        badIcv = true;
        return undefined;
      },
      deadline, 1);
    if (!r4.value) {
      if (badIcv) throw io.fail('auth', 'the RAKP 4 integrity check value is invalid (wrong BMC key Kg?)');
      continue;
    }
    const rakp4 = r4.value;
    if (rakp4.status !== 0) {
      if (rakp4.status === 0x02 || rakp4.status === 0x08) continue;
      throw io.fail('auth', `session rejected in RAKP 4: ${RMCP_STATUS[rakp4.status] ?? `status 0x${rakp4.status.toString(16)}`}`);
    }
    return { keys: { suite, k1: keys.k1, aesKey: keys.aesKey }, consoleSid, bmcSid: o.bmcSessionId };
  }
}
