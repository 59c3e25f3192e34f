/**
 * The agent's tgt target (agent/iscsi/tgt.ts) against the conductor's QEMU initiator (conductor/iscsi/initiator.ts),
 * both real, on 127.0.0.1 with a sparse file as the LUN (no disk involved): CHAP enforced (a wrong secret and no
 * secret are refused with a clear text), bytes written and read back, the secret in no log line, tgtd gone after
 * stop (its temp dir too), and a taken portal port refused instead of silently running without a portal.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { startTgtTarget, tgtdRunning, type TgtTarget } from '../../agent/iscsi/tgt.js';
import { have, run, spawnLong } from '../../common/exec.js';
import { addLogFile, setLogLevel } from '../../common/logger.js';
import {
  chapUsername, fileDigest, IscsiIoError, newChapSecret, newIqn, readBackDigest, writeRawImage, type IscsiTarget,
} from '../../conductor/iscsi/initiator.js';
import { freePort } from '../fixtures/conductor.js';

const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const UUID = '1be26c0b-03f2-4d2e-ae87-c02d7f33c123';

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root for tgtd';
  for (const p of ['tgtd', 'tgtadm', 'qemu-img']) if (!(await have(p))) return `${p} missing (tgt, qemu-utils)`;
  return undefined;
}
const reason = await skipReason();

describe('iSCSI: tgt target and QEMU initiator on loopback', { skip: reason ?? false }, () => {
  let dir: string;
  let logFile: string;
  let lun: string;
  let image: string;
  let target: TgtTarget | undefined;
  let conn: IscsiTarget;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bmts-iscsi-t-'));
    logFile = join(dir, 'log.jsonl');
    setLogLevel('debug');
    addLogFile(logFile);
    lun = join(dir, 'lun.img');
    await writeFile(lun, '');
    await truncate(lun, 16 * 2 ** 20);
    image = join(dir, 'image.raw');
    await writeFile(image, randomBytes(3 * 2 ** 20 + 512 * 3 + 17)); // not a whole number of sectors
    const port = await freePort();
    conn = { host: '127.0.0.1', port, iqn: newIqn(UUID), lun: 1, username: chapUsername(UUID), password: newChapSecret() };
    target = await startTgtTarget({ iqn: conn.iqn, backingStore: lun, host: conn.host, port,
      chap: { username: conn.username, password: conn.password } });
  });

  after(async () => {
    await target?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a wrong CHAP secret is refused and writes nothing', async () => {
    await assert.rejects(writeRawImage({ ...conn, password: newChapSecret() }, image, 30_000),
      (e: unknown) => e instanceof IscsiIoError && /login to iscsi:\/\/bmts-1be26c0b@127\.0\.0\.1:\d+\/iqn\..* was refused \(CHAP authentication failed\)/.test(e.message));
    const head = (await readFile(lun)).subarray(0, 4096);
    assert.ok(head.every((b) => b === 0), 'the LUN is untouched');
  });

  test('the right secret writes the image and reading back gives its checksum', async () => {
    await writeRawImage(conn, image, 60_000);
    const size = (await readFile(image)).length;
    const want = await fileDigest(image, 'sha256');
    assert.equal(await fileDigest(lun, 'sha256', size), want, 'the LUN holds the image');
    assert.equal(await readBackDigest(conn, size, 'sha256', 60_000), want, 'read back over iSCSI');
  });

  test('the CHAP secret is in no log line; the exec lines are there', async () => {
    const log = await readFile(logFile, 'utf8');
    assert.match(log, /qemu-img convert -n --object secret,id=chap0,file=/);
    assert.match(log, /tgtadm .*--password \*\*\*/);
    assert.equal(log.includes(conn.password), false, 'the secret is not logged');
  });

  test('stop ends tgtd (by pid) and removes its temp dir; the portal is closed', async () => {
    const t = target!;
    assert.equal(tgtdRunning(t.pid), true);
    await t.stop();
    target = undefined;
    assert.equal(tgtdRunning(t.pid), false, 'tgtd is gone');
    await assert.rejects(writeRawImage(conn, image, 30_000), /could not reach the iSCSI target/);
    const leftovers = (await readFile(logFile, 'utf8')).match(/bmts-tgtd-[A-Za-z0-9]+/g) ?? [];
    for (const d of leftovers) assert.equal(existsSync(join(tmpdir(), d)), false, `${d} removed`);
  });

  test('an agent process ending on SIGTERM with a target running takes tgtd and its temp dir along', async () => {
    const port = await freePort();
    const script = `import { startTgtTarget } from ${JSON.stringify(join(REPO, 'agent/iscsi/tgt.ts'))};
const t = await startTgtTarget({ iqn: 'iqn.2008-10.org.openstack:exit-test', backingStore: ${JSON.stringify(lun)},
  host: '127.0.0.1', port: ${port} });
process.on('SIGTERM', () => process.exit(0));
console.log('PID ' + t.pid);
setInterval(() => undefined, 1000);`;
    const child = spawnLong(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO });
    child.catch(() => undefined); // the exit is checked below
    let out = '';
    const pid = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no tgtd pid from the child: ${out}`)), 20_000);
      child.stdout?.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /PID (\d+)/.exec(out);
        if (m) { clearTimeout(timer); resolve(Number(m[1])); }
      });
    });
    assert.equal(tgtdRunning(pid), true);
    const dirs = async (): Promise<string[]> => (await readdir(tmpdir())).filter((d) => d.startsWith('bmts-tgtd-'));
    assert.equal((await dirs()).length, 1);
    child.kill('SIGTERM');
    await child;
    for (let i = 0; i < 50 && tgtdRunning(pid); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(tgtdRunning(pid), false, 'tgtd was killed with its parent');
    assert.deepEqual(await dirs(), [], 'its temp dir is gone');
  });

  test('a taken portal port fails the start with a clear text and leaves no tgtd', async () => {
    const srv: Server = createServer();
    const port = await freePort();
    await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
    try {
      await assert.rejects(startTgtTarget({ iqn: newIqn(UUID), backingStore: lun, host: '127.0.0.1', port, startTimeoutMs: 2000 }),
        /tgtd did not listen on 127\.0\.0\.1:\d+ in time \(port taken\?\)/);
      const left = await run('pgrep', ['-f', `tgtd -f -C 0 --iscsi portal=127.0.0.1:${port}$`], { okCodes: [0, 1] });
      assert.equal(left.stdout.trim(), '', 'the failed tgtd was stopped');
    } finally {
      await new Promise((r) => srv.close(r));
    }
  });
});
