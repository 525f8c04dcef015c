import type { FastifyRequest } from 'fastify';
import type { Verifier } from '../../pki/verify.ts';
import type { Services } from '../../services/index.ts';
import type { AllowedMethods } from '../allowed-methods.ts';
import type { Urls } from '../present.ts';
import type { CopySettings } from './copy.ts';

/**
 * What route modules need: the services, the public URLs for the request at hand, the methods of a path, and
 * the settings of third-party copies.
 */
export interface RouteDeps {
  services: Services;
  urls: (request: FastifyRequest) => Urls;
  methods: AllowedMethods;
  /** Third-party copies: the policy for the other end, how often to report. */
  copy: CopySettings;
  /** The trusted CAs' verifier as now (reloaded): it checks who signed an endorser's image list. */
  trust: (() => Verifier) | null;
}
