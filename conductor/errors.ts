/**
 * Ironic's exception classes as we need them: the class name is the faultcode-ish `code`, `status` the HTTP
 * status. The API turns any of these into Ironic's error body in one place (conductor/api/errors).
 */
import { BaremetalError } from '../common/errors.js';

export class IronicError extends BaremetalError {
  constructor(message: string, status = 500, code?: string, cause?: unknown) {
    super(message, { status, code: code ?? new.target.name, cause });
  }
}

export class InvalidParameterValue extends IronicError {
  constructor(message: string) { super(message, 400); }
}
export class MissingParameterValue extends IronicError {
  constructor(message: string) { super(message, 400); }
}
export class InvalidState extends IronicError {
  constructor(message: string) { super(message, 400); }
}
export class InvalidStateRequested extends IronicError {
  constructor(message: string) { super(message, 400); }
}
export class NotFound extends IronicError {
  constructor(message: string) { super(message, 404); }
}
export class NodeNotFound extends IronicError {
  constructor(node: string) { super(`Node ${node} could not be found.`, 404); }
}
/** Port addresses that belong to more than one node (Ironic's DuplicateNodeOnLookup, a NodeNotFound). */
export class DuplicateNodeOnLookup extends IronicError {
  constructor(readonly addresses: readonly string[], readonly nodes: readonly string[]) {
    super(`Multiple nodes with port addresses ${addresses.join(', ')} were found: ${nodes.join(', ')}`, 404);
  }
}
export class NodeLocked extends IronicError {
  constructor(node: string, host: string) {
    super(`Node ${node} is locked by host ${host}, please retry after the current operation is completed.`, 409);
  }
}
export class Conflict extends IronicError {
  constructor(message: string) { super(message, 409); }
}
/** A BMC operation failed (unreachable, bad credentials, refused): lands in last_error. */
export class PowerStateFailure extends IronicError {
  constructor(message: string, cause?: unknown) { super(message, 500, 'PowerStateFailure', cause); }
}
export class DriverOperationError extends IronicError {
  constructor(message: string, cause?: unknown) { super(message, 500, 'DriverOperationError', cause); }
}
export class AgentConnectionFailed extends IronicError {
  constructor(message: string, cause?: unknown) { super(message, 500, 'AgentConnectionFailed', cause); }
}

// ---- added by the conductor core (API-facing exceptions) ----
export class NotAcceptable extends IronicError {
  constructor(message = 'The requested version or field is not acceptable.') { super(message, 406); }
}
export class NotAuthorized extends IronicError {
  constructor(message = 'Authentication required') { super(message, 401); }
}
export class NodeProtected extends IronicError {
  constructor(node: string) { super(`Node ${node} is protected and cannot be undeployed, rebuilt or deleted`, 403); }
}
export class DriverNotFound extends IronicError {
  constructor(driver: string) { super(`Could not find the following driver(s) or hardware type(s): ${driver}.`, 404); }
}
export class PortNotFound extends IronicError {
  constructor(port: string) { super(`Port ${port} could not be found.`, 404); }
}
export class UnsupportedDriverExtension extends IronicError {
  constructor(message: string) { super(message, 400); }
}
export class NodeInMaintenance extends IronicError {
  constructor(action: string, node: string) {
    super(`The ${action} action can not be performed on node ${node} while it is in maintenance mode.`, 400);
  }
}
export class IncompleteLookup extends IronicError {
  constructor(message = 'At least one of "addresses" and "node_uuid" must be provided.') { super(message, 400); }
}
export class NodeAssociated extends IronicError {
  constructor(node: string, instance: string) {
    super(`Node ${node} is associated with instance ${instance}.`, 409);
  }
}
export class InstanceAssociated extends IronicError {
  constructor(instance: string, node: string) {
    super(`Instance ${instance} is already associated with a node, it cannot be associated with this other node ${node}`,
      409);
  }
}
export class DuplicateName extends IronicError {
  constructor(name: string) { super(`A node with name ${name} already exists.`, 409); }
}
export class NodeAlreadyExists extends IronicError {
  constructor(uuid: string) { super(`A node with UUID ${uuid} already exists.`, 409); }
}
export class MACAlreadyExists extends IronicError {
  constructor(mac: string) { super(`A port with MAC address ${mac} already exists.`, 409); }
}
export class PortAlreadyExists extends IronicError {
  constructor(uuid: string) { super(`A port with UUID ${uuid} already exists.`, 409); }
}
export class RequestEntityTooLarge extends IronicError {
  constructor(limit: number) { super(`Request body is larger than the limit of ${limit} bytes.`, 413); }
}
export class NoFreeConductorWorker extends IronicError {
  constructor() { super('Requested action cannot be performed due to lack of free conductor workers.', 503); }
}
export class MethodNotAllowed extends IronicError {
  constructor(message = 'The server could not comply with the request since it is either malformed or otherwise incorrect.') {
    super(message, 405);
  }
}
/** Ironic's ConcurrentActionLimit (a TemporaryFailure): the limit itself is not disclosed, as in Ironic. */
export class ConcurrentActionLimit extends IronicError {
  constructor(taskType: 'provisioning' | 'unprovisioning' | 'cleaning') {
    super(`Unable to process request at this time. The concurrent action limit for ${taskType} has been reached. ` +
      'Please contact your administrator and try again later.', 503);
  }
}
