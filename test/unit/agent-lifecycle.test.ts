/**
 * The running agent reaches commands as an argument (ctx.agent, agent/commands/types.ts), not through a
 * process-wide "current agent": two executors in one process answer with their own node.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommandExecutor } from '../../agent/commands/executor.js';
import { CommandRegistry } from '../../agent/commands/registry.js';
import { registerBuiltinExtensions } from '../../agent/extensions/index.js';
import type { AgentLifecycle } from '../../agent/lifecycle.js';
import type { LookupConfig, LookupNode } from '../../protocol/lookup.js';

function agentFor(uuid: string): AgentLifecycle & { node: LookupNode } {
  const a = {
    node: { uuid } as LookupNode,
    standalone: true,
    logFile: null,
    nodeInfo: () => ({ node: a.node, config: { heartbeat_timeout: 300 } as LookupConfig }),
    setNodeInfo: (info: { node: LookupNode }) => { a.node = info.node; },
    stopServing: () => Promise.resolve(),
  };
  return a;
}

test('get_node_info / set_node_info act on the executor\'s own agent', async () => {
  const one = agentFor('11111111-1111-4111-8111-111111111111');
  const two = agentFor('22222222-2222-4222-8222-222222222222');
  const ex1 = new CommandExecutor(registerBuiltinExtensions(new CommandRegistry()), { agent: one });
  const ex2 = new CommandExecutor(registerBuiltinExtensions(new CommandRegistry()), { agent: two });
  const uuidOf = (r: { command_result: unknown }) => (r.command_result as { node: { uuid: string } }).node.uuid;
  assert.equal(uuidOf(await ex1.execute('poll.get_node_info', {})), one.node.uuid);
  assert.equal(uuidOf(await ex2.execute('poll.get_node_info', {})), two.node.uuid);
  const set = await ex2.execute('poll.set_node_info',
    { node_info: { node: { uuid: '33333333-3333-4333-8333-333333333333' }, config: { heartbeat_timeout: 60 } } });
  assert.equal(set.command_status, 'SUCCEEDED', JSON.stringify(set.command_error));
  assert.equal(two.node.uuid, '33333333-3333-4333-8333-333333333333');
  assert.equal(one.node.uuid, '11111111-1111-4111-8111-111111111111', 'the other agent is untouched');
  // Without an agent the executor refuses what needs one.
  const bare = new CommandExecutor(registerBuiltinExtensions(new CommandRegistry()));
  assert.deepEqual((await bare.execute('poll.get_node_info', {})).command_result, { node: null, config: null });
  await assert.rejects(bare.execute('poll.set_node_info',
    { node_info: { node: { uuid: 'x' }, config: { heartbeat_timeout: 1 } } }), /only allowed in standalone mode/);
  for (const e of [ex1, ex2, bare]) e.shutdown();
});
