/**
 * `npm run bench -- image [--rounds 3] [--size-mib 2048] [--sparse-mib 8192]` (or positional `image 3 2048`): the
 * agent's image writer vs `set -o pipefail; curl -sSf URL | dd of=DEV bs=4M iflag=fullblock oflag=direct
 * conv=fsync` (support/baselines.ts), both from nginx on 127.0.0.1 to a file-backed loop device, interleaved in
 * one run (medians reported); a failed baseline ends the bench without a ratio. The agent side runs in a child
 * process so its peak RSS is its own; sha256 is verified inline. Also: a sparse raw image (RSS must not grow with
 * size) and the same content as qcow2. Ratios are baseline seconds / agent seconds (above 1: the agent is faster).
 * Also the IPA-style Python writer (support/ipa_style_writer.py), sha512, and zstd- and gzip-compressed copies. Last line:
 * `image ratio_vs_dd=… ratio_vs_ipa=… rss_mib=… qcow2_ratio_vs_dd=… zstd_ratio_vs_dd=… sha512_ratio_vs_dd=… gzip_ratio_vs_dd=… mib_s=… size_mib=…`.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createGzip } from 'node:zlib';
import { run, spawnLong } from '../../common/exec.js';
import { numArg, sizeMiBArg } from './support/args.js';
import { curlDd, ipaStyleWriter } from './support/baselines.js';

const MiB = 1024 * 1024;

interface ChildResult {
  seconds: number;
  rssMiB: number;
  layers: string[];
  bytes: number;
}

/**
 * The agent side as the ramdisk runs it: one esbuild bundle run by plain node (support/image-child.ts). Built
 * once per bench run into the bench's temp dir.
 */
async function bundleChild(dir: string): Promise<string> {
  const esbuild = (await import('esbuild')).default;
  const out = join(dir, 'image-child.cjs');
  await esbuild.build({
    entryPoints: [fileURLToPath(new URL('./support/image-child.ts', import.meta.url))],
    bundle: true, platform: 'node', target: 'node20', format: 'cjs', minify: true, logLevel: 'warning', outfile: out,
  });
  return out;
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
  return digest(path, 'sha256');
}

async function digest(path: string, algo: 'sha256' | 'sha512'): Promise<string> {
  const h = createHash(algo);
  for await (const c of createReadStream(path, { highWaterMark: 4 * MiB })) h.update(c as Buffer);
  return h.digest('hex');
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

let childBundle = '';

async function agentRun(url: string, sum: string, dev: string, limit: number, workerHash = false,
  algo: 'sha256' | 'sha512' = 'sha256'): Promise<ChildResult> {
  const r = await run(process.execPath, [childBundle, JSON.stringify({ url, sha256: sum, dev, limit, algo })], {
    timeoutMs: 600_000,
    env: { LOG_LEVEL: 'warn', ...(workerHash ? { BMTS_IMAGE_HASH_WORKER: '1' } : {}) },
    quiet: true,
  });
  const line = r.stdout.split('\n').find((l) => l.startsWith('BENCH-RESULT '));
  if (!line) throw new Error(`agent child printed no result: ${r.stderr.slice(-500)}`);
  return JSON.parse(line.slice('BENCH-RESULT '.length)) as ChildResult;
}

export default async function bench(args: string[]): Promise<void> {
  const rounds = numArg(args, '--rounds', 0, 3);
  const sizeMiB = sizeMiBArg(args, '--size-mib', 1, 2048);
  const sparseMiB = sizeMiBArg(args, '--sparse-mib', null, 8192);
  const dir = await fsp.mkdtemp(join(tmpdir(), 'bmts-bench-image-'));
  const www = join(dir, 'www');
  await fsp.mkdir(join(dir, 'logs'), { recursive: true });
  await fsp.mkdir(www);
  childBundle = await bundleChild(dir);
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
    const zst = join(www, 'image.raw.zst');
    await run('zstd', ['-q', '-3', '-T0', '-f', raw, '-o', zst], { timeoutMs: 300_000 });
    // gzip level 0 (stored blocks): on random data level 1-9 store it too, so the decoder's work is the same, and it
    // takes seconds where deflate's search would take a minute.
    const gz = join(www, 'image.raw.gz');
    await pipeline(createReadStream(raw, { highWaterMark: 4 * MiB }), createGzip({ level: 0 }), createWriteStream(gz));
    const sums = { raw: await sha256(raw), qcow: await sha256(qcow), sparse: await sha256(sparse), zst: await sha256(zst),
      gz: await sha256(gz), raw512: await digest(raw, 'sha512') };

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
    const ipa: number[] = [];
    const z: ChildResult[] = [];
    const g: ChildResult[] = [];
    const s512: ChildResult[] = [];
    for (let i = 0; i < rounds; i++) {
      // Interleaved, so load changes hit every contender alike.
      dd.push(await curlDd(url('image.raw'), dev, sizeMiB * MiB));
      agent.push(await agentRun(url('image.raw'), sums.raw, dev, limit));
      ipa.push(await ipaStyleWriter(url('image.raw'), dev, sizeMiB * MiB, 'sha256', sums.raw));
      s512.push(await agentRun(url('image.raw'), sums.raw512, dev, limit, false, 'sha512'));
      worker.push(await agentRun(url('image.raw'), sums.raw, dev, limit, true));
      q.push(await agentRun(url('image.qcow2'), sums.qcow, dev, limit));
      z.push(await agentRun(url('image.raw.zst'), sums.zst, dev, limit));
      g.push(await agentRun(url('image.raw.gz'), sums.gz, dev, limit));
      const fmt = (s: number): string => `${s.toFixed(2)} s (${(sizeMiB / s).toFixed(0)} MiB/s)`;
      const ag = (r: ChildResult): string => `${fmt(r.seconds)} rss ${r.rssMiB.toFixed(0)} MiB`;
      console.log(
        `round ${i + 1}: curl|dd ${fmt(dd[i]!)}  IPA-style ${fmt(ipa[i]!)}  agent raw sha256 ${ag(agent[i]!)}  sha512 ${ag(s512[i]!)}  (hash in a worker ${ag(worker[i]!)})  qcow2 ${ag(q[i]!)}  zstd ${ag(z[i]!)}  gzip ${ag(g[i]!)}`,
      );
    }
    // The written device must hold the image: compare a hash of the first sizeMiB against the source.
    const check = await run('bash', ['-c', 'head -c "$1" "$2" | sha256sum', 'bench', String(sizeMiB * MiB), dev], { quiet: true, timeoutMs: 300_000 });
    if (!check.stdout.startsWith(sums.raw)) throw new Error('the device does not hold the raw image after the last (gzip) write');
    console.log('device content after the last (gzip) write matches the raw image');

    const sparseDev = await attach(sparseMiB + 64, 'sparse-disk.img');
    const sp = await agentRun(url('sparse.raw'), sums.sparse, sparseDev, (sparseMiB + 64) * MiB);
    const backing = await fsp.stat(join(dir, 'sparse-disk.img'));
    console.log(
      `${sparseMiB} MiB sparse raw: ${sp.seconds.toFixed(2)} s (${(sparseMiB / sp.seconds).toFixed(0)} MiB/s), rss ${sp.rssMiB.toFixed(0)} MiB, backing file allocated ${(backing.blocks * 512 / MiB).toFixed(0)} MiB`,
    );

    const ddMed = median(dd);
    const ipaMed = median(ipa);
    const agMed = median(agent.map((a) => a.seconds));
    const qMed = median(q.map((a) => a.seconds));
    const zMed = median(z.map((a) => a.seconds));
    const gMed = median(g.map((a) => a.seconds));
    const s512Med = median(s512.map((a) => a.seconds));
    // Peak RSS over every agent run of every format, the sparse one included (the "all formats").
    const rss = Math.max(...[...agent, ...q, ...z, ...g, ...s512].map((a) => a.rssMiB), sp.rssMiB);
    const spread = (xs: number[]): string => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)} s`;
    console.log(
      `medians: curl|dd ${ddMed.toFixed(2)} s (${spread(dd)}), IPA-style ${ipaMed.toFixed(2)} s, agent raw sha256 ${agMed.toFixed(2)} s (${spread(agent.map((a) => a.seconds))}), sha512 ${s512Med.toFixed(2)} s, hash in a worker ${median(worker.map((a) => a.seconds)).toFixed(2)} s, qcow2 ${qMed.toFixed(2)} s, zstd ${zMed.toFixed(2)} s (${spread(z.map((a) => a.seconds))}), gzip ${gMed.toFixed(2)} s`,
    );
    console.log(
      `image ratio_vs_dd=${(ddMed / agMed).toFixed(2)} ratio_vs_ipa=${(ipaMed / agMed).toFixed(2)} rss_mib=${rss.toFixed(0)} qcow2_ratio_vs_dd=${(ddMed / qMed).toFixed(2)} zstd_ratio_vs_dd=${(ddMed / zMed).toFixed(2)} sha512_ratio_vs_dd=${(ddMed / s512Med).toFixed(2)} gzip_ratio_vs_dd=${(ddMed / gMed).toFixed(2)} mib_s=${(sizeMiB / agMed).toFixed(0)} size_mib=${sizeMiB}`,
    );
  } finally {
    nginx?.kill('SIGTERM');
    await nginx?.catch(() => undefined); // killed on purpose
    for (const d of loops) await run('losetup', ['-d', d], { quiet: true }).catch(() => undefined); // already detached is fine; the sweep reports real leaks
    await fsp.rm(dir, { recursive: true, force: true });
  }
}
