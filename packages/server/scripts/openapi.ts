/**
 * Prints the server's OpenAPI document (what /api/openapi.json serves), for other packages to read through
 * this script rather than from the server's sources: `npm run --silent openapi -w @repoman/server`.
 */
import { openApiDocument } from '../src/http/app.ts';

process.stdout.write(`${JSON.stringify(await openApiDocument(), null, 2)}\n`);
