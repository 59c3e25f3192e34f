/**
 * Issue 21: Ironic 21.4's default policy as carried over (conductor/api/policy.ts) and the request -> rule mapping
 * (policy-middleware.ts), without a Keystone: the personas of ironic/common/policy.py on nodes owned by / leased to
 * a project, the deprecated admin fallback and what enforce_new_defaults takes away.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KeystoneCredentials } from '../../conductor/api/keystone.js';
import { KeystoneValidator, parseTokenBody } from '../../conductor/api/keystone.js';
import { keystoneAuthSchema } from '../../conductor/keystone-config.js';
import { freePort } from '../fixtures/conductor.js';
import { patchRules, planFor } from '../../conductor/api/policy-middleware.js';
import { checkRule, type PolicySettings } from '../../conductor/api/policy.js';

const LEGACY: PolicySettings = { service_project_name: 'service', enforce_new_defaults: false };
const NEW: PolicySettings = { service_project_name: 'service', enforce_new_defaults: true };

function who(roles: string[], scope: { project?: string; projectName?: string; system?: boolean }): KeystoneCredentials {
  return {
    userId: 'u', userName: 'u', userDomainId: 'default', projectId: scope.project ?? null,
    projectName: scope.projectName ?? scope.project ?? null, projectDomainId: scope.project ? 'default' : null,
    system: scope.system ?? false, roles, expiresAt: Date.now() + 3600_000,
  };
}

const P1 = 'p1';
const ownedByP1 = { owner: P1, lessee: null };
const leasedToP1 = { owner: 'p0', lessee: P1 };
const other = { owner: 'p9', lessee: 'p8' };

test('personas on nodes, as ironic/common/policy.py defines them', () => {
  const member = who(['member', 'reader'], { project: P1 });
  const reader = who(['reader'], { project: P1 });
  const lesseeAdmin = who(['admin', 'member', 'reader'], { project: P1 });
  const sysReader = who(['reader'], { system: true });
  const sysMember = who(['member', 'reader'], { system: true });
  const service = who(['service'], { project: 'svc-id', projectName: 'service' });
  for (const s of [LEGACY, NEW]) {
    assert.ok(checkRule('baremetal:node:get', member, leasedToP1, s), 'a lessee member sees its node');
    assert.ok(!checkRule('baremetal:node:get', member, other, s), 'not others\'');
    assert.ok(checkRule('baremetal:node:list', reader, {}, s), 'API_READER lists (filtered)');
    assert.ok(!checkRule('baremetal:node:list_all', member, {}, s));
    assert.ok(checkRule('baremetal:node:list_all', sysReader, {}, s));
    assert.ok(checkRule('baremetal:node:update_extra', member, leasedToP1, s));
    assert.ok(!checkRule('baremetal:node:update_extra', reader, ownedByP1, s), 'readers cannot write');
    assert.ok(!checkRule('baremetal:node:set_provision_state', member, leasedToP1, s), 'lessee member: no');
    assert.ok(checkRule('baremetal:node:set_provision_state', member, ownedByP1, s), 'owner member: yes');
    assert.ok(checkRule('baremetal:node:update_instance_info', member, ownedByP1, s));
    assert.ok(!checkRule('baremetal:node:update:owner', member, ownedByP1, s), 'only system members change owners');
    assert.ok(checkRule('baremetal:node:update:owner', sysMember, other, s));
    assert.ok(!checkRule('baremetal:node:delete', sysMember, other, s), 'deleting is system admin');
    assert.ok(checkRule('baremetal:node:get', service, other, s), 'service_role sees all');
    assert.ok(checkRule('baremetal:node:update', service, other, s));
    assert.ok(!checkRule('baremetal:node:create', reader, {}, s));
    assert.ok(!checkRule('no:such:rule', sysMember, {}, s), 'an unknown rule allows nobody');
  }
  // The deprecated pre-RBAC rules 21.4 still accepts: admin anywhere is admin everywhere.
  assert.ok(checkRule('baremetal:node:set_provision_state', lesseeAdmin, other, LEGACY));
  assert.ok(checkRule('baremetal:node:delete', lesseeAdmin, other, LEGACY));
  assert.ok(!checkRule('baremetal:node:delete', lesseeAdmin, other, NEW));
  assert.ok(!checkRule('baremetal:node:get', lesseeAdmin, other, NEW), 'new defaults: a project admin sees only its nodes');
  assert.ok(checkRule('baremetal:node:set_provision_state', lesseeAdmin, leasedToP1, NEW), 'lessee admin may deploy');
  const observer = who(['baremetal_observer'], { project: 'x', projectName: 'baremetal' });
  assert.ok(checkRule('baremetal:node:get', observer, other, LEGACY), 'legacy observer reads');
  assert.ok(!checkRule('baremetal:node:update', observer, other, LEGACY), 'but does not write');
});

test('requests map to the rules Ironic checks', () => {
  assert.deepEqual(planFor('GET', '/v1/nodes'), { kind: 'node-list' });
  assert.deepEqual(planFor('GET', '/v1/lookup'), { kind: 'public' });
  assert.deepEqual(planFor('PUT', '/v1/nodes/n1/states/provision'), { kind: 'node', ident: 'n1', rules: ['baremetal:node:set_provision_state'] });
  assert.deepEqual(planFor('DELETE', '/v1/nodes/n1/maintenance'), { kind: 'node', ident: 'n1', rules: ['baremetal:node:clear_maintenance'] });
  assert.deepEqual(planFor('POST', '/v1/nodes/n1/vifs'), { kind: 'node', ident: 'n1', rules: ['baremetal:node:vif:attach'] });
  assert.deepEqual(planFor('PATCH', '/v1/nodes/n1'), { kind: 'node', ident: 'n1', rules: 'patch' });
  assert.deepEqual(planFor('GET', '/v1/ports/detail'), { kind: 'port-list', object: 'port' });
  assert.deepEqual(planFor('DELETE', '/v1/ports/abc'), { kind: 'port', object: 'port', ident: 'abc', rule: 'baremetal:port:delete' });
  assert.deepEqual(planFor('POST', '/v1/chassis'), { kind: 'global', rule: 'baremetal:chassis:create' });
  assert.deepEqual(planFor('GET', '/v1/conductors'), { kind: 'global', rule: 'baremetal:conductor:get' });
  assert.deepEqual(planFor('POST', '/v1/something_new'), { kind: 'global', rule: 'baremetal:node:delete' }, 'unknown: strictest');
  assert.deepEqual(patchRules([{ op: 'add', path: '/instance_info/x', value: 1 }, { op: 'replace', path: '/deploy_interface', value: 'direct' },
    { op: 'replace', path: '/automated_clean', value: false }, { op: 'replace', path: '/description', value: 'd' }]),
  ['baremetal:node:update_instance_info', 'baremetal:node:update:driver_interfaces', 'baremetal:node:disable_cleaning',
    'baremetal:node:update']);
  assert.deepEqual(patchRules('not a list'), ['baremetal:node:update']);
});

test('token bodies', () => {
  const c = parseTokenBody({ token: { expires_at: '2030-01-01T00:00:00.000000Z', user: { id: 'u1', name: 'alice', domain: { id: 'default' } },
    project: { id: 'p1', name: 'lessee1', domain: { id: 'default' } }, roles: [{ id: 'r', name: 'member' }, { id: 'r2', name: 'reader' }] } });
  assert.equal(c?.projectId, 'p1');
  assert.deepEqual(c?.roles, ['member', 'reader']);
  assert.equal(c?.system, false);
  assert.equal(parseTokenBody({ token: { user: { id: 'u' } } }), null, 'no expiry: not a token');
  assert.equal(parseTokenBody('x'), null);
});

test('Keystone unreachable: 503, nothing cached', async () => {
  const port = await freePort();
  const v = new KeystoneValidator(keystoneAuthSchema.parse({ auth_url: `http://127.0.0.1:${port}`, username: 'u', password: 'p', timeout_ms: 2000 }));
  assert.equal(v.base, `http://127.0.0.1:${port}/v3`, '/v3 appended');
  for (let i = 0; i < 2; i++) {
    await assert.rejects(v.validate('some-token'), (e: Error & { status?: number }) => {
      assert.equal(e.status, 503);
      assert.match(e.message, /Keystone service is temporarily unavailable/);
      return true;
    });
  }
  assert.equal(v.cacheSize, 0);
});
