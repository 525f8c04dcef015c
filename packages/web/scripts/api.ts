/**
 * Generates the web interface's typed API client types from the server's OpenAPI document (what
 * /api/openapi.json serves): src/api/openapi.json and src/api/schema.d.ts. Run after changing a route:
 * `npm run api -w packages/web`. A test fails while the committed files differ from what this makes.
 */
import { writeFile } from 'node:fs/promises';
import { apiFiles } from './api-files.ts';

const files = await apiFiles();
for (const [path, text] of Object.entries(files))
  await writeFile(new URL(`../${path}`, import.meta.url), text);
process.stdout.write(`wrote ${Object.keys(files).join(', ')}\n`);
