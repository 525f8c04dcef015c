/**
 * The layering rules of docs/design.md are kept by biome's noRestrictedImports (biome.json `overrides`), run by
 * `npm run check`. Each rule here is shown to fail on a deliberate breach, in a scratch tree holding only the
 * project's biome.json and the offending file, so a rule that stops matching (a moved folder, a changed
 * pattern) fails this test instead of passing silently.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const biome = join(root, 'node_modules', '.bin', 'biome');

const breaches = [
  {
    rule: 'http/ never imports db/',
    file: 'packages/server/src/http/routes/probe.ts',
    source:
      "import type { VersionRow } from '../../db/versions-dal.ts';\n\nexport type Probe = VersionRow;\n",
    says: 'it never imports db/',
  },
  {
    rule: 'services/ never import http/',
    file: 'packages/server/src/services/versions/probe.ts',
    source: "import { refOf } from '../../http/image-ref.ts';\n\nexport const probe = refOf;\n",
    says: 'they never import http/',
  },
  {
    rule: 'db/ never imports services/',
    file: 'packages/server/src/db/probe.ts',
    source: "import { nowIso } from '../services/common.ts';\n\nexport const probe = nowIso;\n",
    says: 'db/ is the bottom of the house',
  },
  {
    rule: 'blobs/ never imports db/',
    file: 'packages/server/src/blobs/probe.ts',
    source: "import type { Db } from '../db/schema.ts';\n\nexport type Probe = Db;\n",
    says: 'are leaves',
  },
  {
    rule: 'a store never imports a sibling store',
    file: 'packages/server/src/blobs/discard.ts',
    source: "import { S3BlobStore } from './s3.ts';\n\nexport const probe = S3BlobStore;\n",
    says: 'a store never imports a sibling store',
  },
];

async function lint(dir: string): Promise<{ failed: boolean; output: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(biome, ['lint', '--vcs-enabled=false', '.'], {
      cwd: dir,
    });
    return { failed: false, output: stdout + stderr };
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    return { failed: true, output: stdout + stderr };
  }
}

describe('layering rules (biome.json overrides)', () => {
  let scratch: string;
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'repoman-boundaries-'));
  });
  after(() => rm(scratch, { recursive: true, force: true }));

  for (const breach of breaches) {
    it(`fails when ${breach.rule}, naming the rule`, async () => {
      const dir = await mkdtemp(join(scratch, 'tree-'));
      await copyFile(join(root, 'biome.json'), join(dir, 'biome.json'));
      await mkdir(dirname(join(dir, breach.file)), { recursive: true });
      await writeFile(join(dir, breach.file), breach.source);
      const { failed, output } = await lint(dir);
      assert.ok(failed, `biome accepted the breach:\n${output}`);
      assert.match(output, /lint\/style\/noRestrictedImports/);
      assert.ok(output.includes(breach.says), output);
    });
  }

  it('accepts the same files without the breach', async () => {
    const dir = await mkdtemp(join(scratch, 'tree-'));
    await copyFile(join(root, 'biome.json'), join(dir, 'biome.json'));
    const file = join(dir, 'packages/server/src/http/routes/probe.ts');
    await mkdir(dirname(file), { recursive: true });
    await writeFile(
      file,
      "import type { ImageRef } from '../../services/image-access.ts';\n\nexport type Probe = ImageRef;\n",
    );
    const { failed, output } = await lint(dir);
    assert.equal(failed, false, output);
  });
});
