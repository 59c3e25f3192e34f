/**
 * The benches' baselines (test/bench/support/baselines.ts) must fail loudly: a ratio against a baseline that
 * wrote nothing (HTTP error), stopped early (cut transfer) or wrote fewer bytes than the image would flatter the
 * agent. Also the argument helper that picks bench sizes.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { numArg, sizeMiBArg } from '../bench/support/args.js';
import { createHash } from 'node:crypto';
import { BaselineFailed, curlDd, ipaStyleWriter } from '../bench/support/baselines.js';

const MiB = 1024 * 1024;
const payload = Buffer.alloc(4 * MiB);
for (let i = 0; i < payload.length; i += 4096) payload.writeUInt32LE(i, i);

describe('bench baselines: curl | dd', () => {
  let server: Server;
  let base = '';
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bmts-baseline-'));
    server = createServer((req, res) => {
      if (req.url === '/image') {
        res.writeHead(200, { 'content-length': payload.length });
        res.end(payload);
      } else if (req.url === '/cut') {
        // Announces the whole image, sends one MiB, then drops the connection.
        res.writeHead(200, { 'content-length': payload.length });
        res.write(payload.subarray(0, MiB), () => res.destroy());
      } else if (req.url === '/empty-error') {
        res.writeHead(500, { 'content-length': 0 });
        res.end();
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the whole image and returns its time', async () => {
    const out = join(dir, 'ok.img');
    await writeFile(out, '');
    const s = await curlDd(`${base}/image`, out, payload.length);
    assert.ok(s > 0);
    assert.ok((await readFile(out)).equals(payload));
  });

  it('fails on an HTTP error even when the error body is empty (dd alone would succeed)', async () => {
    const out = join(dir, 'err.img');
    await writeFile(out, '');
    await assert.rejects(curlDd(`${base}/empty-error`, out, payload.length), (e: unknown) =>
      e instanceof BaselineFailed && /curl \| dd/.test(e.message) && /no ratio printed/.test(e.message));
  });

  it('fails when the transfer is cut short (pipefail: curl fails, dd alone exits 0)', async () => {
    const out = join(dir, 'cut.img');
    await writeFile(out, '');
    await assert.rejects(curlDd(`${base}/cut`, out, payload.length), BaselineFailed);
  });

  it('fails when dd wrote another byte count than the image has', async () => {
    const out = join(dir, 'short.img');
    await writeFile(out, '');
    await assert.rejects(curlDd(`${base}/image`, out, 2 * payload.length), (e: unknown) =>
      e instanceof BaselineFailed && /expected 8388608/.test(e.message));
  });

  it('the IPA-style writer writes the image, checks its hash, and fails on a wrong hash or a cut transfer', async () => {
    const sum = createHash('sha256').update(payload).digest('hex');
    const out = join(dir, 'ipa.img');
    await writeFile(out, '');
    assert.ok((await ipaStyleWriter(`${base}/image`, out, payload.length, 'sha256', sum)) > 0);
    assert.ok((await readFile(out)).equals(payload));
    await assert.rejects(ipaStyleWriter(`${base}/image`, out, payload.length, 'sha256', '0'.repeat(64)), (e: unknown) =>
      e instanceof BaselineFailed && /IPA-style/.test(e.message));
    await assert.rejects(ipaStyleWriter(`${base}/cut`, out, payload.length, 'sha256', sum), BaselineFailed);
  });
});

describe('bench arguments', () => {
  it('reads a flag, else the positional value, else the default', () => {
    assert.equal(numArg(['--size-mib', '256'], '--size-mib', 1, 2048), 256);
    assert.equal(numArg(['3', '512'], '--size-mib', 1, 2048), 512);
    assert.equal(numArg(['--rounds', '2', '512'], '--size-mib', 0, 2048), 512);
    assert.equal(numArg([], '--size-mib', 1, 2048), 2048);
  });
  it('refuses sizes dd bs=4M cannot write whole, and non-positive numbers', () => {
    assert.throws(() => sizeMiBArg(['--size-mib', '250'], '--size-mib', null, 2048), /multiple of 4/);
    assert.throws(() => numArg(['--rounds', '0'], '--rounds', null, 3), /positive number/);
    assert.throws(() => numArg(['--rounds', 'x'], '--rounds', null, 3), /positive number/);
  });
});
