/** The deploy bench's timeline and phase split (test/bench/support/deploy-timeline.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deployTimeline, formatPhases, parseAgentLog } from '../bench/support/deploy-timeline.js';

const T0 = 1_800_000_000_000;
const line = (dt: number, msg: string, extra: Record<string, unknown> = {}): string => JSON.stringify({ time: T0 + dt, msg, ...extra });

const LOG = [
  line(-5000, 'executing step', { step: 'erase_devices_metadata' }), // cleaning, before the deploy: not shown
  line(-4000, 'heartbeat sent', { forced: false }),
  line(10, 'command requested', { command: 'deploy.get_deploy_steps' }),
  line(20, 'executing step', { step: 'write_image' }),
  line(90, 'writer open'),
  line(100, 'image format detected'),
  line(2100, 'download complete'),
  line(2300, 'image written and verified', { zeroSkipped: 32 * 2 ** 20 }),
  line(2400, 'prepare_image done', { phasesMs: { 'root device': 50, 'download+write+verify': 2250, 'gpt backup': 20, 're-read table': 40 } }),
  line(2410, 'async command succeeded', { command: 'deploy.execute_deploy_step' }),
  line(2415, 'heartbeat sent', { forced: true }),
  '{"time": 1800000002420, "msg": "cut sh', // the agent's exit cut this line
  line(2440, 'command requested', { command: 'standby.get_partition_uuids' }),
  line(2450, 'command requested', { command: 'standby.power_off' }),
].join('\n');

test('deploy timeline: API states and agent events on one axis, events before the call left out', () => {
  const t = deployTimeline(parseAgentLog(LOG), [{ at: 0.005, phase: 'deploying - power on agent' }, { at: 2.6, phase: 'deploying tear_down_agent power on agent' }], T0, 2.7);
  assert.deepEqual(t.entries, [
    '0.01 s deploying - power on agent',
    '0.01 s agent: command deploy.get_deploy_steps',
    '0.02 s agent: step write_image',
    '0.09 s agent: writer open',
    '0.10 s agent: first bytes in',
    '2.10 s agent: last byte in',
    '2.30 s agent: written+verified (32 MiB of zeros left to the device)',
    '2.40 s agent: write_image done',
    '2.42 s agent: heartbeat (forced)',
    '2.44 s agent: command standby.get_partition_uuids',
    '2.45 s agent: command standby.power_off',
    '2.60 s deploying tear_down_agent power on agent',
  ]);
  assert.equal(t.stepDoneToNextMs, 30);
});

test('deploy timeline: the phases split the whole deploy and add up to it', () => {
  const t = deployTimeline(parseAgentLog(LOG), [], T0, 2.7);
  assert.deepEqual(t.phases.map(([k]) => k), ['API call to write_image on the agent', 'write_image: root device',
    'write_image: download+write+verify', 'write_image: gpt backup', 'write_image: re-read table', 'write_image: other',
    'write_image done to active (conductor steps)']);
  const sum = t.phases.reduce((n, [, s]) => n + s, 0);
  assert.ok(Math.abs(sum - 2.7) < 1e-9, `phases sum to ${sum}`);
  assert.match(formatPhases(t.phases), /^API call to write_image on the agent 0\.02 s \| write_image: root device 0\.05 s \|/);
  assert.match(formatPhases(t.phases), /write_image: other 0\.02 s \| write_image done to active \(conductor steps\) 0\.30 s$/);
});

test('deploy timeline: without the agent phases the deploy is one phase and no latency is made up', () => {
  const t = deployTimeline([], [], T0, 3);
  assert.deepEqual(t.phases, [['deploy (no agent write_image phases in the log)', 3]]);
  assert.equal(t.stepDoneToNextMs, null);
});
