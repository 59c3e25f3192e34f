/**
 * The koa application: error body (outermost), path normalisation, microversion negotiation, auth, routes.
 * The API layer validates and translates; business rules live in conductor/services/.
 */
import Router from '@koa/router';
import Koa, { type Context, type Next } from 'koa';
import type { ConductorContext } from '../context.js';
import { MethodNotAllowed } from '../errors.js';
import { authMiddleware } from './auth.js';
import { policyMiddleware } from './policy-middleware.js';
import { errorMiddleware, parseVersion, sendError, setVersionHeaders, type ApiState } from './http.js';
import { inspectionRoutes } from './routes/inspection.js';
import { conductorRoutes } from './routes/conductors.js';
import { nodeActionRoutes } from './routes/node-actions.js';
import { nodeRoutes } from './routes/nodes.js';
import { operatorRoutes } from './routes/operator.js';
import { miscRoutes, rootDocument } from './routes/misc.js';
import { portRoutes } from './routes/ports.js';
import { cloudRoutes } from './routes/cloud.js';
import { chassisRoutes } from './routes/chassis.js';
import { portgroupRoutes } from './routes/portgroups.js';
import { allocationRoutes } from './routes/allocations.js';
import { deployTemplateRoutes } from './routes/deploy-templates.js';
import { biosRoutes } from './routes/bios.js';
import { nodeManagementRoutes } from './routes/node-management.js';
import { volumeRoutes } from './routes/volumes.js';

export function createApp(c: ConductorContext): Koa {
  const app = new Koa({ proxy: false });
  app.silent = true;

  app.use(errorMiddleware);

  const publicBase = c.config.public_endpoint?.replace(/\/+$/, '');
  app.use(async (ctx: Context, next: Next) => {
    const base = publicBase ?? `${ctx.protocol}://${ctx.host}`.replace(/\/+$/, '');
    // Ironic routes anything that does not start with /v1 into the v1 controller.
    let path = ctx.path;
    if (path !== '/' && path !== '/v1' && !path.startsWith('/v1/')) path = ctx.path = `/v1${path}`;
    if (path.length > 1 && path.endsWith('/')) path = ctx.path = path.replace(/\/+$/, '');
    if (path === '/') {
      if (ctx.method !== 'GET' && ctx.method !== 'HEAD') throw new MethodNotAllowed();
      ctx.body = rootDocument(base);
      return;
    }
    const header = ctx.get('x-openstack-ironic-api-version') ||
      /^baremetal\s+(\S+)$/i.exec(ctx.get('openstack-api-version'))?.[1];
    // Min/max first, so that a 406 for the version itself carries them too.
    setVersionHeaders(ctx);
    const minor = parseVersion(header || undefined);
    ctx.set('X-OpenStack-Ironic-API-Version', `1.${minor}`);
    const st: ApiState = { minor, base };
    Object.assign(ctx.state, st);
    await next();
  });

  app.use(authMiddleware(c.config));
  app.use(policyMiddleware(c));

  const router = new Router();
  miscRoutes(router, c);
  nodeRoutes(router, c);
  nodeActionRoutes(router, c);
  operatorRoutes(router, c);
  portRoutes(router, c);
  cloudRoutes(router, c);
  chassisRoutes(router, c);
  portgroupRoutes(router, c);
  biosRoutes(router, c);
  nodeManagementRoutes(router, c);
  volumeRoutes(router, c);
  inspectionRoutes(router, c);
  conductorRoutes(router, c);
  allocationRoutes(router, c);
  deployTemplateRoutes(router, c);
  app.use(router.routes());
  app.use(async (ctx: Context, next: Next) => {
    await next();
    if (ctx.status === 404 && ctx.body === undefined) {
      const matched = router.match(ctx.path, ctx.method);
      if (matched.path.length > 0 && !matched.route) throw new MethodNotAllowed();
      sendError(ctx, 404, 'The resource could not be found.');
    }
  });
  return app;
}
