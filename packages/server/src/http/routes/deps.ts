import type { FastifyRequest } from 'fastify';
import type { Services } from '../../services/index.ts';
import type { Urls } from '../present.ts';

/** What route modules need: the services, and the public URLs for the request at hand. */
export interface RouteDeps {
  services: Services;
  urls: (request: FastifyRequest) => Urls;
}
