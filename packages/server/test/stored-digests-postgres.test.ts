import { storedDigestsSuite } from './stored-digests-suite.ts';

storedDigestsSuite('postgres');
