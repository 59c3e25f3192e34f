/**
 * Runs a node request on the node's owner: here when this conductor owns the node (or is alone, or nobody
 * owns it), else through the owner's internal RPC (Ironic's API does the same through its RPC topic per host).
 * The owner runs it locally whatever its own ring says, so a request is forwarded at most once.
 */
import type { ConductorContext } from '../context.js';

export async function onOwner<T>(c: ConductorContext, ident: string, method: string, params: readonly unknown[],
  local: () => Promise<T>): Promise<T> {
  const cluster = c.cluster;
  if (!cluster?.shared) return local();
  const node = await c.tasks.findNode(ident);
  const owner = cluster.ownerOf(node);
  if (owner === null || owner === c.host) return local();
  c.log.debug({ node: node.uuid, owner, method }, 'forwarding to the node\'s conductor');
  return await cluster.call(owner, method, params) as T;
}
