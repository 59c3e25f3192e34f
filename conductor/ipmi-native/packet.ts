/**
 * RMCP / IPMI LAN packet framing (IPMI 2.0 §13.6–13.8, tables 13-8 and 13-4): the IPMI 1.5 session-less wrapper
 * for Get Channel Authentication Capabilities, the RMCP+ session wrapper with integrity trailer and AES payload,
 * and IPMI request/response messages with their two checksums. Decoders throw PacketError on anything that is
 * not exactly well-formed; the session drops such datagrams, so a hostile or broken peer can't crash the client.
 */
import { type CipherSuite, decryptPayload, encryptPayload, integrityCode, sameBytes } from './crypto.js';

export class PacketError extends Error {}

/** RMCP header: version 6, reserved, sequence FFh (no RMCP ACK), class 07h (IPMI). */
const RMCP_HEADER = Buffer.from([0x06, 0x00, 0xff, 0x07]);
const AUTH_NONE = 0x00;
const AUTH_RMCP_PLUS = 0x06;

export const PayloadType = {
  IPMI: 0x00,
  OPEN_SESSION_REQUEST: 0x10,
  OPEN_SESSION_RESPONSE: 0x11,
  RAKP1: 0x12,
  RAKP2: 0x13,
  RAKP3: 0x14,
  RAKP4: 0x15,
} as const;

/** Addresses on the LAN channel: the BMC (responder) and a remote console software id (requester). */
const BMC_ADDR = 0x20;
const CONSOLE_ADDR = 0x81;

function checksum(bytes: Buffer): number {
  let s = 0;
  for (const b of bytes) s = (s + b) & 0xff;
  return (0x100 - s) & 0xff;
}

export interface IpmiRequest {
  netFn: number;
  cmd: number;
  /** 6-bit request sequence number that pairs a response with its request. */
  rqSeq: number;
  data: Buffer;
}

export function encodeIpmiRequest(r: IpmiRequest): Buffer {
  const head = Buffer.from([BMC_ADDR, (r.netFn & 0x3f) << 2]);
  const body = Buffer.concat([Buffer.from([CONSOLE_ADDR, (r.rqSeq & 0x3f) << 2, r.cmd & 0xff]), r.data]);
  return Buffer.concat([head, Buffer.from([checksum(head)]), body, Buffer.from([checksum(body)])]);
}

export interface IpmiResponse {
  /** The response netFn (request netFn + 1). */
  netFn: number;
  cmd: number;
  rqSeq: number;
  completionCode: number;
  data: Buffer;
}

export function decodeIpmiResponse(m: Buffer): IpmiResponse {
  if (m.length < 8) throw new PacketError(`IPMI response of ${m.length} bytes is shorter than 8`);
  if (checksum(m.subarray(0, 2)) !== m[2]) throw new PacketError('IPMI response header checksum mismatch');
  if (checksum(m.subarray(3, m.length - 1)) !== m[m.length - 1]) throw new PacketError('IPMI response data checksum mismatch');
  if (m[0] !== CONSOLE_ADDR || m[3] !== BMC_ADDR) throw new PacketError('IPMI response not addressed to us');
  return {
    netFn: (m[1] as number) >> 2, rqSeq: (m[4] as number) >> 2, cmd: m[5] as number, completionCode: m[6] as number,
    data: Buffer.from(m.subarray(7, m.length - 1)),
  };
}

/** A pre-session IPMI 1.5 packet (auth type none, session id 0): only Get Channel Auth Capabilities uses it. */
export function encodeV15Packet(message: Buffer): Buffer {
  if (message.length > 255) throw new RangeError('IPMI 1.5 message too long');
  return Buffer.concat([RMCP_HEADER, Buffer.from([AUTH_NONE, 0, 0, 0, 0, 0, 0, 0, 0, message.length]), message]);
}

/** Keys of an active session; absent before RAKP 4 (then packets are neither authenticated nor encrypted). */
export interface PacketKeys {
  suite: CipherSuite;
  k1: Buffer;
  aesKey: Buffer;
}

export interface V2Packet {
  payloadType: number;
  sessionId: number;
  sessionSeq: number;
  payload: Buffer;
}

export function encodeV2Packet(p: V2Packet, keys?: PacketKeys, iv?: Buffer): Buffer {
  const body = keys ? encryptPayload(keys.aesKey, p.payload, iv) : p.payload;
  if (body.length > 0xffff) throw new RangeError('RMCP+ payload too long');
  const head = Buffer.alloc(12);
  head[0] = AUTH_RMCP_PLUS;
  head[1] = (p.payloadType & 0x3f) | (keys ? 0xc0 : 0);
  head.writeUInt32LE(p.sessionId >>> 0, 2);
  head.writeUInt32LE(p.sessionSeq >>> 0, 6);
  head.writeUInt16LE(body.length, 10);
  if (!keys) return Buffer.concat([RMCP_HEADER, head, body]);
  // Integrity pad: AuthType .. Next Header (pad, pad length and next header included) is a multiple of 4 bytes.
  const padLen = (4 - ((head.length + body.length + 2) % 4)) % 4;
  const covered = Buffer.concat([head, body, Buffer.alloc(padLen, 0xff), Buffer.from([padLen, 0x07])]);
  return Buffer.concat([RMCP_HEADER, covered, integrityCode(keys.suite, keys.k1, covered)]);
}

export type DecodedPacket =
  | { version: '1.5'; sessionId: number; sessionSeq: number; payload: Buffer }
  | (V2Packet & { version: '2.0'; authenticated: boolean; encrypted: boolean });

/**
 * Decode one datagram. With `keys`, authenticated packets must carry a valid AuthCode and encrypted payloads are
 * decrypted; without them, a packet claiming to be authenticated or encrypted is rejected.
 */
export function decodePacket(buf: Buffer, keys?: PacketKeys): DecodedPacket {
  if (buf.length < 5) throw new PacketError(`datagram of ${buf.length} bytes`);
  if (buf[0] !== 0x06 || buf[3] !== 0x07) throw new PacketError('not an RMCP IPMI-class message');
  const auth = buf[4];
  if (auth === AUTH_NONE) {
    if (buf.length < 14) throw new PacketError('truncated IPMI 1.5 session header');
    const len = buf[13] as number;
    if (buf.length < 14 + len) throw new PacketError('truncated IPMI 1.5 payload');
    return { version: '1.5', sessionSeq: buf.readUInt32LE(5), sessionId: buf.readUInt32LE(9), payload: Buffer.from(buf.subarray(14, 14 + len)) };
  }
  if (auth !== AUTH_RMCP_PLUS) throw new PacketError(`unsupported session auth type ${auth}`);
  if (buf.length < 16) throw new PacketError('truncated RMCP+ session header');
  const typeByte = buf[5] as number;
  const payloadType = typeByte & 0x3f;
  const encrypted = (typeByte & 0x80) !== 0;
  const authenticated = (typeByte & 0x40) !== 0;
  if (payloadType === 0x02) throw new PacketError('OEM payloads are not supported');
  const sessionId = buf.readUInt32LE(6);
  const sessionSeq = buf.readUInt32LE(10);
  const len = buf.readUInt16LE(14);
  if (buf.length < 16 + len) throw new PacketError('truncated RMCP+ payload');
  let payload: Buffer = buf.subarray(16, 16 + len);
  if (authenticated) {
    if (!keys) throw new PacketError('authenticated packet outside a session');
    const icv = keys.suite.icvLength;
    const end = buf.length - icv;
    if (end < 16 + len + 2) throw new PacketError('truncated RMCP+ integrity trailer');
    const padLen = buf[end - 2] as number;
    if (buf[end - 1] !== 0x07 || end - 2 - padLen !== 16 + len) throw new PacketError('malformed RMCP+ integrity trailer');
    if (!sameBytes(integrityCode(keys.suite, keys.k1, buf.subarray(4, end)), buf.subarray(end))) {
      throw new PacketError('RMCP+ integrity check failed');
    }
  } else if (keys && (payloadType === PayloadType.IPMI)) {
    throw new PacketError('unauthenticated IPMI payload inside an integrity-protected session');
  }
  if (encrypted) {
    if (!keys) throw new PacketError('encrypted packet outside a session');
    try {
      payload = decryptPayload(keys.aesKey, payload);
    } catch (e) {
      throw new PacketError(`undecryptable payload: ${(e as Error).message}`);
    }
  } else if (keys && payloadType === PayloadType.IPMI) {
    throw new PacketError('unencrypted IPMI payload inside a confidential session');
  }
  return { version: '2.0', payloadType, sessionId, sessionSeq, payload: Buffer.from(payload), authenticated, encrypted };
}

// ---- RMCP+ session set-up messages (tables 13-9 .. 13-16) ----

export function encodeOpenSessionRequest(tag: number, consoleSessionId: number, suite: CipherSuite): Buffer {
  const b = Buffer.alloc(32);
  b[0] = tag;
  b[1] = 0; // maximum privilege: the highest the proposed algorithms allow; RAKP 1 asks for the real level
  b.writeUInt32LE(consoleSessionId >>> 0, 4);
  b.set([0x00, 0, 0, 0x08, suite.authAlg, 0, 0, 0], 8);
  b.set([0x01, 0, 0, 0x08, suite.integrityAlg, 0, 0, 0], 16);
  b.set([0x02, 0, 0, 0x08, suite.confidentialityAlg, 0, 0, 0], 24);
  return b;
}

export interface OpenSessionResponse {
  tag: number;
  status: number;
  consoleSessionId: number;
  bmcSessionId: number;
  authAlg: number;
  integrityAlg: number;
  confidentialityAlg: number;
}

export function decodeOpenSessionResponse(p: Buffer): OpenSessionResponse {
  if (p.length < 2) throw new PacketError('truncated Open Session Response');
  const tag = p[0] as number;
  const status = p[1] as number;
  if (status !== 0) return { tag, status, consoleSessionId: p.length >= 8 ? p.readUInt32LE(4) : 0, bmcSessionId: 0, authAlg: -1, integrityAlg: -1, confidentialityAlg: -1 };
  if (p.length < 36) throw new PacketError(`Open Session Response of ${p.length} bytes`);
  return {
    tag, status, consoleSessionId: p.readUInt32LE(4), bmcSessionId: p.readUInt32LE(8),
    authAlg: (p[16] as number) & 0x3f, integrityAlg: (p[24] as number) & 0x3f, confidentialityAlg: (p[32] as number) & 0x3f,
  };
}

export function encodeRakp1(tag: number, bmcSessionId: number, consoleRandom: Buffer, role: number, username: Buffer): Buffer {
  const b = Buffer.alloc(28);
  b[0] = tag;
  b.writeUInt32LE(bmcSessionId >>> 0, 4);
  consoleRandom.copy(b, 8);
  b[24] = role;
  b[27] = username.length;
  return Buffer.concat([b, username]);
}

export interface Rakp2 {
  tag: number;
  status: number;
  consoleSessionId: number;
  bmcRandom: Buffer;
  bmcGuid: Buffer;
  authCode: Buffer;
}

export function decodeRakp2(p: Buffer, authCodeLength: number): Rakp2 {
  if (p.length < 2) throw new PacketError('truncated RAKP 2');
  const tag = p[0] as number;
  const status = p[1] as number;
  const empty = Buffer.alloc(0);
  if (status !== 0) return { tag, status, consoleSessionId: p.length >= 8 ? p.readUInt32LE(4) : 0, bmcRandom: empty, bmcGuid: empty, authCode: empty };
  if (p.length < 40 + authCodeLength) throw new PacketError(`RAKP 2 of ${p.length} bytes`);
  return {
    tag, status, consoleSessionId: p.readUInt32LE(4), bmcRandom: Buffer.from(p.subarray(8, 24)),
    bmcGuid: Buffer.from(p.subarray(24, 40)), authCode: Buffer.from(p.subarray(40, 40 + authCodeLength)),
  };
}

export function encodeRakp3(tag: number, status: number, bmcSessionId: number, authCode: Buffer): Buffer {
  const b = Buffer.alloc(8);
  b[0] = tag;
  b[1] = status;
  b.writeUInt32LE(bmcSessionId >>> 0, 4);
  return Buffer.concat([b, authCode]);
}

export interface Rakp4 {
  tag: number;
  status: number;
  consoleSessionId: number;
  icv: Buffer;
}

export function decodeRakp4(p: Buffer, icvLength: number): Rakp4 {
  if (p.length < 2) throw new PacketError('truncated RAKP 4');
  const tag = p[0] as number;
  const status = p[1] as number;
  if (status !== 0) return { tag, status, consoleSessionId: p.length >= 8 ? p.readUInt32LE(4) : 0, icv: Buffer.alloc(0) };
  if (p.length < 8 + icvLength) throw new PacketError(`RAKP 4 of ${p.length} bytes`);
  return { tag, status, consoleSessionId: p.readUInt32LE(4), icv: Buffer.from(p.subarray(8, 8 + icvLength)) };
}

/** RMCP+ status codes (table 13-15), for error messages. */
export const RMCP_STATUS: Readonly<Record<number, string>> = {
  0x01: 'insufficient resources to create a session',
  0x02: 'invalid session id',
  0x03: 'invalid payload type',
  0x04: 'invalid authentication algorithm',
  0x05: 'invalid integrity algorithm',
  0x06: 'no matching authentication payload',
  0x07: 'no matching integrity payload',
  0x08: 'inactive session id',
  0x09: 'invalid role',
  0x0a: 'unauthorized role or privilege level requested',
  0x0b: 'insufficient resources to create a session at the requested role',
  0x0c: 'invalid name length',
  0x0d: 'unauthorized name',
  0x0e: 'unauthorized GUID',
  0x0f: 'invalid integrity check value',
  0x10: 'invalid confidentiality algorithm',
  0x11: 'no cipher suite match with proposed security algorithms',
  0x12: 'illegal or unrecognized parameter',
};

/** IPMI completion codes (table 5-2), for error messages. */
export const COMPLETION_CODES: Readonly<Record<number, string>> = {
  0xc0: 'node busy',
  0xc1: 'invalid command',
  0xc2: 'command invalid for given LUN',
  0xc3: 'timeout while processing command',
  0xc4: 'out of space',
  0xc5: 'reservation cancelled or invalid',
  0xc6: 'request data truncated',
  0xc7: 'request data length invalid',
  0xc8: 'request data field length limit exceeded',
  0xc9: 'parameter out of range',
  0xca: 'cannot return number of requested data bytes',
  0xcb: 'requested sensor, data, or record not present',
  0xcc: 'invalid data field in request',
  0xcd: 'command illegal for specified sensor or record type',
  0xce: 'command response could not be provided',
  0xcf: 'cannot execute duplicated request',
  0xd0: 'SDR repository in update mode',
  0xd1: 'device in firmware update mode',
  0xd2: 'BMC initialization in progress',
  0xd3: 'destination unavailable',
  0xd4: 'insufficient privilege level',
  0xd5: 'command not supported in present state',
  0xd6: 'command sub-function disabled or unavailable',
  0xff: 'unspecified error',
};
