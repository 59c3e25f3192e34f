/**
 * Serial console over IPMI Serial-over-LAN, end to end with one QEMU node: ipmi_sim's SoL is bound to the VM's
 * serial port (lab/serial-relay.ts). The `ipmitool-socat` console is read over TCP while the node boots; the
 * `ipmitool-web` console is opened in headless Chromium (puppeteer-core), shows the node's output and takes a
 * keystroke (screenshot kept as an artifact); unauthenticated requests are refused; the console closes on
 * disable, conductor stop and node delete, and comes back after a conductor restart.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { have } from '../../common/exec.js';
import { buildConsoleInitramfs, CONSOLE_NODE_BOOTED, consoleNodeQemuArgs } from '../../lab/console-node.js';
import { daemonizableQemuArgs, startIpmiSim, type IpmiSim } from '../../lab/ipmi-sim.js';
import { stripAnsi } from '../../lab/qemu.js';
import { haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';

const CHROMIUM = '/usr/bin/chromium';
const missing = [!(await have('socat')) && 'socat', !(await have('ipmi_sim')) && 'ipmi_sim (openipmi)',
  !(await have('qemu-system-x86_64')) && 'qemu-system-x86_64', !(await haveBaremetalCli()) && 'baremetal CLI']
  .filter(Boolean);
const skip = missing.length ? `missing: ${missing.join(', ')}` : false;
const noBrowser = existsSync(CHROMIUM) ? false : `${CHROMIUM} not installed`;

let fx: TestConductor;
let sim: IpmiSim;
let work: string;
/** Kept after the run: the screenshot is the test's artifact. */
let artifacts: string;

before(async () => {
  if (skip) return;
  work = await mkdtemp(join(tmpdir(), 'bmts-console-test-'));
  artifacts = process.env.BMTS_ARTIFACTS_DIR ?? join(tmpdir(), 'bmts-artifacts');
  await mkdir(artifacts, { recursive: true });
  const initrd = await buildConsoleInitramfs(join(work, 'initrd.gz'));
  sim = await startIpmiSim({ sol: true, qemu: { args: daemonizableQemuArgs(await consoleNodeQemuArgs(initrd, join(work, 'serial.log'))) } });
  // A narrow range high enough not to collide with the other tests' ephemeral ports.
  const base = 42000 + (process.pid % 500) * 10;
  fx = await startTestConductor({ config: { console: { port_range: `${base}:${base + 9}` },
    power: { ipmi_command_retry_timeout: 15, ipmi_min_command_interval: 0 } } });
});
after(async () => {
  await fx?.close();
  await sim?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

function fault(body: unknown): string {
  return JSON.parse((body as { error_message: string }).error_message).faultstring as string;
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

type ConsoleState = { console_enabled: boolean; console_info: { type: string; url: string } | null };

/** `baremetal node console show` (the CLI costs ~2 s a call here, so polls use the API). */
async function consoleShow(node: string): Promise<ConsoleState> {
  const r = await fx.cli(['node', 'console', 'show', node, '-f', 'json']);
  assert.equal(r.exitCode, 0, r.stderr);
  return JSON.parse(r.stdout);
}

async function consoleState(node: string): Promise<ConsoleState> {
  const r = await fx.api('GET', `/v1/nodes/${node}/states/console`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body as ConsoleState;
}

async function setConsole(node: string, on: boolean, cli = false): Promise<void> {
  if (cli) {
    const r = await fx.cli(['node', 'console', on ? 'enable' : 'disable', node]);
    assert.equal(r.exitCode, 0, r.stderr);
  } else {
    assert.equal((await fx.api('PUT', `/v1/nodes/${node}/states/console`, { enabled: on })).status, 202);
  }
  await until(`console ${on ? 'on' : 'off'}`, async () => (await consoleState(node)).console_enabled === on);
}

/** Reads from a TCP console until `re` matches the ANSI-stripped text. */
function reader(sock: Socket): { text(): string; wait(re: RegExp, ms: number): Promise<string> } {
  let buf = '';
  sock.on('data', (d: Buffer) => { buf += d.toString('latin1'); });
  return {
    text: () => stripAnsi(buf),
    wait: (re, ms) => until(`console output ${re}`, async () => (re.test(stripAnsi(buf)) ? stripAnsi(buf) : undefined), ms),
  };
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

test('ipmitool-socat: the node boots on the TCP console; disable closes it', { skip }, async () => {
  const create = await fx.api('POST', '/v1/nodes', { driver: 'ipmi', name: 'con-1', driver_info: sim.driverInfo(),
    boot_interface: 'fake', deploy_interface: 'fake', console_interface: 'ipmitool-socat' });
  assert.equal(create.status, 201, JSON.stringify(create.body));
  assert.deepEqual(await consoleShow('con-1'), { console_enabled: false, console_info: null });
  await setConsole('con-1', true, true);
  const info = (await consoleShow('con-1')).console_info;
  assert.equal(info?.type, 'socat');
  const m = /^tcp:\/\/127\.0\.0\.1:(\d+)$/.exec(info?.url ?? '');
  assert.ok(m, info?.url);
  const port = Number(m[1]);
  assert.equal(((await fx.api('GET', '/v1/nodes/con-1')).body as { console_enabled: boolean }).console_enabled, true);

  const t0 = Date.now();
  const sock = connect({ host: '127.0.0.1', port });
  const out = reader(sock);
  await out.wait(/SOL Session operational/, 20_000);
  const tSol = Date.now();
  assert.equal((await fx.api('PUT', '/v1/nodes/con-1/states/power', { target: 'power on' })).status, 202);
  const text = await out.wait(new RegExp(CONSOLE_NODE_BOOTED), 90_000);
  // Figures for the report, not assertions: SoL up, then power-on to the node's last boot line.
  process.stdout.write(`# socat console: SoL up in ${tSol - t0} ms, power on -> booted in ${Date.now() - tSol} ms\n`);
  assert.match(text, /console-node: boot line 3/);
  assert.match(text, /console-node: kernel \S+ up/);
  sock.destroy();

  await setConsole('con-1', false, true);
  assert.equal(await portOpen(port), false, 'the console port is closed after disable');
  assert.deepEqual(await consoleState('con-1'), { console_enabled: false, console_info: null });
});

test('ipmitool-web: xterm.js page in Chromium shows the console and takes a keystroke; no token, no console',
  { skip: skip || noBrowser }, async () => {
    await fx.api('PATCH', '/v1/nodes/con-1', [{ op: 'replace', path: '/console_interface', value: 'ipmitool-web' }]);
    await setConsole('con-1', true);
    const info = (await consoleState('con-1')).console_info;
    assert.equal(info?.type, 'web');
    const url = new URL(info?.url ?? '');
    const token = url.searchParams.get('token') ?? '';
    assert.ok(token.length >= 32);

    const bare = await fetch(`${url.origin}/`);
    assert.equal(bare.status, 403, 'no token: refused');
    const wrong = await fetch(`${url.origin}/?token=${'A'.repeat(32)}`);
    assert.equal(wrong.status, 403, 'a made-up token: refused');
    const unauthApi = await fx.fetch('/v1/nodes/con-1/states/console');
    assert.equal(unauthApi.status, 401, 'the console URL is only handed to authenticated API users');

    const { default: puppeteer } = await import('puppeteer-core');
    const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
    try {
      const page = await browser.newPage();
      await page.setViewport({ width: 900, height: 500 });
      await page.goto(url.href, { waitUntil: 'load' });
      // Page-side code as strings: this file is type-checked without the DOM library.
      await page.waitForFunction("document.getElementById('status').textContent.startsWith('connected')", { timeout: 20_000 });
      const screen = async (): Promise<string> => String(await page.evaluate(`(() => {
        const b = window.bmtsTerminal.buffer.active; const lines = [];
        for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
        return lines.join('\\n'); })()`));
      // SoL is up once the terminal shows ipmitool's banner; then a keystroke round trip through the node's shell.
      await until('SoL banner in the browser', async () => /SOL Session operational/.test(await screen()), 20_000);
      await page.keyboard.type('echo HELLO-$((6*7))');
      await page.keyboard.press('Enter');
      const text = await until('the node\'s answer in the browser', async () => {
        const s = await screen();
        return /HELLO-42/.test(s.replace(/echo HELLO-\$\(\(6\*7\)\)/g, '')) ? s : undefined;
      }, 30_000);
      assert.match(text, /console-node#/, 'the node\'s shell prompt is on the page');
      const shot = join(artifacts, `web-console-${process.pid}.png`);
      await page.screenshot({ path: shot });
      assert.ok((await stat(shot)).size > 1000, `screenshot written: ${shot}`);
      process.stdout.write(`# web console screenshot: ${shot}\n`);

      // The token was spent by the page: the same URL opens nothing now.
      const reused = await fetch(url.href);
      assert.equal(reused.status, 403);
    } finally {
      await browser.close();
    }
    // The WebSocket itself: without a ticket (or with a made-up one) the upgrade is answered 403.
    for (const q of ['', `?ticket=${'B'.repeat(32)}`]) {
      const status = await new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(`ws://${url.host}/ws${q}`);
        ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate(); });
        ws.on('open', () => { ws.close(); reject(new Error('WebSocket opened without a ticket')); });
        ws.on('error', () => undefined); // the unexpected-response above carries the verdict
      });
      assert.equal(status, 403);
    }
  });

test('console restored after a conductor restart, closed on conductor stop and on node delete', { skip }, async () => {
  const before = (await consoleState('con-1')).console_info;
  assert.ok(before, 'the console is still enabled from the previous test');
  const port = Number(new URL(before.url).port);
  assert.equal(await portOpen(port), true);
  await fx.restart?.();
  assert.equal(await portOpen(port), true, 'restored on the same port after the restart');
  const after = await consoleState('con-1');
  assert.equal(after.console_enabled, true);
  assert.equal(new URL(after.console_info?.url ?? '').port, String(port));

  // Power off first (the node can be deleted in enroll), then delete: the console goes with the node.
  assert.equal((await fx.api('PUT', '/v1/nodes/con-1/states/power', { target: 'power off' })).status, 202);
  await until('powered off', async () => ((await fx.api('GET', '/v1/nodes/con-1')).body as { reservation: string | null }).reservation === null);
  const del = await fx.api('DELETE', '/v1/nodes/con-1');
  assert.equal(del.status, 204, JSON.stringify(del.body));
  assert.equal(await portOpen(port), false, 'closed when the node is deleted');

  const n2 = await fx.api('POST', '/v1/nodes', { driver: 'ipmi', name: 'con-2', driver_info: sim.driverInfo(),
    boot_interface: 'fake', deploy_interface: 'fake', console_interface: 'ipmitool-socat' });
  assert.equal(n2.status, 201);
  await setConsole('con-2', true);
  const p2 = Number(new URL((await consoleState('con-2')).console_info?.url ?? '').port);
  assert.equal(await portOpen(p2), true);
  const ctx = fx.ctx;
  await fx.restart?.(); // stop + start: the port must be free during the stop for the restore to reuse it
  assert.ok(ctx !== fx.ctx);
  assert.equal(await portOpen(p2), true);

  const bad = await fx.api('PUT', '/v1/nodes/con-2/states/console', { enabled: 'yes' });
  assert.equal(bad.status, 400);
  const fake = await fx.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'con-fake' });
  assert.equal(fake.status, 201);
  const nc = await fx.api('PUT', '/v1/nodes/con-fake/states/console', { enabled: true });
  assert.equal(nc.status, 400);
  assert.match(fault(nc.body), /does not support console/);
});
