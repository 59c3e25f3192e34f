/**
 * Issue 13, "authentication on by default" and "TLS on the conductor API": the conductor as it starts with no
 * auth/TLS settings, over real HTTPS. Each test failed on the code before the change (noauth and plain HTTP by
 * default, no rate limit, the htpasswd file read once, no CA handed to the ramdisk).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcryptjs';
import { generate } from 'selfsigned';
import { ConductorClient } from '../../agent/conductor-client.js';
import { CA_PATH } from '../../conductor/drivers/ca-initrd.js';
import { IpxeBoot } from '../../conductor/drivers/ipxe.js';
import type { DriverNode } from '../../conductor/drivers/types.js';
import { freePort, startTestConductor } from '../fixtures/conductor.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const basic = (u: string, p: string): Record<string, string> =>
  ({ Authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });

/** An independent newc reader: 110-byte ASCII-hex headers, name and data each padded to 4 bytes. */
function readNewc(buf: Buffer): { name: string; mode: number; data: Buffer }[] {
  const out: { name: string; mode: number; data: Buffer }[] = [];
  let p = 0;
  while (p < buf.length) {
    assert.equal(buf.toString('latin1', p, p + 6), '070701', `newc magic at ${p}`);
    const field = (i: number): number => parseInt(buf.toString('latin1', p + 6 + i * 8, p + 14 + i * 8), 16);
    const [mode, size, nameSize] = [field(1), field(6), field(11)];
    const name = buf.toString('latin1', p + 110, p + 110 + nameSize - 1);
    p = (p + 110 + nameSize + 3) & ~3;
    out.push({ name, mode, data: buf.subarray(p, p + size) });
    p = (p + size + 3) & ~3;
    if (name === 'TRAILER!!!') break;
  }
  assert.equal(p, buf.length, 'nothing after the trailer; 4-byte aligned');
  return out;
}

function faultOf(body: unknown): { faultcode: string; faultstring: string } {
  return JSON.parse((body as { error_message: string }).error_message) as { faultcode: string; faultstring: string };
}

async function tempDir(t: { after(fn: () => Promise<void>): void }, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('a conductor with the default config refuses unauthenticated admin calls; agent routes stay public', async (t) => {
  const c = await startTestConductor();
  t.after(() => c.close());
  const none = { Authorization: '' };
  for (const [method, path, body] of [['GET', '/v1/nodes'], ['POST', '/v1/nodes', { driver: 'fake-hardware' }],
    ['GET', '/v1/drivers'], ['PATCH', '/v1/nodes/x', [{ op: 'add', path: '/extra/a', value: 1 }]],
    ['GET', '/nodes']] as const) {
    const r = await c.api(method, path, body, none);
    assert.equal(r.status, 401, `${method} ${path}`);
    assert.match(String(r.headers.get('www-authenticate')), /^Basic realm="[^"]+"$/);
    assert.equal(faultOf(r.body).faultcode, 'Client');
  }
  const created = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware' }, none);
  assert.equal(created.status, 401);
  assert.equal((await c.api('GET', '/v1/nodes')).status, 200, 'the generated admin credentials work');
  assert.deepEqual((await c.api('GET', '/v1/nodes')).body, { nodes: [] }, 'the refused create created nothing');
  assert.equal((await c.api('GET', '/', undefined, none)).status, 200);
  assert.equal((await c.api('GET', '/v1', undefined, none)).status, 200);
  assert.equal((await c.api('GET', '/v1/lookup?addresses=52:54:00:00:00:09', undefined, none)).status, 404);
  assert.equal((await c.api('POST', '/v1/heartbeat/nope', { callback_url: 'https://127.0.0.1:9999' }, none)).status, 404);
  // The generated password and its hash are for root only.
  for (const f of ['htpasswd', 'admin-credentials.json', 'openrc', 'tls/key.pem', 'tls/ca-key.pem']) {
    assert.equal((await stat(join(c.dataDir, f))).mode & 0o077, 0, `${f} is 0600`);
  }
  const openrc = await readFile(join(c.dataDir, 'openrc'), 'utf8');
  assert.match(openrc, /OS_AUTH_TYPE=http_basic/);
  assert.match(openrc, new RegExp(`OS_ENDPOINT='${c.url}'`));
});

test('noauth only when asked for (--auth noauth), then on 127.0.0.1 with a warning', async (t) => {
  const dir = await tempDir(t, 'bmts-noauth-');
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'conductor/main.ts'), '--auth', 'noauth',
    '--tls', 'off', '--port', String(port), '--data-dir', dir], { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'info' } });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  child.stderr.on('data', (b: Buffer) => { out += b.toString(); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  t.after(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  const deadline = Date.now() + 30_000;
  while (!/listening on /.test(out) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.match(out, new RegExp(`listening on http://127\\.0\\.0\\.1:${port} `), out);
  assert.match(out, /noauth: every API request is accepted unauthenticated/);
  const r = await fetch(`http://127.0.0.1:${port}/v1/nodes`);
  assert.equal(r.status, 200, 'noauth: no credentials needed');
  assert.equal(existsSync(join(dir, 'htpasswd')), false, 'no credentials generated for noauth');
});

test('wrong password and unknown user: the same 401, each after one bcrypt comparison', async (t) => {
  const c = await startTestConductor();
  t.after(() => c.close());
  assert.ok(c.auth);
  const orig = bcrypt.compare;
  let compares = 0;
  (bcrypt as { compare: typeof orig }).compare = ((s: string, h: string) => { compares++; return orig(s, h); }) as typeof orig;
  t.after(() => { (bcrypt as { compare: typeof orig }).compare = orig; });
  const wrong = await c.api('GET', '/v1/nodes', undefined, basic(c.auth.username, 'not-the-password'));
  const wrongCompares = compares;
  const unknown = await c.api('GET', '/v1/nodes', undefined, basic('nobody', 'not-the-password'));
  assert.equal(wrong.status, 401);
  assert.equal(unknown.status, 401);
  assert.deepEqual(unknown.body, wrong.body, 'no hint which part was wrong');
  assert.equal(wrongCompares, 1);
  assert.equal(compares - wrongCompares, 1, 'an unknown user costs a bcrypt comparison too');
});

test('repeated failures from one address are rate limited (429 + Retry-After), even for right credentials', async (t) => {
  const c = await startTestConductor({ config: { auth: { max_failures: 3, failure_window: 600 } } });
  t.after(() => c.close());
  assert.ok(c.auth);
  for (let i = 0; i < 3; i++) {
    assert.equal((await c.api('GET', '/v1/nodes', undefined, basic(c.auth.username, `guess-${i}`))).status, 401);
  }
  const limited = await c.api('GET', '/v1/nodes', undefined, basic(c.auth.username, 'guess-3'));
  assert.equal(limited.status, 429);
  const retry = Number(limited.headers.get('retry-after'));
  assert.ok(Number.isInteger(retry) && retry > 0 && retry <= 600, `Retry-After ${String(limited.headers.get('retry-after'))}`);
  assert.equal(faultOf(limited.body).faultcode, 'Client');
  assert.equal((await c.api('GET', '/v1/nodes')).status, 429, 'a right password does not lift the limit');
  assert.equal((await c.api('GET', '/v1/lookup?addresses=52:54:00:00:00:09')).status, 404, 'agent routes are not limited');
});

test('a changed htpasswd file is re-read without a restart', async (t) => {
  const dir = await tempDir(t, 'bmts-htpasswd-');
  const file = join(dir, 'htpasswd');
  await writeFile(file, `ops:${bcrypt.hashSync('first-pass', 4)}\n`);
  const c = await startTestConductor({ config: { auth: { strategy: 'http_basic', htpasswd_file: file } } });
  t.after(() => c.close());
  assert.equal((await c.api('GET', '/v1/nodes', undefined, basic('ops', 'first-pass'))).status, 200);
  await writeFile(file, `ops:${bcrypt.hashSync('second-pass', 4)}\nnew:${bcrypt.hashSync('new-pass', 4)}\n`);
  assert.equal((await c.api('GET', '/v1/nodes', undefined, basic('ops', 'first-pass'))).status, 401, 'old password gone');
  assert.equal((await c.api('GET', '/v1/nodes', undefined, basic('ops', 'second-pass'))).status, 200);
  assert.equal((await c.api('GET', '/v1/nodes', undefined, basic('new', 'new-pass'))).status, 200, 'added user');
});

test('TLS by default: HTTPS only, the agent verifies it with the handed CA, a certificate of another CA is refused',
  async (t) => {
    const c = await startTestConductor();
    t.after(() => c.close());
    assert.match(c.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.ok(c.caFile && c.ca);
    await assert.rejects(fetch(`http://127.0.0.1:${c.port}/v1`), 'nothing is served in clear');
    const mac = '52:54:00:5e:c0:01';
    const trusted = await new ConductorClient({ apiUrls: [c.url], cafile: c.caFile }).lookupOnce([mac], null, null);
    assert.equal(trusted.ok, false);
    assert.equal(!trusted.ok && trusted.status, 404, `verified TLS, then an HTTP answer: ${JSON.stringify(trusted)}`);
    const dir = await tempDir(t, 'bmts-otherca-');
    const other = await generate([{ name: 'commonName', value: 'someone else' }], { keyType: 'ec', algorithm: 'sha256',
      extensions: [{ name: 'basicConstraints', cA: true }, { name: 'keyUsage', keyCertSign: true }] });
    await writeFile(join(dir, 'other-ca.pem'), other.cert);
    const refused = await new ConductorClient({ apiUrls: [c.url], cafile: join(dir, 'other-ca.pem') }).lookupOnce([mac], null, null);
    assert.equal(!refused.ok && refused.status, 0, 'no HTTP exchange with an unverified server');
    assert.match(!refused.ok ? refused.reason : '', /certificate/i);
    assert.equal(c.ctx?.api?.caPem, c.ca, 'the deploy path hands the ramdisk this CA');
  });

test('the iPXE deploy script loads the CA as an extra initrd and names it with ipa-cafile', async (t) => {
  const dir = await tempDir(t, 'bmts-ipxe-ca-');
  await writeFile(join(dir, 'kernel'), 'k');
  await writeFile(join(dir, 'ramdisk'), 'r');
  const ipxe = new IpxeBoot({ httpRoot: join(dir, 'http'), httpUrl: 'http://10.0.2.100:8080', allowedFileDirs: [dir] });
  const node: DriverNode = { uuid: '0c6a3c38-6f55-4b0b-9d0c-2f1c7e1f0a01', driver: 'ipmi',
    driver_info: { deploy_kernel: join(dir, 'kernel'), deploy_ramdisk: join(dir, 'ramdisk') },
    instance_info: {}, driver_internal_info: {}, properties: {}, ports: [{ address: '52:54:00:5e:c0:02', pxe_enabled: true }] };
  const pem = '-----BEGIN CERTIFICATE-----\nTESTCA\n-----END CERTIFICATE-----\n';
  await ipxe.prepareRamdisk(node, { apiUrl: 'https://10.0.2.100:6385', kernelParams: [], apiCaPem: pem });
  const script = await readFile(join(dir, 'http', node.uuid, 'config'), 'utf8');
  const kernelLine = script.split('\n').find((l) => l.startsWith('kernel ')) ?? '';
  assert.ok(kernelLine.split(' ').includes(`ipa-cafile=${CA_PATH}`), kernelLine);
  assert.ok(kernelLine.split(' ').includes('ipa-api-url=https://10.0.2.100:6385'), kernelLine);
  assert.match(script, new RegExp(`^initrd --name api_ca http://10\\.0\\.2\\.100:8080/${node.uuid}/api-ca\\.cpio \\|\\| goto retry$`, 'm'));
  assert.ok(script.indexOf('initrd --name api_ca') > script.indexOf('initrd --name deploy_ramdisk'), 'unpacked after the ramdisk');
  // The archive is what the kernel unpacks (newc, init/initramfs.c): parent directories first, then the PEM.
  const entries = readNewc(await readFile(join(dir, 'http', node.uuid, 'api-ca.cpio')));
  assert.deepEqual(entries.map((e) => [e.name, e.mode.toString(8)]),
    [['etc', '40755'], ['etc/baremetal-ts', '40755'], [CA_PATH.slice(1), '100644'], ['TRAILER!!!', '0']]);
  assert.equal(entries[2]?.data.toString(), pem);
});
