/**
 * Property-based fuzzing of the API with fast-check: random sequences of create, upload, modify, mark
 * read-only, share, unshare, rename, delete and reads by another user, each run against a real server and a
 * model of what the repository should then hold. Every answer must be the one the model predicts (never a
 * 5xx), and after every sequence the repository must be exactly the model: the same images, fields, shares,
 * versions and bytes. Run once per database engine.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { checkImageName } from '@repoman/core';
import fc from 'fast-check';
import { clientFor, type Response } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { type Engine, startServerFor, type TestServer } from './helpers/server.ts';

const KEEP = 3;

interface ModelImage {
  description: string | null;
  readOnly: boolean;
  sharedWithPam: boolean;
  /** Bytes of every upload, in order (the last KEEP are kept). */
  uploads: Buffer[];
}
type Model = Map<string, ModelImage>;

type Client = ReturnType<typeof clientFor>;
interface Real {
  bob: Client;
  pam: Client;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const path = (name: string) => `/api/images/bob/${encodeURIComponent(name)}`;

/** Checks a status against the model's prediction, with the answer in the message. */
function expectStatus(response: Response, expected: number, what: string) {
  assert.ok(response.status < 500, `${what}: a ${response.status}: ${response.text}`);
  assert.equal(response.status, expected, `${what}: ${response.text}`);
}

// Names the model knows about, and some the server must refuse.
const names = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('a.img', 'b.img') },
  {
    weight: 1,
    arbitrary: fc.constantFrom('../a.img', 'a b', '.hidden', 'raw', 'x'.repeat(129), 'ü.img', 'a\u0000b'),
  },
);
const texts = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom("'; DROP TABLE images; --", 'a\u0000b', '%_\\', 'Ünïcödé 画像'),
);

/** A command of the sequence: what it does to the server and the model, and its name in a failure report. */
function command(
  label: string,
  run: (model: Model, real: Real) => Promise<void>,
  check: (model: Readonly<Model>) => boolean = () => true,
): fc.AsyncCommand<Model, Real> {
  return { check, run, toString: () => label };
}
const q = (text: string) => JSON.stringify(text);

const create = (name: string) =>
  command(`create(${q(name)})`, async (model, real) => {
    const response = await real.bob.post('/api/images', { name });
    const expected = checkImageName(name) ? 400 : model.has(name) ? 409 : 201;
    expectStatus(response, expected, `create(${q(name)})`);
    if (expected === 201)
      model.set(name, { description: null, readOnly: false, sharedWithPam: false, uploads: [] });
  });

const upload = (name: string, data: Uint8Array) =>
  command(`upload(${q(name)}, ${data.length} bytes)`, async (model, real) => {
    const bytes = Buffer.from(data);
    const response = await real.bob.put(`/api/images/raw/bob/${encodeURIComponent(name)}`, bytes);
    const image = model.get(name);
    if (checkImageName(name)) {
      assert.ok(
        [400, 404].includes(response.status),
        `upload(${q(name)}): ${response.status} ${response.text}`,
      );
      return;
    }
    // A PUT to a free name in one's own namespace makes the image first (private, defaults), as POST would.
    const expected = !image ? 201 : image.readOnly ? 409 : image.uploads.length === 0 ? 201 : 200;
    expectStatus(response, expected, `upload(${q(name)})`);
    if (!image && expected === 201)
      model.set(name, { description: null, readOnly: false, sharedWithPam: false, uploads: [bytes] });
    else if (image && expected < 300) image.uploads.push(bytes);
  });

const describe_ = (name: string, text: string) =>
  command(`describe(${q(name)}, ${q(text)})`, async (model, real) => {
    const response = await real.bob.patch(path(name), { description: text });
    const image = model.get(name);
    if (checkImageName(name)) {
      assert.ok(
        [400, 404].includes(response.status),
        `describe(${q(name)}): ${response.status} ${response.text}`,
      );
      return;
    }
    const expected = text.includes('\u0000') ? 400 : image ? 200 : 404;
    expectStatus(response, expected, `describe(${q(name)}, ${q(text)})`);
    // A blank description (empty, or only whitespace) is no description.
    if (image && expected === 200) image.description = text.trim() === '' ? null : text;
  });

const setReadOnly = (name: string, value: boolean) =>
  command(
    `readOnly(${q(name)}, ${value})`,
    async (model, real) => {
      expectStatus(await real.bob.patch(path(name), { read_only: value }), 200, `readOnly(${q(name)})`);
      (model.get(name) as ModelImage).readOnly = value;
    },
    (model) => model.has(name),
  );

const share = (name: string, on: boolean) =>
  command(
    `${on ? 'share' : 'unshare'}(${q(name)})`,
    async (model, real) => {
      const response = await real.bob.request(on ? 'POST' : 'DELETE', `${path(name)}/share/user/pam`);
      expectStatus(response, 200, `share(${q(name)}, ${on})`);
      (model.get(name) as ModelImage).sharedWithPam = on;
    },
    (model) => model.has(name),
  );

const rename = (name: string, to: string) =>
  command(
    `rename(${q(name)} -> ${q(to)})`,
    async (model, real) => {
      const response = await real.bob.patch(path(name), { name: to });
      const expected = to === name ? 200 : checkImageName(to) ? 400 : model.has(to) ? 409 : 200;
      expectStatus(response, expected, `rename(${q(name)} -> ${q(to)})`);
      if (expected === 200 && to !== name) {
        model.set(to, model.get(name) as ModelImage);
        model.delete(name);
      }
    },
    (model) => model.has(name),
  );

const remove = (name: string) =>
  command(`delete(${q(name)})`, async (model, real) => {
    const response = await real.bob.delete(path(name));
    const image = model.get(name);
    if (checkImageName(name)) {
      assert.ok(
        [400, 404].includes(response.status),
        `delete(${q(name)}): ${response.status} ${response.text}`,
      );
      return;
    }
    expectStatus(response, !image ? 404 : image.readOnly ? 409 : 204, `delete(${q(name)})`);
    if (image && !image.readOnly) model.delete(name);
  });

const pamReads = (name: string) =>
  command(
    `pamReads(${q(name)})`,
    async (model, real) => {
      const image = model.get(name) as ModelImage;
      const what = `pamReads(${q(name)})`;
      expectStatus(await real.pam.get(path(name)), image.sharedWithPam ? 200 : 404, what);
      const bytes = await real.pam.get(`/api/images/raw/bob/${encodeURIComponent(name)}`);
      const last = image.uploads.at(-1);
      expectStatus(bytes, image.sharedWithPam && last ? 200 : 404, `${what}: bytes`);
      if (image.sharedWithPam && last)
        assert.equal(sha256(bytes.body), sha256(last), `${what}: the current bytes`);
      // A reader may not change it.
      const change = await real.pam.patch(path(name), { description: 'by pam' });
      expectStatus(change, image.sharedWithPam ? 403 : 404, `${what}: change`);
    },
    (model) => model.has(name),
  );

/** The whole repository of bob, as the server shows it, against the model. */
async function compare(model: Model, real: Real) {
  const listed = (await real.bob.get('/api/images?owner=bob&limit=100')).json.items as {
    name: string;
    description: string | null;
    read_only: boolean;
    version: number;
    digests: { sha256: string } | null;
    shared_with: { users: string[] };
  }[];
  assert.deepEqual(listed.map((i) => i.name).sort(), [...model.keys()].sort(), 'the same images');
  for (const item of listed) {
    const image = model.get(item.name) as ModelImage;
    assert.equal(item.description, image.description, `${item.name}: description`);
    assert.equal(item.read_only, image.readOnly, `${item.name}: read_only`);
    assert.equal(item.version, image.uploads.length, `${item.name}: version`);
    assert.deepEqual(item.shared_with.users, image.sharedWithPam ? ['pam'] : [], `${item.name}: shares`);
    const last = image.uploads.at(-1);
    assert.equal(item.digests?.sha256 ?? null, last ? sha256(last) : null, `${item.name}: digest`);
    if (last) {
      const bytes = await real.bob.get(`/api/images/raw/bob/${encodeURIComponent(item.name)}`);
      assert.equal(sha256(bytes.body), sha256(last), `${item.name}: bytes`);
      const versions = (await real.bob.get(`${path(item.name)}/versions`)).json.items as {
        version: number;
        digests: { sha256: string };
      }[];
      const kept = image.uploads
        .map((data, i) => ({ version: i + 1, sha256: sha256(data) }))
        .slice(-KEEP)
        .reverse();
      assert.deepEqual(
        versions.map((v) => ({ version: v.version, sha256: v.digests.sha256 })),
        kept,
        `${item.name}: kept versions`,
      );
    }
  }
}

export function modelFuzzSuite(engine: Engine, runs: number) {
  describe(`the API against a model, fuzzed, on ${engine}`, () => {
    let pki: TestPki;
    let server: TestServer;
    let real: Real;

    before(async () => {
      pki = await makeTestPki();
      server = await startServerFor(pki, engine, { REPOMAN_UPLOADS_KEEP_VERSIONS: String(KEEP) });
      const as = (name: string) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(name));
      for (const user of ['bob', 'pam'])
        await as('admin').post('/api/users', { user_name: user, client_dn: pki.dn(user) });
      real = { bob: as('bob'), pam: as('pam') };
    });
    after(async () => server?.stop());

    it(`matches the model after every step of ${runs} random sequences, and never answers 5xx`, async () => {
      const commands = fc.commands(
        [
          names.map((n) => create(n)),
          names.map((n) => create(n)), // twice as often: most commands need an image
          fc.tuple(names, fc.uint8Array({ maxLength: 64 })).map(([n, d]) => upload(n, d)),
          fc.tuple(names, fc.uint8Array({ maxLength: 64 })).map(([n, d]) => upload(n, d)),
          fc.tuple(names, texts).map(([n, t]) => describe_(n, t)),
          fc.tuple(names, fc.boolean()).map(([n, v]) => setReadOnly(n, v)),
          fc.tuple(names, fc.boolean()).map(([n, on]) => share(n, on)),
          fc.tuple(names, names).map(([n, to]) => rename(n, to)),
          names.map((n) => remove(n)),
          names.map((n) => pamReads(n)),
        ],
        { maxCommands: 40, size: 'large' },
      );
      await fc.assert(
        fc.asyncProperty(commands, async (sequence) => {
          // Every run starts from an empty namespace.
          for (const item of (await real.bob.get('/api/images?owner=bob&limit=100')).json.items as {
            name: string;
          }[]) {
            await real.bob.patch(path(item.name), { read_only: false });
            await real.bob.delete(path(item.name));
          }
          const model: Model = new Map();
          await fc.asyncModelRun(() => ({ model, real }), sequence);
          if (process.env.FUZZ_DEBUG) console.log(String(sequence));
          await compare(model, real);
        }),
        { numRuns: runs, ...(process.env.FUZZ_SEED ? { seed: Number(process.env.FUZZ_SEED) } : {}) },
      );
    });
  });
}
