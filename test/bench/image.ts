/**
 * `npm run bench -- image [--rounds 3] [--size-mib 2048] [--sparse-mib 8192]` (or positional `image 3 2048`): the
 * agent's image writer vs `set -o pipefail; curl -sSf URL | dd of=DEV bs=4M iflag=fullblock oflag=direct
 * conv=fsync` (support/baselines.ts), both from nginx on 127.0.0.1 to a file-backed loop device, interleaved in
 * one run (medians reported); a failed baseline ends the bench without a ratio. The agent side runs in a child
 * process so its peak RSS is its own; sha256 is verified inline. Also: a sparse raw image (RSS must not grow with
 * size) and the same content as qcow2. Ratios are baseline seconds / agent seconds (above 1: the agent is faster).
 * Last line: `image size_mib=… ratio_vs_dd=… rss_mib=… mib_s=… qcow2_ratio_vs_dd=… qcow2_rss_mib=…`.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, spawnLong } from '../../common/exec.js';
import { numArg, sizeMiBArg } from './support/args.js';
import { curlDd } from './support/baselines.js';

const MiB = 1024 * 1024;

interface ChildResult {
  seconds: number;
  rssMiB: number;
  layers: string[];
  bytes: number;
}

/** Child mode: write one image and print the figures as JSON. */
async function child(json: string): Promise<void> {
  const a = JSON.parse(json) as { url: string; sha256: string; dev: string; limit: number };
  const { setHardwareContext } = await import('../../hardware-managers/context.js');
  setHardwareContext({ deviceAllowlist: [a.dev] });
  (await import('../../image/settings.js')).setImageSettings({ hashInWorker: process.env.BMTS_IMAGE_HASH_WORKER === '1' });
  const { assertSafeToWrite } = await import('../../block/devices.js');
  await assertSafeToWrite(a.dev);
  const { streamImageToDevice } = await import('../../image/write.js');
  const t = process.hrtime.bigint();
  const r = await streamImageToDevice({
    info: { id: 'bench', urls: [a.url], os_hash_algo: 'sha256', os_hash_value: a.sha256 },
    device: a.dev,
    limit: a.limit,
  });
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  const out: ChildResult = { seconds, rssMiB: process.resourceUsage().maxRSS / 1024, layers: r.layers, bytes: r.downloadedBytes };
  process.stdout.write(`BENCH-RESULT ${JSON.stringify(out)}\n`);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 4 * MiB })) h.update(c as Buffer);
  return h.digest('hex');
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function agentRun(url: string, sum: string, dev: string, limit: number, workerHash = false): Promise<ChildResult> {
  const runTs = fileURLToPath(new URL('./run.ts', import.meta.url));
  const r = await run(process.execPath, ['--import', 'tsx', runTs, 'image', '--child', JSON.stringify({ url, sha256: sum, dev, limit })], {
    timeoutMs: 600_000,
    env: { LOG_LEVEL: 'warn', BMTS_IMAGE_HASH_WORKER: workerHash ? '1' : '0' },
    quiet: true,
  });
  const line = r.stdout.split('\n').find((l) => l.startsWith('BENCH-RESULT '));
  if (!line) throw new Error(`agent child printed no result: ${r.stderr.slice(-500)}`);
  return JSON.parse(line.slice('BENCH-RESULT '.length)) as ChildResult;
}

export default async function bench(args: string[]): Promise<void> {
  if (args[0] === '--child') return child(args[1]!);
  const rounds = numArg(args, '--rounds', 0, 3);
  const sizeMiB = sizeMiBArg(args, '--size-mib', 1, 2048);
  const sparseMiB = sizeMiBArg(args, '--sparse-mib', null, 8192);
  const dir = await fsp.mkdtemp(join(tmpdir(), 'bmts-bench-image-'));
  const www = join(dir, 'www');
  await fsp.mkdir(join(dir, 'logs'), { recursive: true });
  await fsp.mkdir(www);
  // nginx workers run as an unprivileged user: they must be able to read the served tree.
  await fsp.chmod(dir, 0o755);
  const loops: string[] = [];
  let nginx: ReturnType<typeof spawnLong> | null = null;
  try {
    console.log(`building a ${sizeMiB} MiB random raw image, its qcow2 and a ${sparseMiB} MiB sparse image...`);
    const raw = join(www, 'image.raw');
    await run('dd', ['if=/dev/urandom', `of=${raw}`, 'bs=4M', `count=${sizeMiB / 4}`, 'status=none'], { timeoutMs: 300_000 });
    const qcow = join(www, 'image.qcow2');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow], { timeoutMs: 300_000 });
    const sparse = join(www, 'sparse.raw');
    await fsp.writeFile(sparse, '');
    await fsp.truncate(sparse, sparseMiB * MiB);
    // Unique marker blocks at start and end so it is not entirely zeros.
    const fh = await fsp.open(sparse, 'r+');
    await fh.write(Buffer.alloc(MiB, 0x5a), 0, MiB, 0);
    await fh.write(Buffer.alloc(MiB, 0xa5), 0, MiB, (sparseMiB - 1) * MiB);
    await fh.close();
    const sums = { raw: await sha256(raw), qcow: await sha256(qcow), sparse: await sha256(sparse) };

    const port = await freePort();
    const conf = join(dir, 'nginx.conf');
    const tmpPaths = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((n) => `${n}_temp_path ${join(dir, 'logs', n)};`).join(' ');
    await fsp.writeFile(
      conf,
      `worker_processes 1; error_log ${join(dir, 'logs/error.log')}; pid ${join(dir, 'logs/nginx.pid')};
events { worker_connections 64; }
http { access_log off; sendfile on; tcp_nopush on; ${tmpPaths}
  server { listen 127.0.0.1:${port}; root ${www}; } }
`,
    );
    nginx = spawnLong('nginx', ['-c', conf, '-p', dir, '-g', 'daemon off;']);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const ok = await run('curl', ['-sfI', `http://127.0.0.1:${port}/image.raw`], { quiet: true, okCodes: [0, 7, 22] });
      if (ok.exitCode === 0) break;
      if (Date.now() > deadline) throw new Error('nginx did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    const url = (n: string): string => `http://127.0.0.1:${port}/${n}`;

    const attach = async (sizeMiBDisk: number, name: string): Promise<string> => {
      const f = join(dir, name);
      await fsp.writeFile(f, '');
      await fsp.truncate(f, sizeMiBDisk * MiB);
      const dev = (await run('losetup', ['--find', '--show', f])).stdout.trim();
      loops.push(dev);
      return dev;
    };
    const dev = await attach(sizeMiB + 64, 'disk.img');
    const limit = (sizeMiB + 64) * MiB;

    const dd: number[] = [];
    const agent: ChildResult[] = [];
    const q: ChildResult[] = [];
    const worker: ChildResult[] = [];
    for (let i = 0; i < rounds; i++) {
      dd.push(await curlDd(url('image.raw'), dev, sizeMiB * MiB));
      agent.push(await agentRun(url('image.raw'), sums.raw, dev, limit));
      worker.push(await agentRun(url('image.raw'), sums.raw, dev, limit, true));
      q.push(await agentRun(url('image.qcow2'), sums.qcow, dev, limit));
      const fmt = (s: number): string => `${s.toFixed(2)} s (${(sizeMiB / s).toFixed(0)} MiB/s)`;
      console.log(
        `round ${i + 1}: curl|dd ${fmt(dd[i]!)}  agent raw ${fmt(agent[i]!.seconds)} rss ${agent[i]!.rssMiB.toFixed(0)} MiB  (hash in a worker ${fmt(worker[i]!.seconds)}, rss ${worker[i]!.rssMiB.toFixed(0)} MiB)  agent qcow2 ${fmt(q[i]!.seconds)} rss ${q[i]!.rssMiB.toFixed(0)} MiB`,
      );
    }
    // The written device must hold the image: compare a hash of the first sizeMiB against the source.
    const check = await run('bash', ['-c', 'head -c "$1" "$2" | sha256sum', 'bench', String(sizeMiB * MiB), dev], { quiet: true, timeoutMs: 300_000 });
    if (!check.stdout.startsWith(sums.raw)) throw new Error('the device does not hold the raw image after the last (qcow2) write');
    console.log('device content after the last (qcow2) write matches the raw image');

    const sparseDev = await attach(sparseMiB + 64, 'sparse-disk.img');
    const sp = await agentRun(url('sparse.raw'), sums.sparse, sparseDev, (sparseMiB + 64) * MiB);
    const backing = await fsp.stat(join(dir, 'sparse-disk.img'));
    console.log(
      `${sparseMiB} MiB sparse raw: ${sp.seconds.toFixed(2)} s (${(sparseMiB / sp.seconds).toFixed(0)} MiB/s), rss ${sp.rssMiB.toFixed(0)} MiB, backing file allocated ${(backing.blocks * 512 / MiB).toFixed(0)} MiB`,
    );

    const ddMed = median(dd);
    const agMed = median(agent.map((a) => a.seconds));
    const qMed = median(q.map((a) => a.seconds));
    const rss = Math.max(...agent.map((a) => a.rssMiB), sp.rssMiB);
    const qRss = Math.max(...q.map((a) => a.rssMiB));
    console.log(
      `medians: curl|dd ${ddMed.toFixed(2)} s, agent raw ${agMed.toFixed(2)} s (hash in a worker: ${median(worker.map((a) => a.seconds)).toFixed(2)} s), agent qcow2 ${qMed.toFixed(2)} s`,
    );
    console.log(
      `image size_mib=${sizeMiB} ratio_vs_dd=${(ddMed / agMed).toFixed(2)} rss_mib=${rss.toFixed(0)} mib_s=${(sizeMiB / agMed).toFixed(0)} qcow2_ratio_vs_dd=${(ddMed / qMed).toFixed(2)} qcow2_rss_mib=${qRss.toFixed(0)}`,
    );
  } finally {
    nginx?.kill('SIGTERM');
    await nginx?.catch(() => undefined); // killed on purpose
    for (const d of loops) await run('losetup', ['-d', d], { quiet: true }).catch(() => undefined); // already detached is fine; the sweep reports real leaks
    await fsp.rm(dir, { recursive: true, force: true });
  }
}
