/** The blob store conformance suite on a real S3 server (OpenStack Swift's s3api). */
import { after, before } from 'node:test';
import { createS3Store } from '../src/blobs/s3.ts';
import { blobStoreConformance } from './blob-store-suite.ts';
import { type Swift, startSwift } from './helpers/swift.ts';

let swift: Swift;
before(async () => {
  swift = await startSwift();
});
after(async () => swift?.stop());

blobStoreConformance('s3 (Swift s3api)', async () => {
  const settings = swift.settings();
  const store = createS3Store(settings);
  await store.check();
  return {
    store,
    sibling: async () => createS3Store(settings),
    dispose: async () => {},
  };
});
