/** Image download over HTTPS (custom CA / insecure), redirects, timeouts and Range re-fetch — no disks involved. */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { downloadImage, fetchRange } from '../../image/download.js';
import { resetImageSettings, setImageSettings } from '../../image/settings.js';
import { generateSelfSigned } from '../../agent/tls.js';

const body = randomBytes(3 * 1024 * 1024 + 17);
let dir: string;
let tlsServer: https.Server;
let plain: http.Server;
let port: number;
let plainPort: number;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bmts-dl-'));
  const cert = await generateSelfSigned('127.0.0.1');
  await writeFile(join(dir, 'ca.pem'), cert.cert);
  tlsServer = https.createServer({ key: cert.key, cert: cert.cert }, (_req, res) => {
    res.writeHead(200, { 'content-length': String(body.length) });
    res.end(body);
  });
  await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
  port = (tlsServer.address() as AddressInfo).port;
  plain = http.createServer((req, res) => {
    if (req.url === '/redirect') {
      res.writeHead(302, { location: '/img', 'content-length': '0' });
      res.end();
    } else if (req.url === '/stall') {
      res.writeHead(200, { 'content-length': String(body.length) });
      res.write(body.subarray(0, 1000)); // then nothing
    } else {
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (m) {
        const s = Number(m[1]);
        const e = Number(m[2]);
        res.writeHead(206, { 'content-range': `bytes ${s}-${e}/${body.length}`, 'content-length': String(e - s + 1) });
        res.end(body.subarray(s, e + 1));
      } else {
        res.writeHead(200, { 'content-length': String(body.length) });
        res.end(body);
      }
    }
  });
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  plainPort = (plain.address() as AddressInfo).port;
  setImageSettings({ connectionRetries: 1, retryIntervalMs: 20, connectionTimeoutMs: 1500 });
});

after(async () => {
  resetImageSettings();
  tlsServer.closeAllConnections();
  plain.closeAllConnections();
  await new Promise((r) => tlsServer.close(r));
  await new Promise((r) => plain.close(r));
  await rm(dir, { recursive: true, force: true });
});

async function sha(url: string): Promise<string> {
  const h = createHash('sha256');
  await downloadImage({ imageId: 't', urls: [url] }, (c) => {
    h.update(c);
  });
  return h.digest('hex');
}

const want = createHash('sha256').update(body).digest('hex');

test('HTTPS with a custom CA file', async () => {
  setImageSettings({ cafile: join(dir, 'ca.pem'), insecure: false });
  assert.equal(await sha(`https://127.0.0.1:${port}/img`), want);
});

test('HTTPS with an unknown CA fails; insecure accepts it', async () => {
  setImageSettings({ cafile: null, insecure: false });
  await assert.rejects(sha(`https://127.0.0.1:${port}/img`), (e: { code?: string }) => e.code === 'ImageDownloadError');
  setImageSettings({ insecure: true });
  assert.equal(await sha(`https://127.0.0.1:${port}/img`), want);
  setImageSettings({ insecure: false });
});

test('redirects are followed', async () => {
  assert.equal(await sha(`http://127.0.0.1:${plainPort}/redirect`), want);
});

test('a stalled body times out (read timeout) and fails after the retries', async () => {
  await assert.rejects(sha(`http://127.0.0.1:${plainPort}/stall`), /Timed out reading next chunk/);
});

test('fetchRange returns exactly the asked bytes', async () => {
  const b = await fetchRange(`http://127.0.0.1:${plainPort}/img`, 1000, 70000, { imageId: 't' });
  assert.ok(b.equals(body.subarray(1000, 70000)));
});
