/**
 * The conductor's agent client retries connection failures with a pause between attempts
 * ([agent]max_command_attempts, command_retry_interval), so an agent API that is briefly unreachable does not
 * fail a step; with one attempt the same outage is an AgentConnectionFailed.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { AgentClient } from '../../conductor/agent-client.js';
import { AgentConnectionFailed } from '../../conductor/errors.js';
import { startLateGate, type LateGate } from '../fixtures/late-gate.js';

describe('agent client: connection failures are retried with a pause', () => {
  let agent: http.Server;
  let gate: LateGate;
  let posts = 0;

  before(async () => {
    agent = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        if (req.method === 'POST') {
          posts++;
          res.end(JSON.stringify({ id: 'c1', command_name: 'get_clean_steps', command_status: 'SUCCEEDED',
            command_error: null, command_result: { clean_steps: {} } }));
        } else {
          res.end(JSON.stringify({ commands: [] }));
        }
      });
    });
    await new Promise<void>((r) => agent.listen(0, '127.0.0.1', r));
    gate = await startLateGate((agent.address() as AddressInfo).port, 300);
  });
  after(async () => {
    await gate.close();
    await new Promise<void>((r) => agent.close(() => r()));
  });

  test('three attempts 500 ms apart outlast a 300 ms outage', async () => {
    gate.rearm();
    const client = new AgentClient({ maxAttempts: 3, retryIntervalMs: 500 });
    const r = await client.command({ url: `http://127.0.0.1:${gate.port}` }, 'clean.get_clean_steps', {}, { wait: true });
    assert.equal(r.command_status, 'SUCCEEDED');
    assert.ok(gate.dropped() >= 1, 'the first attempt met the outage');
    assert.equal(posts, 1, 'the command reached the agent exactly once');
  });

  test('one attempt fails the same outage with AgentConnectionFailed naming the attempts', async () => {
    gate.rearm();
    const client = new AgentClient({ maxAttempts: 1, retryIntervalMs: 500 });
    await assert.rejects(
      client.command({ url: `http://127.0.0.1:${gate.port}` }, 'clean.get_clean_steps', {}, { wait: true }),
      (e: unknown) => e instanceof AgentConnectionFailed && /after 1 attempts/.test(e.message),
    );
  });

  test('an agent that never comes back costs exactly max_command_attempts connections', async () => {
    gate.rearm(Number.POSITIVE_INFINITY);
    const client = new AgentClient({ maxAttempts: 3, retryIntervalMs: 50 });
    await assert.rejects(client.listCommands({ url: `http://127.0.0.1:${gate.port}` }), AgentConnectionFailed);
    assert.equal(gate.dropped(), 3);
  });
});
