import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run, CommandError } from '../../common/exec.js';

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
