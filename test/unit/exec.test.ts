import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, CommandError, have } from '../../common/exec.js';

test('run returns stdout of a successful command', async () => {
  const r = await run('echo', ['hello', 'world']);
  assert.equal(r.stdout.trim(), 'hello world');
  assert.equal(r.exitCode, 0);
});

test('run puts exit code and stderr into the CommandError', async () => {
  await assert.rejects(run('sh', ['-c', 'echo boom >&2; exit 3']), (e: unknown) => {
    assert.ok(e instanceof CommandError);
    assert.equal(e.exitCode, 3);
    assert.match(e.message, /boom/);
    return true;
  });
});

test('run feeds stdin and honours a timeout', async () => {
  const r = await run('cat', [], { input: 'piped' });
  assert.equal(r.stdout, 'piped');
  await assert.rejects(run('sleep', ['5'], { timeoutMs: 100 }), /timed out/);
});

test('run reports a program that does not exist', async () => {
  await assert.rejects(run('/nonexistent/prog', []), CommandError);
});

test('have finds executables on PATH as `command -v` does, not plain files or directories', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-have-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'bmts-tool'), '#!/bin/sh\n');
  await chmod(join(dir, 'bmts-tool'), 0o755);
  await writeFile(join(dir, 'bmts-data'), 'not a program');
  await mkdir(join(dir, 'bmts-dir'));
  const oldPath = process.env.PATH;
  t.after(() => { process.env.PATH = oldPath; });
  process.env.PATH = `/bmts-no-such-dir:${dir}`;
  assert.equal(await have('bmts-tool'), true);
  assert.equal(await have('bmts-data'), false);
  assert.equal(await have('bmts-dir'), false);
  assert.equal(await have('bmts-missing'), false);
  assert.equal(await have(''), false);
  process.env.PATH = oldPath;
  assert.equal(await have('sh'), true);
  assert.equal(await have(join(dir, 'bmts-tool')), true);
  assert.equal(await have(join(dir, 'bmts-data')), false);
});
