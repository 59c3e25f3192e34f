/**
 * The conductor's V8 flags (conductor/node-flags.ts) are the ones `npm run conductor` passes, and this node accepts
 * them and sizes the young generation by them.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { run } from '../../common/exec.js';
import { CONDUCTOR_NODE_FLAGS } from '../../conductor/node-flags.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

test('npm run conductor runs node with the conductor\'s V8 flags, which this node accepts', async () => {
  const pkg = JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  assert.equal(pkg.scripts.conductor, `tsx ${CONDUCTOR_NODE_FLAGS.join(' ')} conductor/main.ts`);
  // A young generation kept busy stays within 2 x 2 MiB semi-spaces (V8's default lets it grow to 2 x 16 MiB).
  const probe = 'let k=[];for(let i=0;i<3e6;i++){k.push({i,s:"x"+i});if(k.length>3e5)k=[]}' +
    'console.log(require("v8").getHeapSpaceStatistics().find((s)=>s.space_name==="new_space").space_size)';
  const r = await run(process.execPath, [...CONDUCTOR_NODE_FLAGS, '-e', probe]);
  assert.ok(Number(r.stdout.trim()) <= 4 * 2 ** 20, `new space ${r.stdout.trim()} bytes`);
});
