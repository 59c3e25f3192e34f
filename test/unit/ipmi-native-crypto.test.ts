/**
 * RMCP+ cryptography known answers. Debian's ipmi_sim refuses cipher suite 17 (RAKP-HMAC-SHA256,
 * HMAC-SHA256-128, AES-CBC-128), so suite 17 is proven here: for fixed RAKP inputs the SIK, K1, K2 and the
 * RAKP 2/3/4 auth codes are asserted byte for byte against values recorded with the openssl CLI, and, where
 * openssl is installed, recomputed independently through it (the inputs laid out here from the spec's field
 * lists, not by the code under test). Packet framing (integrity pad, AuthCode, AES payload with its table 13-20
 * pad) is checked the same way.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { have, run } from '../../common/exec.js';
import {
  CIPHER_SUITES, type CipherSuite, additionalKey, decryptPayload, deriveSessionKeys, encryptPayload, integrityCode,
  rakp2AuthCode, rakp3AuthCode, rakp4Icv, sessionIntegrityKey, type RakpInputs,
} from '../../conductor/ipmi-native/crypto.js';
import { decodePacket, encodeV2Packet, PacketError, PayloadType } from '../../conductor/ipmi-native/packet.js';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const PASSWORD = 'password';
const INPUTS: RakpInputs = {
  consoleSessionId: 0xa0a2a3a4, bmcSessionId: 0x02000300,
  consoleRandom: hex('000102030405060708090a0b0c0d0e0f'), bmcRandom: hex('101112131415161718191a1b1c1d1e1f'),
  bmcGuid: hex('a0a1a2a3a4a5a6a7a8a9aaabacadaeaf'), role: 0x14, username: Buffer.from('admin'),
};
/** The same inputs as they appear on the wire: session ids little-endian, ROLEm, ULENGTHm, UNAMEm. */
const W = {
  sidm: 'a4a3a2a0', sidc: '00030002', rm: '000102030405060708090a0b0c0d0e0f', rc: '101112131415161718191a1b1c1d1e1f',
  guid: 'a0a1a2a3a4a5a6a7a8a9aaabacadaeaf', roleUser: '1405' + Buffer.from('admin').toString('hex'),
};

/** Recorded with `openssl dgst -<hash> -mac HMAC -macopt hexkey:...` over the wire layouts above. */
const KNOWN = {
  3: {
    rakp2: '55780cb2f6aacb56d9fafaeb05d44511a2d41054', rakp3: '4ab420258775814f120682c8ab9275c29997effd',
    sik: '122c77c4b11ccd93251cbae6c34a9cb6310da154', k1: 'e4472be78f9a81fa68297aab696a7be8c97fc9f8',
    k2: '2b6552012a2517cb3b5713901d757a6efc7d8301', rakp4: 'ef0edbf82a9b326de3dd5c731bacaa117785c4a5',
  },
  17: {
    rakp2: 'f910b672ffa5fca1d89a194e0d151b6a7a5c33d0c15df13fd06a786ec91e8c09',
    rakp3: '72a845290e0504673b2177d93a8dd844954778f3fe6b0476b2e7055a21663586',
    sik: 'e5935f7199865ad961063477b0662684e2ce9b1da8f2b8d41c5ce127d37e9bcf',
    k1: 'dc4fe73d075306f6897115dd63257385e845c10404fa1d73991790c6a101bec2',
    k2: '2a4f969ea6dfa83066f36674fdc2fea289fa1a21da90303e9b5269b54ec5adb5',
    rakp4: 'f0cea69856538f633a89fea8b7b9fa1879f4e188e59e19d62d3c234dab4c5786',
  },
} as const;

const noOpenssl = (await have('openssl')) ? false : 'openssl CLI not installed';

async function opensslHmac(hash: string, keyHex: string, dataHex: string): Promise<string> {
  const r = await run('openssl', ['dgst', `-${hash}`, '-mac', 'HMAC', '-macopt', `hexkey:${keyHex}`],
    { input: hex(dataHex), quiet: true });
  return r.stdout.trim().split(/\s+/).pop() ?? ''; // "HMAC-SHA256(stdin)= <hex>"
}

for (const id of [3, 17] as const) {
  const suite: CipherSuite = CIPHER_SUITES[id];
  const k = KNOWN[id];
  const kuid = Buffer.from(PASSWORD);

  test(`cipher suite ${id}: RAKP 2/3 auth codes, SIK, K1, K2 and RAKP 4 ICV match the recorded values`, () => {
    assert.equal(rakp2AuthCode(suite, kuid, INPUTS).toString('hex'), k.rakp2);
    assert.equal(rakp3AuthCode(suite, kuid, INPUTS).toString('hex'), k.rakp3);
    const sik = sessionIntegrityKey(suite, kuid, INPUTS);
    assert.equal(sik.toString('hex'), k.sik);
    assert.equal(additionalKey(suite, sik, 1).toString('hex'), k.k1);
    assert.equal(additionalKey(suite, sik, 2).toString('hex'), k.k2);
    // RAKP 4 carries HMAC-SHA1-96 (12 bytes) for suite 3 and HMAC-SHA256-128 (16 bytes) for suite 17.
    assert.equal(rakp4Icv(suite, sik, INPUTS).toString('hex'), k.rakp4.slice(0, suite.icvLength * 2));
    const keys = deriveSessionKeys(suite, kuid, INPUTS);
    assert.equal(keys.aesKey.toString('hex'), k.k2.slice(0, 32));
    // The password zero-padded to 20 bytes (the spec's Kuid buffer) is the same HMAC key.
    assert.equal(rakp2AuthCode(suite, Buffer.concat([kuid, Buffer.alloc(12)]), INPUTS).toString('hex'), k.rakp2);
  });

  test(`cipher suite ${id}: the recorded values recomputed independently with openssl`, { skip: noOpenssl }, async () => {
    const pw = kuid.toString('hex');
    assert.equal(await opensslHmac(suite.hash, pw, W.sidm + W.sidc + W.rm + W.rc + W.guid + W.roleUser), k.rakp2);
    assert.equal(await opensslHmac(suite.hash, pw, W.rc + W.sidm + W.roleUser), k.rakp3);
    assert.equal(await opensslHmac(suite.hash, pw, W.rm + W.rc + W.roleUser), k.sik);
    assert.equal(await opensslHmac(suite.hash, k.sik, '01'.repeat(20)), k.k1);
    assert.equal(await opensslHmac(suite.hash, k.sik, '02'.repeat(20)), k.k2);
    assert.equal(await opensslHmac(suite.hash, k.sik, W.rm + W.sidc + W.guid), k.rakp4);
  });

  test(`cipher suite ${id}: an encrypted, authenticated packet is byte-exact against openssl AES and HMAC`, { skip: noOpenssl }, async () => {
    const keys = { suite, k1: hex(k.k1), aesKey: hex(k.k2.slice(0, 32)) };
    const iv = hex('00112233445566778899aabbccddeeff');
    // Get Chassis Status request message: rsAddr 20h, netFn 00h, chk, rqAddr 81h, rqSeq 1, cmd 01h, chk
    const msg = hex('2000e08104017a');
    const pkt = encodeV2Packet({ payloadType: PayloadType.IPMI, sessionId: 0x02000300, sessionSeq: 7, payload: msg }, keys, iv);
    // Independent layout: 7-byte msg + pad 01..08 + pad length 08 = 16 bytes, AES-128-CBC without openssl's padding.
    const plain = `${msg.toString('hex')}0102030405060708` + '08';
    const enc = await run('openssl', ['enc', '-aes-128-cbc', '-nopad', '-a', '-A', '-K', k.k2.slice(0, 32), '-iv', iv.toString('hex')],
      { input: hex(plain), quiet: true });
    const cipherHex = iv.toString('hex') + Buffer.from(enc.stdout.trim(), 'base64').toString('hex');
    // AuthType 06, payload type C0h, session id LE, seq LE, length 0020 LE, payload; 12+32 = 44 -> pad 2 (44+2+2=48)
    const covered = '06c0' + '00030002' + '07000000' + '2000' + cipherHex + 'ffff' + '02' + '07';
    const code = (await opensslHmac(suite.hash, k.k1, covered)).slice(0, suite.icvLength * 2);
    assert.equal(pkt.toString('hex'), `0600ff07${covered}${code}`);
    const back = decodePacket(pkt, keys);
    assert.equal(back.payload.toString('hex'), msg.toString('hex'));
  });
}

test('integrity: one flipped bit anywhere in a packet is rejected, never thrown as anything but PacketError', () => {
  const suite = CIPHER_SUITES[17];
  const keys = { suite, k1: hex(KNOWN[17].k1), aesKey: hex(KNOWN[17].k2.slice(0, 32)) };
  const pkt = encodeV2Packet({ payloadType: PayloadType.IPMI, sessionId: 5, sessionSeq: 9, payload: Buffer.from('hello ipmi') }, keys);
  for (let i = 4; i < pkt.length; i++) {
    const bad = Buffer.from(pkt);
    bad[i] = (bad[i] as number) ^ 0x01;
    assert.throws(() => decodePacket(bad, keys), PacketError, `byte ${i}`);
  }
  // and every truncation
  for (let n = 0; n < pkt.length; n++) assert.throws(() => decodePacket(pkt.subarray(0, n), keys), PacketError, `length ${n}`);
  assert.equal(integrityCode(suite, keys.k1, Buffer.from('x')).length, 16);
});

test('AES-CBC-128 payloads: the table 13-20 pad for every length, round trip, and bad pads rejected', () => {
  const key = hex(KNOWN[3].k2.slice(0, 32));
  for (let n = 0; n < 40; n++) {
    const p = Buffer.alloc(n, 0x5a);
    const c = encryptPayload(key, p);
    assert.equal(c.length % 16, 0);
    assert.equal(c.length, 16 + Math.ceil((n + 1) / 16) * 16);
    assert.deepEqual(decryptPayload(key, c), p);
  }
  assert.throws(() => decryptPayload(key, Buffer.alloc(31)), RangeError);
  assert.throws(() => decryptPayload(key, Buffer.alloc(48)), RangeError); // zero plaintext decrypts to a bad pad
});
